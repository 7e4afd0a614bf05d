"""Builtin ops TFLM lacks, rewritten in the converted file to ops it has, with the same results.

TF's converter writes SELECT (version 1) for a `tf.where` of two tensors. TFLM registers only
SELECT_V2 (micro_mutable_op_resolver.h: AddSelectV2; kernels/select.cc), and that for float32,
int8 and int16 data only. Keras' Embedding (ops.take) wraps negative ids as Python does,
`where(ids < 0, ids + V, ids)`: LESS, ADD and a SELECT on int32 ids, so no TFLM could load a
model starting with an Embedding. After conversion, every SELECT is rewritten:

* float32 / int8 / int16 data, condition and both values of one shape (or all one element):
  SELECT_V2, the same elementwise choice (v1's other form, a rank-1 condition choosing rows of
  higher-rank values, broadcasts differently and is not rewritten);
* int32 data of the form SELECT(c, ADD(b, k), b), k one constant element (the Embedding's
  wrap): ADD(b, MUL(CAST(c -> int32), k)), i.e. b + k where c holds and b where it does not:
  the same value for every b (b + k is computed in both, as the original ADD did).

Any other SELECT is left as it was (a valid .tflite; loading it in TFLM names the op). The ADD
the int32 form replaces is removed when nothing else reads it.
"""

from __future__ import annotations

import numpy as np

from fusegen.abi import OP_PREFIX
from fusegen.converter.tflite_file import op_name, read_model, schema, write_model
from fusegen.frontend.errors import ModelError

OP = schema.BuiltinOperator
TT = schema.TensorType

# The builtin ops TFLM has kernels for: every BuiltinOperator that MicroMutableOpResolver can add
# (tensorflow/lite/micro/micro_mutable_op_resolver.h at tflite-micro 90b983c2). A fused op's mask
# must be computed from these (check_mask_sources).
TFLM_BUILTINS = frozenset("""
    ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND
    BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM
    DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL
    EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER
    GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG
    LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN MINIMUM
    MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX
    REDUCE_MIN RELU RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT
    SELECT_V2 SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE
    SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH TRANSPOSE TRANSPOSE_CONV
    UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE""".split())
_V2_TYPES = {TT.FLOAT32, TT.INT8, TT.INT16}


def select_for_tflm(data: bytes) -> bytes:
    """The converted file with its SELECT ops as TFLM runs them (see the module docstring);
    the bytes unchanged when the file has none."""
    model = read_model(data)
    changed = False
    for graph in model.subgraphs:
        for op in list(graph.operators):
            if op_name(model, op) == "SELECT":
                changed |= _rewrite(model, graph, op)
    return write_model(model) if changed else data


def _rewrite(model: schema.ModelT, graph: schema.SubGraphT, op: schema.OperatorT) -> bool:
    c, a, b = (graph.tensors[int(i)] for i in op.inputs)
    out = graph.tensors[int(op.outputs[0])]
    shapes = {_shape(t) for t in (c, a, b, out)}
    if out.type in _V2_TYPES and (len(shapes) == 1 or all(_size(s) == 1 for s in shapes)):
        op.opcodeIndex = _opcode(model, OP.SELECT_V2, 1)
        op.builtinOptionsType = schema.BuiltinOptions.SelectV2Options
        op.builtinOptions = schema.SelectV2OptionsT()
        return True
    if out.type != TT.INT32 or _shape(c) != _shape(b) or _shape(b) != _shape(out):
        return False
    add = _producer(graph, int(op.inputs[1]))
    if add is None or op_name(model, add) != "ADD" or add.builtinOptions is None or \
            add.builtinOptions.fusedActivationFunction != schema.ActivationFunctionType.NONE:
        return False
    add_in = [int(i) for i in add.inputs]
    if int(op.inputs[2]) not in add_in:
        return False
    k = add_in[1 - add_in.index(int(op.inputs[2]))]
    if not _is_constant(model, graph, k) or _size(_shape(graph.tensors[k])) != 1:
        return False
    as_int = _new_tensor(graph, b"select_wrap_cond", _shape(c), TT.INT32)
    scaled = _new_tensor(graph, b"select_wrap_add", _shape(c), TT.INT32)
    cast = _op(model, OP.CAST, [int(op.inputs[0])], [as_int], schema.BuiltinOptions.CastOptions,
               _cast_options(c.type, TT.INT32))
    mul = _op(model, OP.MUL, [as_int, k], [scaled], schema.BuiltinOptions.MulOptions,
              schema.MulOptionsT())
    at = graph.operators.index(op)
    graph.operators[at:at + 1] = [cast, mul, _op(model, OP.ADD, [int(op.inputs[2]), scaled],
                                                 [int(op.outputs[0])],
                                                 schema.BuiltinOptions.AddOptions,
                                                 schema.AddOptionsT())]
    added = int(add.outputs[0])
    if added not in _read(graph):
        graph.operators.remove(add)
    return True


