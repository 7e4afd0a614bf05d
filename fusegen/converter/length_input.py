"""`fusegen convert --length-input`: the converted file gets a scalar int32 model input "length"
feeding every fused op's mask input as MASK_LENGTH (abi.py).

Works on the converted flatbuffer, so float32 and int8 files alike: the input is appended after
the model's data input; an op that already had a step mask (MASK_STEPS, from `Masking` or
`Embedding(mask_zero=True)`) gets the length in its place and keeps its zero_output_for_mask;
an unmasked op gets the length appended with zero_output_for_mask false (Keras' RNN default:
outputs after the length repeat the last one). The builtin ops that computed the replaced
masks (NOT_EQUAL) then feed nothing and are removed. A length < 0 runs no step, one > T all T
steps (the kernel clamps it, fg_tflm_shell.h Steps; the host cores do the same).
"""

from __future__ import annotations

import numpy as np

from fusegen.abi import MASK_LENGTH, MASK_NONE, OP_PREFIX
from fusegen.converter.tflite_file import (
    decode_options,
    encode_options,
    op_name,
    read_model,
    schema,
    write_model,
)
from fusegen.errors import UserError

LENGTH_NAME = "length"


def add_length_input(data: bytes) -> bytes:
    """The converted model with a scalar int32 input "length" (its last input) as every fused
    op's mask input."""
    model = read_model(data)
    if len(model.subgraphs) != 1:
        raise UserError(f"--length-input: the converted model has {len(model.subgraphs)} "
                        "subgraphs; it needs one")
    graph = model.subgraphs[0]
    fused = [op for op in graph.operators if op_name(model, op).startswith(OP_PREFIX)]
    if not fused:
        raise UserError("--length-input: the model has no fused recurrent op to take a length")
    buffer = schema.BufferT()
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type = LENGTH_NAME.encode(), [], schema.TensorType.INT32
    tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    length = len(graph.tensors) - 1
    for op in fused:
        options = decode_options(op.customOptions)
        inputs = [int(i) for i in op.inputs]
        if options.get("mask", MASK_NONE) != MASK_NONE:
            inputs[-1] = length
        else:
            inputs.append(length)
            options["zero_output_for_mask"] = False
        options["mask"] = MASK_LENGTH
        op.inputs = inputs
        op.customOptions = np.frombuffer(encode_options(options), dtype=np.uint8)
    graph.inputs = [*(int(i) for i in graph.inputs), length]
    _drop_dead_ops(graph)
    for sig in model.signatureDefs or []:
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = LENGTH_NAME.encode(), length
        sig.inputs = [*(sig.inputs or []), entry]
    return write_model(model)


def _drop_dead_ops(graph: schema.SubGraphT) -> None:
    """Removes, until none is left, builtin ops whose outputs nothing reads (the mask sources)."""
    while True:
        read = {int(i) for op in graph.operators for i in op.inputs} | {int(i) for i in
                                                                       graph.outputs}
        keep = [op for op in graph.operators
                if any(int(o) in read for o in op.outputs)]
        if len(keep) == len(graph.operators):
            return
        graph.operators = keep
