"""Read, inspect and rewrite .tflite flatbuffers through TF's generated schema (object API).

The schema code is the one TensorFlow ships (`tensorflow.lite.python.schema_py_generated`), so
the field names here are the schema's own. It is loaded from its file without importing the
`tensorflow` package (seconds of start-up that reading a .tflite does not need: `fusegen bench`
on a converted file imports no TensorFlow). Custom options are flexbuffer maps; `encode_options`
writes them exactly as the TFLite converter does for a composite function (see composite.py),
so a rewritten op is indistinguishable from a converted one.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import flatbuffers
import numpy as np
from flatbuffers import flexbuffers

from fusegen.abi import OP_PREFIX
from fusegen.converter.fused_call import OptionValue
from fusegen.errors import FileFormatError

_SCHEMA_MODULE = "tensorflow.lite.python.schema_py_generated"


def _load_schema() -> ModuleType:
    """TF's generated schema module (it imports only flatbuffers), without running
    tensorflow/__init__.py; the real module when TensorFlow is imported already."""
    if _SCHEMA_MODULE in sys.modules:
        return sys.modules[_SCHEMA_MODULE]
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("fusegen needs TensorFlow's .tflite schema: pip install tensorflow-cpu")
    found = [Path(d) / "lite" / "python" / "schema_py_generated.py"
             for d in spec.submodule_search_locations]
    found = [f for f in found if f.is_file()]
    if not found:
        raise ImportError(f"{_SCHEMA_MODULE} not found in the installed TensorFlow")
    module_spec = importlib.util.spec_from_file_location("fusegen._tflite_schema", found[0])
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


schema = _load_schema()

FILE_IDENTIFIER = b"TFL3"
# The schema asks for 16-byte aligned buffer data (`force_align: 16`), which the generated
# Python code ignores; TFLM reads weights in place, and unaligned float loads fault on
# Cortex-M FPUs.
BUFFER_ALIGNMENT = 16

_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


# --- Reading -------------------------------------------------------------------------------


def read_model(data: bytes, source: str = "the model") -> schema.ModelT:
    """The whole model as mutable schema objects. The one place the generated reader meets
    bytes: whatever a damaged buffer makes it raise becomes a one-line FileFormatError naming
    `source`. validate.read_model also checks indices and buffer sizes: use it on user files."""
    if len(data) < 8 or bytes(data[4:8]) != FILE_IDENTIFIER:
        raise FileFormatError(f"{source} is not a .tflite file (no TFL3 flatbuffer identifier)")
    try:
        return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as err:  # noqa: BLE001 - the generated reader raises anything on bad bytes
        raise FileFormatError(f"{source} is damaged: its flatbuffer cannot be read "
                              f"({type(err).__name__}); convert the model again") from None


def op_name(model: schema.ModelT, op: schema.OperatorT) -> str:
    """Builtin operator name (e.g. "FULLY_CONNECTED") or the custom code of a CUSTOM op."""
    code = model.operatorCodes[op.opcodeIndex]
    # Codes above 127 only fit the newer field; the schema says to take the larger of the two.
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        return _text(code.customCode)
    return _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")


def fused_op_weights(data: bytes) -> list[tuple[str, dict, list[np.ndarray]]]:
    """(op name, options, weight inputs) of every fused op, in graph order."""
    model = read_model(data)
    found = []
    for op in model.subgraphs[0].operators:
        name = op_name(model, op)
        if name.startswith(OP_PREFIX):
            weights = [tensor_value(model, i) for i in op.inputs[1:]]
            found.append((name, decode_options(op.customOptions), weights))
    return found


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _shape(tensor: schema.TensorT) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape) if tensor.shape is not None else ()


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str  # TensorType name, e.g. "FLOAT32"
    buffer_bytes: int  # 0 for activations


@dataclass(frozen=True)
class OpInfo:
    name: str  # builtin name or custom code
    inputs: tuple[int, ...]  # tensor indices; -1 marks an omitted optional input
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Summary:
    subgraphs: int
    ops: tuple[OpInfo, ...]  # of subgraph 0, in execution order
    tensors: tuple[TensorInfo, ...]  # of subgraph 0
    buffer_bytes: int  # all constant data in the file
    file_bytes: int

    def op_names(self) -> list[str]:
        return [op.name for op in self.ops]

    def __str__(self) -> str:
        lines = [
            f"{self.file_bytes} bytes, {self.buffer_bytes} in buffers, {self.subgraphs} subgraph(s)"
        ]
        for op in self.ops:
            lines.append(f"  {op.name}({', '.join(map(str, op.inputs))}) -> {op.outputs}")
        for i, t in enumerate(self.tensors):
            lines.append(f"  t{i} {t.name} {t.dtype}{list(t.shape)} {t.buffer_bytes}B")
        return "\n".join(lines)


def summary(data: bytes) -> Summary:
    model = read_model(data)
    graph = model.subgraphs[0]
    sizes = [_buffer_size(b) for b in model.buffers]
    tensors = tuple(
        TensorInfo(_text(t.name), _shape(t), _TYPE_NAMES[t.type], sizes[t.buffer])
        for t in graph.tensors
    )
    ops = tuple(
        OpInfo(op_name(model, op), tuple(map(int, op.inputs)), tuple(map(int, op.outputs)))
        for op in graph.operators
    )
    return Summary(len(model.subgraphs), ops, tensors, sum(sizes), len(data))


def _buffer_size(buffer: schema.BufferT) -> int:
    return len(buffer.data) if buffer.data is not None else 0


_NUMPY_TYPES = {
    schema.TensorType.FLOAT32: np.float32,
    schema.TensorType.INT32: np.int32,
    schema.TensorType.INT16: np.int16,
    schema.TensorType.INT8: np.int8,
    schema.TensorType.UINT8: np.uint8,
    schema.TensorType.INT64: np.int64,
}


def tensor_value(model: schema.ModelT, index: int, subgraph: int = 0) -> np.ndarray | None:
    """A constant tensor's data in its shape, or None for a tensor without data."""
    tensor = model.subgraphs[subgraph].tensors[index]
    data = model.buffers[tensor.buffer].data
    if data is None or len(data) == 0:
        return None
    if tensor.type not in _NUMPY_TYPES:
        raise ValueError(f"tensor {index} has type {_TYPE_NAMES[tensor.type]}: no numpy view")
    raw = np.asarray(data, dtype=np.uint8).tobytes()
    return np.frombuffer(raw, dtype=_NUMPY_TYPES[tensor.type]).reshape(_shape(tensor))


