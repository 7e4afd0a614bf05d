"""A generic .tflite builder: one subgraph assembled from tensors, buffers and ops.

The int8 converter joins its pieces with it (converter/int8/chain.py); the host runner wraps
single ops in it (host/file.py).
"""

from __future__ import annotations

import numpy as np
from fusegen.converter.tflite_file import schema

QParams = tuple[float, int]  # (scale, zero point)


class TfliteBuilder:
    """A one-subgraph .tflite built in memory (schema object API): buffers, tensors, op codes
    and ops appended, each deduplicated or indexed as the schema wants."""

    def __init__(self) -> None:
        self.model = schema.ModelT()
        self.model.version = 3
        self.model.description = b"fusegen int8"
        self.model.buffers = [schema.BufferT()]  # buffer 0: the empty sentinel
        self.model.operatorCodes = []
        self.graph = schema.SubGraphT()
        self.graph.tensors, self.graph.operators = [], []
        self.graph.name = b"main"
        self.model.subgraphs = [self.graph]

    def opcode(self, code: schema.OperatorCodeT) -> int:
        key = (code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version)
        for i, c in enumerate(self.model.operatorCodes):
            if (c.builtinCode, c.deprecatedBuiltinCode, c.customCode, c.version) == key:
                return i
        self.model.operatorCodes.append(code)
        return len(self.model.operatorCodes) - 1

    def buffer(self, data: np.ndarray | None) -> int:
        if data is None or len(data) == 0:
            return 0
        self.model.buffers.append(schema.BufferT())
        self.model.buffers[-1].data = np.asarray(data, np.uint8).reshape(-1)
        return len(self.model.buffers) - 1

    def tensor(self, tensor: schema.TensorT) -> int:
        self.graph.tensors.append(tensor)
        return len(self.graph.tensors) - 1

    def builtin(self, code: int, version: int, inputs: list[int], out: schema.TensorT,
                options: tuple | None = None) -> int:
        """Appends a builtin op of one output tensor `out`; returns the output's index."""
        opcode = schema.OperatorCodeT()
        opcode.builtinCode = opcode.deprecatedBuiltinCode = code
        opcode.version = version
        op = schema.OperatorT()
        op.opcodeIndex = self.opcode(opcode)
        if options is not None:
            op.builtinOptionsType, op.builtinOptions = options
        op.inputs, op.outputs = inputs, [self.tensor(out)]
        self.graph.operators.append(op)
        return op.outputs[0]


def quantization(scale, zero_point) -> schema.QuantizationParametersT:
    q = schema.QuantizationParametersT()
    scales = np.atleast_1d(np.asarray(scale, np.float32))
    q.scale = scales.tolist()
    q.zeroPoint = np.broadcast_to(np.asarray(zero_point, np.int64), scales.shape).tolist()
    q.quantizedDimension = 0
    return q


TYPES = {np.dtype(np.int8): schema.TensorType.INT8, np.dtype(np.int16): schema.TensorType.INT16,
          np.dtype(np.int32): schema.TensorType.INT32}


def const_tensor(name: str, value: np.ndarray, buffer: int) -> schema.TensorT:
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name.encode(), list(value.shape), TYPES[value.dtype], buffer
    return t


def activation(name: str, shape: list[int], qparams: QParams) -> schema.TensorT:
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name.encode(), shape, schema.TensorType.INT8, 0
    t.quantization = quantization(qparams[0], qparams[1])
    return t
