"""Whole models to full int8: the standard quantizer for the builtin layers, fusegen's own for
each fused op, joined into one subgraph.

The TF converter cannot calibrate a model that contains the custom op, so the model (a chain of
layers) is cut at its recurrent layers:

    [segment 0] -> RNN 1 -> [segment 1] -> RNN 2 -> ... -> [segment k]

Every segment with layers is converted on its own by the standard converter to full int8,
calibrated on its input activations computed in Keras from the user's calibration data. Each
recurrent layer is quantized by fusegen.quantize with its x at the previous segment's output
(scale, zero point) and its y at the next segment's input (scale, zero point), so the pieces meet
with no QUANTIZE/DEQUANTIZE between them. The pieces are then joined tensor for tensor with the
TFLite schema's object API. `Int8Pipeline` runs the same pieces on the host (segments through
tf.lite.Interpreter, fused ops through the integer twin) for accuracy measurements.
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema

from fusegen.converter import tflite_file
from fusegen.converter.fused_call import FusedLayer
from fusegen.converter.model import make_converter
from fusegen.frontend.keras_model import ModelError, sequence_input
from fusegen.lower import LoweredCell, ModelLowering
from fusegen.opdef import option_values
from fusegen.quantize import MIN_CALIBRATION_STEPS, QuantizedCell, quantize_cell
from fusegen.quantize.scales import asymmetric_int8

QParams = tuple[float, int]


@dataclass
class Segment:
    """Builtin layers converted on their own to full int8."""

    layers: list[keras.layers.Layer]
    data: bytes = b""

    def qparams(self, which: str) -> QParams:
        model = tflite_file.read_model(self.data)
        graph = model.subgraphs[0]
        index = (graph.inputs if which == "input" else graph.outputs)[0]
        q = graph.tensors[index].quantization
        return float(q.scale[0]), int(q.zeroPoint[0])

    def run(self, x: np.ndarray) -> np.ndarray:
        interpreter = tf.lite.Interpreter(model_content=self.data)
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        results = []
        for sample in x:
            interpreter.set_tensor(inp["index"], sample[None])
            interpreter.invoke()
            results.append(interpreter.get_tensor(out["index"])[0])
        return np.stack(results)


@dataclass
class FusedPart:
    """One recurrent layer quantized by fusegen."""

    layer: keras.layers.Layer
    lowered: LoweredCell
    options: dict[str, bool]
    qcell: QuantizedCell | None = None

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.qcell.run(x, self.options["return_sequences"], self.options["go_backwards"])


@dataclass
class Int8Pipeline:
    parts: list[Segment | FusedPart]
    input_qparams: QParams
    output_qparams: QParams
    ops: dict = field(default_factory=dict)  # op name -> graph, for the kernels

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        scale, zp = self.input_qparams
        return np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)

    def run_int8(self, x_int8: np.ndarray) -> np.ndarray:
        for part in self.parts:
            x_int8 = part.run(x_int8)
        return x_int8

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float in, dequantized float out: what the int8 model computes."""
        scale, zp = self.output_qparams
        return (self.run_int8(self.quantize_input(x)).astype(np.float32) - zp) * scale