class CustomOp(NamedTuple):
    name: str
    options: dict[str, OptionValue]
    input_shapes: tuple[tuple[int, ...], ...]  # () for an omitted optional input


def custom_ops(data: bytes) -> list[CustomOp]:
    """Every CUSTOM op of every subgraph, in order, with its decoded options."""
    model = read_model(data)
    found = []
    for graph in model.subgraphs:
        for op in graph.operators:
            if not _is_custom(model, op):
                continue
            shapes = tuple(_shape(graph.tensors[i]) if i >= 0 else () for i in op.inputs)
            found.append(CustomOp(op_name(model, op), decode_options(op.customOptions), shapes))
    return found


def _is_custom(model: schema.ModelT, op: schema.OperatorT) -> bool:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.CUSTOM


# --- Custom options ------------------------------------------------------------------------


def decode_options(raw: bytes | np.ndarray | None) -> dict[str, OptionValue]:
    """A custom op's flexbuffer map as a dict. Bools written by the converter come back as 0/1."""
    if raw is None or len(raw) == 0:
        return {}
    value = flexbuffers.Loads(bytes(bytearray(raw)))
    if not isinstance(value, dict):
        raise TypeError(f"custom options are a flexbuffer {type(value).__name__}, not a map")
    return value


def encode_options(options: dict[str, OptionValue]) -> bytes:
    """Options as the converter writes them: sorted keys, bool as int, float as float32."""
    fbb = flexbuffers.Builder()
    with fbb.Map():
        for key in sorted(options):
            fbb.Key(key)
            _add_option(fbb, options[key])
    return bytes(fbb.Finish())


def _add_option(fbb: flexbuffers.Builder, value: OptionValue) -> None:
    if isinstance(value, (bool, int)):
        fbb.Int(int(value))
    elif isinstance(value, float):
        # Round first: in a map of 8-byte width the value is widened to double, and the
        # converter widens the float32, not the original.
        fbb.Float(float(np.float32(value)), 4)
    else:
        raise TypeError(f"option value {value!r} is not bool, int or float")


# --- Writing -------------------------------------------------------------------------------


def write_model(model: schema.ModelT) -> bytes:
    """Pack schema objects back into a .tflite flatbuffer, buffer data 16-byte aligned."""
    for i, buffer in enumerate(model.buffers):
        if buffer.offset > 1:
            raise ValueError(f"buffer {i} lives outside the flatbuffer (>2 GB models): unsupported")
    original = model.buffers
    model.buffers = [_AlignedBufferT(b.data) for b in original]
    try:
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    finally:
        model.buffers = original
    return bytes(builder.Output())


class _AlignedBufferT(schema.BufferT):
    """A BufferT whose data vector honours the schema's `force_align: 16`."""

    def __init__(self, data: np.ndarray | None) -> None:
        super().__init__(data=data)

    def Pack(self, builder: flatbuffers.Builder) -> int:
        data = _aligned_bytes(builder, self.data) if self.data is not None else None
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


def _aligned_bytes(builder: flatbuffers.Builder, data: np.ndarray) -> int:
    payload = np.asarray(data, dtype=np.uint8).tobytes()
    builder.StartVector(1, len(payload), BUFFER_ALIGNMENT)
    builder.head -= len(payload)
    builder.Bytes[builder.head : builder.head + len(payload)] = payload
    return builder.EndVector()


def replace_custom_options(
    data: bytes, name: str, options: dict[str, OptionValue], index: int | None = None
) -> bytes:
    """The model with new options on the CUSTOM ops called `name` (all, or the index-th one)."""
    model = read_model(data)
    ops = [
        op
        for graph in model.subgraphs
        for op in graph.operators
        if _is_custom(model, op) and op_name(model, op) == name
    ]
    if not ops:
        raise ValueError(f"no CUSTOM op named {name!r} in the model")
    targets = ops if index is None else [ops[index]]
    for op in targets:
        op.customOptions = np.frombuffer(encode_options(options), dtype=np.uint8)
    return write_model(model)