def _shape(t: schema.TensorT) -> tuple[int, ...]:
    return tuple(int(d) for d in (t.shape if t.shape is not None else ()))


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) if shape else 1


def _producer(graph: schema.SubGraphT, tensor: int) -> schema.OperatorT | None:
    return next((op for op in graph.operators if tensor in [int(o) for o in op.outputs]), None)


def _read(graph: schema.SubGraphT) -> set[int]:
    return {int(i) for op in graph.operators for i in op.inputs} | \
        {int(i) for i in graph.outputs}


def _is_constant(model: schema.ModelT, graph: schema.SubGraphT, tensor: int) -> bool:
    t = graph.tensors[tensor]
    buffer = model.buffers[t.buffer] if t.buffer else None
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def _new_tensor(graph: schema.SubGraphT, name: bytes, shape: tuple[int, ...],
                ttype: int) -> int:
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name, list(shape), ttype, 0
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def _cast_options(in_type: int, out_type: int) -> schema.CastOptionsT:
    options = schema.CastOptionsT()
    options.inDataType, options.outDataType = in_type, out_type
    return options


def _opcode(model: schema.ModelT, code: int, version: int) -> int:
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == code and c.version == version:
            return i
    opcode = schema.OperatorCodeT()
    opcode.builtinCode = code
    opcode.deprecatedBuiltinCode = min(code, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    opcode.version = version
    model.operatorCodes.append(opcode)
    return len(model.operatorCodes) - 1


def _op(model: schema.ModelT, code: int, inputs: list[int], outputs: list[int],
        options_type: int, options) -> schema.OperatorT:
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(model, code, 1)
    op.inputs, op.outputs = inputs, outputs
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def check_mask_sources(data: bytes, layers: list[tuple[str, str]]) -> None:
    """Every masked fused op's mask is computed by ops TFLM has (TFLM_BUILTINS), else a one-line
    ModelError naming the layer (`layers`: (layer name, "OP + OP ...") in model order, as
    build.Converted has them; the fused ops appear in the file in that order)."""
    from fusegen.converter.validate import read_options

    model = read_model(data)
    graph = model.subgraphs[0]
    owners = [name for name, ops in layers for _ in ops.split(" + ")]
    fused = [op for op in graph.operators if op_name(model, op).startswith(OP_PREFIX)]
    for k, op in enumerate(fused):
        try:
            masked = read_options(op.customOptions, "").get("mask", 0) != 0
        except Exception:  # noqa: BLE001 - options the kernel validates: not this check's
            continue
        if not masked:
            continue
        missing = sorted(_sources(model, graph, int(op.inputs[-1])) - TFLM_BUILTINS)
        if missing:
            layer = (f"layer {owners[k]}" if len(owners) == len(fused)
                     else f"fused op {op_name(model, op)}")
            raise ModelError(
                f"{layer}: its mask is computed with {', '.join(missing)}, which TFLM has no "
                "kernel for; compute the mask with ops TFLM has (Masking, "
                "Embedding(mask_zero=True), comparisons such as NOT_EQUAL), or convert with "
                "--length-input and give the firmware each sequence's length")


def _sources(model: schema.ModelT, graph: schema.SubGraphT, tensor: int) -> set[str]:
    """The builtin ops `tensor` is computed with, back to the graph's inputs and constants."""
    names: set[str] = set()
    seen: set[int] = set()
    todo = [tensor]
    while todo:
        t = todo.pop()
        if t < 0 or t in seen:
            continue
        seen.add(t)
        op = _producer(graph, t)
        if op is None:
            continue
        name = op_name(model, op)
        if name.startswith(OP_PREFIX):  # another fused op's output (a stacked layer's mask)
            continue
        names.add(name)
        todo.extend(int(i) for i in op.inputs)
    return names