def check_calibration(x: np.ndarray, model: keras.Model) -> np.ndarray:
    shape = tuple(model.inputs[0].shape[1:])
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        raise ModelError(f"calibration data must be a float array, got "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise ModelError(f"calibration data has shape {x.shape}; expected N samples of the "
                         f"model input {shape}")
    if x.shape[0] * (shape[0] if shape else 1) < MIN_CALIBRATION_STEPS:
        raise ModelError(f"calibration data has {x.shape[0]} samples; give at least "
                         f"{MIN_CALIBRATION_STEPS} timesteps in all (more samples give better "
                         "ranges)")
    if not np.all(np.isfinite(x)):
        raise ModelError("calibration data contains NaN or inf")
    return x.astype(np.float32)


def build_pipeline(model: keras.Model, calibration: np.ndarray) -> Int8Pipeline:
    calibration = check_calibration(calibration, model)
    parts = _split(model)
    lowering = ModelLowering()
    x = calibration
    inputs: list[np.ndarray] = []
    for part in parts:  # every part's float input activations, computed in Keras
        inputs.append(x)
        if isinstance(part, FusedPart):
            fused = lowering.lower_layer(part.layer)
            _single(fused, part.layer)
            part.lowered = lowering.layers[part.layer.name][0]
            part.options = {k: bool(v) for k, v in fused.calls[0].options.items()}
            x = np.asarray(part.layer(x))
        else:
            for layer in part.layers:
                x = np.asarray(layer(x, training=False) if _has_training(layer) else layer(x))
    for part, data in zip(parts, inputs):
        if isinstance(part, Segment):
            part.data = _convert_segment(part.layers, data)
    _quantize_fused(parts, inputs, calibration)
    first, last = parts[0], parts[-1]
    in_q = first.qparams("input") if isinstance(first, Segment) else first.qcell.input_qparams
    out_q = last.qparams("output") if isinstance(last, Segment) else last.qcell.output_qparams
    return Int8Pipeline(parts, in_q, out_q, dict(lowering.ops))


def _single(fused: FusedLayer, layer) -> None:
    if len(fused.calls) != 1:
        raise ModelError(f"layer {layer.name}: int8 conversion of Bidirectional and "
                         "StackedRNNCells layers is not supported yet; convert as float32")
    call = fused.calls[0]
    if call.initial_states or call.return_state or call.options.get("stateful"):
        raise ModelError(f"layer {layer.name}: int8 conversion of initial_state, return_state "
                         "and stateful layers is not supported yet; convert as float32")


def _has_training(layer) -> bool:
    return getattr(layer, "_call_has_training_arg", False)


def _split(model: keras.Model) -> list[Segment | FusedPart]:
    parts: list[Segment | FusedPart] = []
    for layer in _chain(model):
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            parts.append(FusedPart(layer, None, {}))
        elif parts and isinstance(parts[-1], Segment):
            parts[-1].layers.append(layer)
        else:
            parts.append(Segment([layer]))
    if not any(isinstance(p, FusedPart) for p in parts):
        raise ModelError(f"model {model.name} has no recurrent layer")
    return parts


def _chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers in order, if they form a chain (one input, one output each)."""
    if isinstance(model, keras.Sequential):
        return list(model.layers)
    layers = [op for op in model.operations if not isinstance(op, keras.layers.InputLayer)]
    for before, after in zip([None, *layers[:-1]], layers):
        inbound = [n for n in after._inbound_nodes]
        parents = {id(t._keras_history.operation) for n in inbound for t in n.input_tensors}
        if len(parents) != 1 or (before is not None and id(before) not in parents):
            raise ModelError(f"int8 conversion needs a chain of layers; layer {after.name} "
                             "has other inputs")
    return layers


def _convert_segment(layers: list[keras.layers.Layer], data: np.ndarray) -> bytes:
    segment = keras.Sequential([keras.Input(data.shape[1:]), *layers])
    converter = make_converter(segment, lambda layer: None)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    samples = data[: min(len(data), 256)]
    converter.representative_dataset = lambda: ([s[None]] for s in samples)
    return converter.convert()


def _quantize_fused(parts, inputs, calibration) -> None:
    for k, part in enumerate(parts):
        if not isinstance(part, FusedPart):
            continue
        prev = parts[k - 1] if k > 0 else None
        nxt = parts[k + 1] if k + 1 < len(parts) else None
        if prev is None:
            x_q = asymmetric_int8(float(calibration.min()), float(calibration.max()))
        elif isinstance(prev, Segment):
            x_q = prev.qparams("output")
        else:
            x_q = prev.qcell.output_qparams
        y_q = nxt.qparams("input") if isinstance(nxt, Segment) else None
        part.qcell = quantize_cell(part.lowered.bound, inputs[k], x_q, y_q)


# -- joining the pieces into one subgraph -----------------------------------------------------
class _Joiner:
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

    def segment(self, data: bytes, input_tensor: int | None) -> tuple[int, int]:
        """Appends a converted segment; returns its (input, output) tensor indices."""
        model = tflite_file.read_model(data)
        graph = model.subgraphs[0]
        mapping: dict[int, int] = {}
        if input_tensor is not None:
            mapping[graph.inputs[0]] = input_tensor
        for i, t in enumerate(graph.tensors):
            if i not in mapping:
                t.buffer = self.buffer(model.buffers[t.buffer].data)
                mapping[i] = self.tensor(t)
        for op in graph.operators:
            op.opcodeIndex = self.opcode(model.operatorCodes[op.opcodeIndex])
            op.inputs = [mapping[i] if i >= 0 else -1 for i in op.inputs]
            op.outputs = [mapping[i] for i in op.outputs]
            if op.intermediates is not None:
                op.intermediates = [mapping[i] for i in op.intermediates]
            self.graph.operators.append(op)
        return mapping[graph.inputs[0]], mapping[graph.outputs[0]]

    def fused(self, part: FusedPart, x_tensor: int, timesteps: int) -> int:
        q = part.qcell
        names = [p.name for p in part.lowered.graph.params] + ["qparams", "luts"]
        inputs = [x_tensor]
        # Constant inputs carry no quantization metadata: every scale the kernel needs is in
        # qparams, and per-channel scale/zero-point arrays would cost ~12 bytes per channel.
        for name, value in zip(names, q.op_inputs()):
            inputs.append(self.tensor(_const_tensor(f"{part.layer.name}/{name}", value,
                                                    self.buffer(value.view(np.uint8)))))
        width = part.lowered.bound.width(part.lowered.graph.outputs[0])
        shape = [1, timesteps, width] if part.options["return_sequences"] else [1, width]
        out = self.tensor(_activation(f"{part.layer.name}/output", shape, q.output_qparams))
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = part.lowered.op_name.encode()
        code.version = 1
        op = schema.OperatorT()
        op.opcodeIndex = self.opcode(code)
        op.inputs, op.outputs = inputs, [out]
        op.customOptions = np.frombuffer(tflite_file.encode_options(
            option_values(part.options["return_sequences"], part.options["go_backwards"])),
            np.uint8)
        op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
        self.graph.operators.append(op)
        return out


def _quantization(scale, zero_point) -> schema.QuantizationParametersT:
    q = schema.QuantizationParametersT()
    scales = np.atleast_1d(np.asarray(scale, np.float32))
    q.scale = scales.tolist()
    q.zeroPoint = np.broadcast_to(np.asarray(zero_point, np.int64), scales.shape).tolist()
    q.quantizedDimension = 0
    return q


_TYPES = {np.dtype(np.int8): schema.TensorType.INT8, np.dtype(np.int16): schema.TensorType.INT16,
          np.dtype(np.int32): schema.TensorType.INT32}


def _const_tensor(name: str, value: np.ndarray, buffer: int) -> schema.TensorT:
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name.encode(), list(value.shape), _TYPES[value.dtype], buffer
    return t


def _activation(name: str, shape: list[int], qparams: QParams) -> schema.TensorT:
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name.encode(), shape, schema.TensorType.INT8, 0
    t.quantization = _quantization(qparams[0], qparams[1])
    return t


def join(pipeline: Int8Pipeline, timesteps_in: int, input_shape: tuple[int, ...]) -> bytes:
    """One .tflite, one subgraph, from the pipeline's pieces."""
    joiner = _Joiner()
    current: int | None = None
    model_input: int | None = None
    for part in pipeline.parts:
        if isinstance(part, Segment):
            first, current = joiner.segment(part.data, current)
        else:
            if current is None:
                first = current = joiner.tensor(_activation("input", [1, *input_shape],
                                                            part.qcell.input_qparams))
            timesteps = sequence_input(part.layer).shape[1]
            current = joiner.fused(part, current, timesteps)
            first = first if model_input is None else model_input
        model_input = first if model_input is None else model_input
    joiner.graph.inputs, joiner.graph.outputs = [model_input], [current]
    return tflite_file.write_model(joiner.model)


def convert_int8(model: keras.Model, calibration: np.ndarray) -> tuple[bytes, Int8Pipeline]:
    pipeline = build_pipeline(model, calibration)
    shape = tuple(model.inputs[0].shape[1:])
    return join(pipeline, shape[0], shape), pipeline


# -- running an int8 .tflite on the host, piece by piece ---------------------------------------
def split(data: bytes) -> list[tuple[str, object]]:
    """The ops of a chain model in order: ("builtin", a .tflite of a run of builtin ops) or
    ("fused", (op name, options, constant inputs)) — what the file holds, nothing recomputed."""
    model = tflite_file.read_model(data)
    graph = model.subgraphs[0]
    pieces: list[tuple[str, object]] = []
    run: list[schema.OperatorT] = []
    for op in graph.operators:
        name = tflite_file.op_name(model, op)
        if name.startswith("FUSEGEN_"):
            if run:
                pieces.append(("builtin", _extract(model, run)))
                run = []
            consts = [tflite_file.tensor_value(model, i) for i in op.inputs[1:]]
            pieces.append(("fused", (name, tflite_file.decode_options(op.customOptions), consts)))
        else:
            run.append(op)
    if run:
        pieces.append(("builtin", _extract(model, run)))
    return pieces


def _extract(model: schema.ModelT, ops: list[schema.OperatorT]) -> bytes:
    """A run of builtin ops as a model of its own (input: the one non-constant tensor it reads
    and does not make; output: the last op's output)."""
    graph = model.subgraphs[0]
    joiner = _Joiner()
    made = {i for op in ops for i in op.outputs}
    reads = [i for op in ops for i in op.inputs if i >= 0]
    entry = next(i for i in reads if i not in made and not _constant(model, i))
    mapping: dict[int, int] = {}
    for i in dict.fromkeys([entry, *reads, *made]):
        t = graph.tensors[i]
        copy = _copy.copy(t)
        copy.buffer = joiner.buffer(model.buffers[t.buffer].data)
        mapping[i] = joiner.tensor(copy)
    for op in ops:
        new = schema.OperatorT()
        new.opcodeIndex = joiner.opcode(model.operatorCodes[op.opcodeIndex])
        new.inputs = [mapping[i] if i >= 0 else -1 for i in op.inputs]
        new.outputs = [mapping[i] for i in op.outputs]
        new.builtinOptionsType, new.builtinOptions = op.builtinOptionsType, op.builtinOptions
        joiner.graph.operators.append(new)
    joiner.graph.inputs, joiner.graph.outputs = [mapping[entry]], [mapping[ops[-1].outputs[0]]]
    return tflite_file.write_model(joiner.model)


def _constant(model: schema.ModelT, index: int) -> bool:
    data = model.buffers[model.subgraphs[0].tensors[index].buffer].data
    return data is not None and len(data) > 0


def io_qparams(data: bytes) -> tuple[QParams, QParams]:
    model = tflite_file.read_model(data)
    graph = model.subgraphs[0]
    q = [graph.tensors[i].quantization for i in (graph.inputs[0], graph.outputs[0])]
    return tuple((float(p.scale[0]), int(p.zeroPoint[0])) for p in q)


def is_int8(data: bytes) -> bool:
    model = tflite_file.read_model(data)
    graph = model.subgraphs[0]
    return graph.tensors[graph.inputs[0]].type == schema.TensorType.INT8
