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
from fusegen.converter.tflite_file import schema

from fusegen.abi import WEIGHT_LAYOUTS
from fusegen.converter import tflite_file, validate
from fusegen.converter.builder import TfliteBuilder
from fusegen.converter.builder import activation as _activation
from fusegen.converter.builder import const_tensor as _const_tensor
from fusegen.converter.fused_call import FusedLayer
from fusegen.converter.model import make_converter
from fusegen.frontend.keras_model import ModelError, sequence_input
from fusegen.lower import LoweredCell
from fusegen.converter.lowering import ModelLowering
from fusegen.quantize import MIN_CALIBRATION_STEPS, QuantizedCell, quantize_cell
from fusegen.quantize.calibrate import run_batch
from fusegen.reference import float_interp
from fusegen.quantize.scales import asymmetric_int8, dequantize_int8, quantize_int8

QParams = tuple[float, int]


@dataclass
class Segment:
    """Builtin layers (or a Bidirectional merge) converted on their own to full int8."""

    data: bytes = b""
    names: tuple[str, ...] = ()  # the Keras input names of a segment with several inputs

    @staticmethod
    def of_layers(layers: list[keras.layers.Layer], data: np.ndarray) -> Segment:
        if isinstance(layers[0], keras.layers.Embedding):  # token ids stay int32 (GATHER)
            model = keras.Sequential([keras.Input(data.shape[1:], dtype="int32"), *layers])
            return Segment(_convert_segment(model, [data.astype(np.int32)]))
        model = keras.Sequential([keras.Input(data.shape[1:]), *layers])
        return Segment(_convert_segment(model, [data]))

    @staticmethod
    def of_model(model: keras.Model, data: list[np.ndarray]) -> Segment:
        """A model of named inputs (several, or one) and one output, calibrated on `data`."""
        return Segment(_convert_segment(model, data), tuple(t.name for t in model.inputs))

    def qparams(self, which: str, k: int = 0) -> QParams:
        """(scale, zero point) of input k, or of the output."""
        model = tflite_file.read_model(self.data)
        graph = model.subgraphs[0]
        index = self._inputs(graph)[k] if which == "input" else graph.outputs[0]
        q = graph.tensors[index].quantization
        if graph.tensors[index].type == schema.TensorType.INT32:
            return None  # token ids: not quantized
        return float(q.scale[0]), int(q.zeroPoint[0])

    def _inputs(self, graph) -> list[int]:
        """Input tensors in the order the segment was built with (the converter may order a
        model's inputs otherwise; it names them serving_default_<name>:0)."""
        if len(graph.inputs) == 1:
            return list(graph.inputs)
        names = [tflite_file._text(graph.tensors[i].name) for i in graph.inputs]
        return [graph.inputs[names.index(f"serving_default_{key}:0")] for key in self.names]

    def run(self, *xs: np.ndarray) -> np.ndarray:
        from fusegen.host.file import micro_interpreter, reference_interpreter

        graph = tflite_file.read_model(self.data).subgraphs[0]
        order = self._inputs(graph)
        micro = micro_interpreter(self.data)  # TFLM's own kernels, as HostFile runs builtins
        if micro is not None:
            positions = [list(graph.inputs).index(index) for index in order]
            results = []
            for samples in zip(*xs):
                for n, sample in zip(positions, samples):
                    micro.set_input(np.ascontiguousarray(sample[None]), n)
                micro.invoke()
                results.append(np.array(micro.get_output(0))[0])
            return np.stack(results)
        interpreter = reference_interpreter(self.data)  # without the wheel: tf.lite, no XNNPACK
        details = {d["index"]: d for d in interpreter.get_input_details()}
        out = interpreter.get_output_details()[0]
        results = []
        for samples in zip(*xs):
            for index, sample in zip(order, samples):
                interpreter.set_tensor(details[index]["index"], sample[None])
            interpreter.invoke()
            results.append(interpreter.get_tensor(out["index"])[0])
        return np.stack(results)


_MERGE_INPUTS = ("fg_forward", "fg_backward")


@dataclass
class Call:
    """One fused op of a recurrent layer, quantized by fusegen."""

    lowered: LoweredCell
    options: dict[str, bool | int]  # abi.option_values
    qcell: QuantizedCell | None = None

    @property
    def masked(self) -> bool:
        return bool(self.options.get("mask", 0))

    def run(self, x: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """The integer twin on a batch of sequences; a stateful op streams them in order.
        `valid` [N, T]: the Keras mask of each sample (a masked op)."""
        rs, gb = self.options["return_sequences"], self.options["go_backwards"]
        zero = bool(self.options.get("zero_output_for_mask"))
        if self.masked and not self.options["stateful"]:
            return self.qcell.run(x, rs, gb, valid, zero)
        if not self.options["stateful"]:
            return self.qcell.run(x, rs, gb)
        states, ys = None, []
        for k, sample in enumerate(x):  # one stream: a masked frame carries the states
            steps = valid[k] if self.masked and valid is not None else None
            y, states = self.qcell.run_states(sample, states, rs, gb, steps, zero)
            ys.append(y)
        return np.stack(ys)

    def run_float(self, x: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """The float twin on a batch [N, T, I] (a stateful op: the samples are one stream)."""
        rs, gb = self.options["return_sequences"], self.options["go_backwards"]
        if self.masked and self.options["stateful"]:  # one stream, the states carried
            zero, states, ys = bool(self.options["zero_output_for_mask"]), None, []
            for s, v in zip(x, valid):
                y, states = float_interp.run(self.lowered.bound, s, states, rs, gb, v, zero)
                ys.append(y)
            return np.stack(ys)
        if self.masked:
            zero = bool(self.options["zero_output_for_mask"])
            return np.stack([float_interp.run(self.lowered.bound, s, None, rs, gb, v, zero)[0]
                             for s, v in zip(x, valid)])
        if self.options["stateful"]:
            n, t = x.shape[:2]
            y = run_batch(self.lowered.bound, x.reshape(1, n * t, -1), True, gb)[0]
            return y.reshape(n, t, -1) if rs else y.reshape(n, t, -1)[:, -1]
        return run_batch(self.lowered.bound, x, rs, gb)

    def calibration(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(1, -1, x.shape[-1]) if self.options["stateful"] else x


@dataclass
class FusedPart:
    """One recurrent layer: a chain of fused ops (one, or one per stacked cell), or for a
    Bidirectional layer a forward and a backward chain joined by a merge segment."""

    layer: keras.layers.Layer
    chains: list[list[Call]] = field(default_factory=list)
    merge: Segment | None = None
    inputs: dict[int, np.ndarray] = field(default_factory=dict)  # id(call) -> float input

    @property
    def calls(self) -> list[Call]:
        return [call for chain in self.chains for call in chain]

    @property
    def input_qparams(self) -> QParams:
        return self.chains[0][0].qcell.input_qparams

    @property
    def output_qparams(self) -> QParams:
        return (self.merge.qparams("output") if self.merge is not None
                else self.chains[0][-1].qcell.output_qparams)

    def quantize(self, x_q: QParams, after: QParams | None, per_channel: bool = False) -> None:
        """Each call with x at what feeds it; each chain's y at the merge's input (scale, zero
        point), or `after` (the next piece's input, None: its own calibrated range)."""
        for j, chain in enumerate(self.chains):
            q = x_q
            for call in chain:
                y_q = None
                if call is chain[-1]:
                    y_q = self.merge.qparams("input", j) if self.merge else after
                call.qcell = quantize_cell(call.lowered.bound,
                                           call.calibration(self.inputs[id(call)]), q, y_q,
                                           per_channel=per_channel)
                q = call.qcell.output_qparams

    @property
    def flips(self) -> bool:
        """A Bidirectional layer returning sequences flips the backward output back in time
        (a REVERSE_V2 op before the merge segment)."""
        return self.merge is not None and bool(self.layer.return_sequences)

    def run(self, x: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        outs = []
        for chain in self.chains:
            y = x
            for call in chain:
                y = call.run(y, valid)
            outs.append(y)
        if self.merge is None:
            return outs[0]
        if self.flips:
            outs[1] = np.flip(outs[1], axis=1)
        return self.merge.run(*outs)


@dataclass
class Int8Pipeline:
    parts: list[Segment | FusedPart]
    input_qparams: QParams
    output_qparams: QParams
    ops: dict = field(default_factory=dict)  # op name -> graph, for the kernels
    mask_value: float | None = None  # the model starts with Masking(mask_value)
    ids_mask: bool = False  # the model starts with Embedding(mask_zero=True): NOT_EQUAL(ids, 0)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        if self.input_qparams is None:  # token ids: int32 as they are
            return np.asarray(x).astype(np.int32)
        return quantize_int8(x, self.input_qparams)

    @property
    def mask_int8(self) -> int:
        """Masking's value in the int8 input: the NOT_EQUAL constant of the joined file."""
        return int(quantize_int8(np.array([self.mask_value], np.float32), self.input_qparams)[0])

    def run_int8(self, x_int8: np.ndarray) -> np.ndarray:
        valid = None
        if self.mask_value is not None:  # as the file: NOT_EQUAL on the int8 input, any()
            valid = np.any(x_int8 != self.mask_int8, axis=-1)
        elif self.ids_mask:
            valid = x_int8 != 0
        for part in self.parts:
            x_int8 = part.run(x_int8, valid) if isinstance(part, FusedPart) else part.run(x_int8)
        return x_int8

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float in, dequantized float out: what the int8 model computes."""
        return dequantize_int8(self.run_int8(self.quantize_input(x)), self.output_qparams)


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
    if float(x.max()) == float(x.min()):
        raise ModelError(f"calibration data is constant (every value {float(x.min())}): the "
                         "model input's int8 range would be empty; give samples like the "
                         "deployment data")
    return x.astype(np.float32)


def build_pipeline(model: keras.Model, calibration: np.ndarray,
                   per_channel: bool = False) -> Int8Pipeline:
    """Cuts the model, converts its builtin segments and quantizes its fused ops.

    Every piece's float input activations come first (Keras for builtin layers, the float twin
    for fused ops); then each fused op is quantized with x at the (scale, zero point) of what
    feeds it and y at that of what reads it (per_channel: one weight scale per output channel).
    Stateful layers are calibrated as deployed: the
    calibration samples, in order, are one stream whose state carries from sample to sample.
    """
    calibration = check_calibration(calibration, model)
    lowering = ModelLowering("s8")
    parts: list[Segment | FusedPart] = []
    x = calibration
    pieces, mask_value = _masking(_split(model))
    ids_mask = mask_value == "ids"
    mask_value = None if ids_mask else mask_value
    valid = None if mask_value is None else np.any(calibration != mask_value, axis=-1)
    if ids_mask:
        valid = calibration != 0
    for kind, item in pieces:
        if kind == "layers":
            parts.append(Segment.of_layers(item, x))
            for layer in item:
                x = np.asarray(layer(x, training=False) if _has_training(layer) else layer(x))
        else:
            part, x = _lower_part(item, lowering, x, valid=valid)
            parts.append(part)
    incoming = asymmetric_int8(float(calibration.min()), float(calibration.max()))
    for k, part in enumerate(parts):
        if isinstance(part, FusedPart):
            nxt = parts[k + 1] if k + 1 < len(parts) else None
            after = nxt.qparams("input") if isinstance(nxt, Segment) else None
            part.quantize(incoming, after, per_channel)
            incoming = part.output_qparams
        else:
            incoming = part.qparams("output")
    first, last = parts[0], parts[-1]
    in_q = first.qparams("input") if isinstance(first, Segment) else first.input_qparams
    out_q = last.qparams("output") if isinstance(last, Segment) else last.output_qparams
    return Int8Pipeline(parts, in_q, out_q, dict(lowering.ops), mask_value, ids_mask)


def _masking(pieces: list[tuple[str, object]]) -> tuple[list[tuple[str, object]], float | None]:
    """Takes a leading Masking layer out of the pieces: the joined file computes its mask as
    NOT_EQUAL of the int8 input (reduced in each op) and its values pass unchanged (the masked
    steps are skipped). Masks that int8 cannot honour fail here, naming the layer."""
    mask_value = None
    out = []
    for k, (kind, item) in enumerate(pieces):
        if kind != "layers":
            out.append((kind, item))
            continue
        kept = []
        for j, layer in enumerate(item):
            if isinstance(layer, keras.layers.Masking):
                if k != 0 or j != 0:
                    raise ModelError(f"layer {layer.name}: int8 conversion takes Masking as the "
                                     "model's first layer only; move it to the input or convert "
                                     "in float32")
                mask_value = float(layer.mask_value)
            elif isinstance(layer, keras.layers.Embedding) and layer.mask_zero:
                if k != 0 or j != 0:
                    raise ModelError(f"layer {layer.name}: int8 conversion takes "
                                     "Embedding(mask_zero=True) as the model's first layer only; "
                                     "convert in float32")
                mask_value = "ids"  # the ids stay int32: NOT_EQUAL(ids, 0) in the file
                kept.append(layer)
            else:
                kept.append(layer)
        if kept:
            out.append((kind, kept))
    return out, mask_value


def _lower_part(layer, lowering: ModelLowering, x: np.ndarray, allow_state: bool = False,
                valid: np.ndarray | None = None) -> tuple[FusedPart, np.ndarray]:
    """The layer's fused ops (unquantized) with their float inputs (from zero states), and the
    layer's float output. `allow_state`: state inputs and outputs are the caller's business
    (int8_graph.py); the chain pipeline has no tensors to carry them."""
    fused = lowering.lower_layer(layer)
    if not allow_state:
        _check_int8(fused, layer)
    calls = [Call(low, dict(c.options))
             for low, c in zip(lowering.layers[layer.name], fused.calls, strict=True)]
    half = len(calls) // 2
    chains = ([calls[:half], calls[half:]] if isinstance(layer, keras.layers.Bidirectional)
              else [calls])
    inputs: dict[int, np.ndarray] = {}
    outs = []
    for chain in chains:
        y = x
        for call in chain:
            inputs[id(call)] = y
            y = call.run_float(y, valid)
        outs.append(y)
    if len(chains) == 1:
        return FusedPart(layer, chains, inputs=inputs), outs[0]
    if layer.return_sequences:
        outs[1] = np.flip(outs[1], axis=1)
    merge_model = _merge_model(layer, outs)
    merge = Segment.of_model(merge_model, outs)
    return FusedPart(layer, chains, merge, inputs), np.asarray(merge_model(outs))


def _merge_model(layer: keras.layers.Bidirectional, outs: list[np.ndarray]) -> keras.Model:
    """Keras' Bidirectional merge as a model of two inputs: the forward output and the backward
    one in time order. (The flip is not in it: TF 2.21's quantizer gives a REVERSE_V2 followed
    by an average a different output scale than its input, which REVERSE_V2 cannot rescale.)"""
    forward, backward = (keras.Input(o.shape[1:], name=n) for o, n in zip(outs, _MERGE_INPUTS))
    merge = {"concat": keras.layers.Concatenate(), "sum": keras.layers.Add(),
             "mul": keras.layers.Multiply(), "ave": keras.layers.Average()}[layer.merge_mode]
    return keras.Model([forward, backward], merge([forward, backward]))


def _check_int8(fused: FusedLayer, layer) -> None:
    for call in fused.calls:
        if call.initial_states or call.return_state:
            raise ModelError(f"layer {layer.name}: initial_state/return_state pass states "
                             "between layers; build_pipeline takes chains of layers, "
                             "convert_int8 takes both")


def _has_training(layer) -> bool:
    return getattr(layer, "_call_has_training_arg", False)


def _split(model: keras.Model) -> list[tuple[str, object]]:
    """("layers", [builtin layers]) and ("rnn", recurrent layer) pieces, in order."""
    pieces: list[tuple[str, object]] = []
    for layer in _chain(model):
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            pieces.append(("rnn", layer))
        elif pieces and pieces[-1][0] == "layers":
            pieces[-1][1].append(layer)
        else:
            pieces.append(("layers", [layer]))
    if not any(kind == "rnn" for kind, _ in pieces):
        raise ModelError(f"model {model.name} has no recurrent layer")
    return pieces


def _chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers in order, if they form a chain (one input, one output each)."""
    if isinstance(model, keras.Sequential):
        return list(model.layers)
    masks = _mask_ops(model)
    layers = [op for op in model.operations
              if not isinstance(op, keras.layers.InputLayer) and id(op) not in masks]
    for before, after in zip([None, *layers[:-1]], layers):
        inbound = [n for n in after._inbound_nodes]
        # A Keras mask (kwarg "mask") is not a data input: it comes from Masking, as the joined
        # file computes it (_masking).
        parents = {id(t._keras_history.operation) for n in inbound for t in n.input_tensors
                   if t is not n.arguments.kwargs.get("mask")}
        if len(parents) != 1 or (before is not None and id(before) not in parents):
            raise ModelError(f"int8 conversion needs a chain of layers; layer {after.name} "
                             "has other inputs")
    return layers


def _mask_ops(model: keras.Model) -> set[int]:
    """ids of the operations that only compute Keras masks (Masking's not_equal and any in a
    functional model): the ops behind each layer's "mask" argument, back to the first layer."""
    found: set[int] = set()
    todo = [n.arguments.kwargs.get("mask") for op in model.operations
            for n in getattr(op, "_inbound_nodes", [])]
    while todo:
        tensor = todo.pop()
        history = getattr(tensor, "_keras_history", None)
        if history is None or isinstance(history.operation, keras.layers.Layer):
            continue
        if id(history.operation) not in found:
            found.add(id(history.operation))
            todo += [t for n in history.operation._inbound_nodes for t in n.input_tensors]
    return found


def _convert_segment(model: keras.Model, data: list[np.ndarray]) -> bytes:
    if len(data) == 1:
        converter = make_converter(model, lambda layer: None)
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    count = min(len(data[0]), 256)
    if len(data) == 1:
        converter.representative_dataset = lambda: ([data[0][k][None]] for k in range(count))
    else:  # by name: the converter may order a model's inputs otherwise
        names = [t.name for t in model.inputs]
        converter.representative_dataset = lambda: (
            {n: d[k][None] for n, d in zip(names, data)} for k in range(count))
    return converter.convert()


# -- joining the pieces into one subgraph -----------------------------------------------------
class _Joiner(TfliteBuilder):
    """The int8 pipeline's pieces joined into one subgraph."""

    def segment(self, segment: Segment, inputs: list[int] | None) -> tuple[list[int], int]:
        """Appends a converted segment, its inputs bound to `inputs` if given; returns its
        (input, output) tensor indices."""
        model = tflite_file.read_model(segment.data)
        graph = model.subgraphs[0]
        order = segment._inputs(graph)
        mapping: dict[int, int] = dict(zip(order, inputs or []))
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
        return [mapping[i] for i in order], mapping[graph.outputs[0]]

    def part(self, part: FusedPart, x_tensor: int, timesteps: int) -> int:
        outs = []
        for j, chain in enumerate(part.chains):
            tensor = x_tensor
            for k, call in enumerate(chain):
                name = part.layer.name + ("" if len(part.calls) == 1 else f"/{j}.{k}")
                tensor = self.call(name, call, tensor, timesteps)[0]
            outs.append(tensor)
        if part.merge is None:
            return outs[0]
        if part.flips:
            outs[1] = self.reverse_time(outs[1])
        return self.segment(part.merge, outs)[1]

    def reverse_time(self, tensor: int) -> int:
        """REVERSE_V2 along axis 1: a copy of the tensor, same type and quantization."""
        source = self.graph.tensors[tensor]
        out = _copy.copy(source)
        out.name = source.name + b"/reversed"
        axis = np.array([1], np.int32)
        axis_tensor = self.tensor(_const_tensor(out.name.decode() + "/axis", axis,
                                                self.buffer(axis.view(np.uint8))))
        return self.builtin(schema.BuiltinOperator.REVERSE_V2, 2, [tensor, axis_tensor], out,
                            (schema.BuiltinOptions.ReverseV2Options, schema.ReverseV2OptionsT()))

    mask_tensor: int | None = None  # NOT_EQUAL of the model input (a leading Masking)

    def masking(self, model_input: int, value: int) -> None:
        """NOT_EQUAL(input, Masking's value at the input's int8 scale): bool [1, T, F], the
        step mask every masked op reads as its last input and reduces itself (abi.py)."""
        source = self.graph.tensors[model_input]
        const = _copy.copy(source)
        const.name, const.shape = b"masking/value", [1]
        ids = source.type == schema.TensorType.INT32  # Embedding(mask_zero=True): id 0
        data = np.array([value], np.int32 if ids else np.int8)
        const.buffer = self.buffer(data.view(np.uint8))
        const_index = self.tensor(const)
        out = schema.TensorT()
        out.name, out.shape, out.type = b"masking/mask", list(source.shape), schema.TensorType.BOOL
        self.mask_tensor = self.builtin(
            schema.BuiltinOperator.NOT_EQUAL, 2, [model_input, const_index], out,
            (schema.BuiltinOptions.NotEqualOptions, schema.NotEqualOptionsT()))

    def call(self, name: str, call: Call, x_tensor: int, timesteps: int,
             states: list[int] | None = None) -> list[int]:
        """The op's outputs: y, then with return_state its final states (int16)."""
        q, graph = call.qcell, call.lowered.graph
        names = [p.name for p in graph.params] + ["qparams", "luts"]
        inputs = [x_tensor]
        # Constant inputs carry no quantization metadata: every scale the kernel needs is in
        # qparams, and per-channel scale/zero-point arrays would cost ~12 bytes per channel.
        for what, value in zip(names, q.op_inputs()):
            inputs.append(self.tensor(_const_tensor(f"{name}/{what}", value,
                                                    self.buffer(value.view(np.uint8)))))
        if call.options["stateful"]:  # the op's own int16 states, kept between invocations
            for k, (j, scale) in enumerate(zip(graph.outputs[1:], q.state_scales)):
                state = _activation(f"{name}/state_{k}", [1, call.lowered.bound.width(j)],
                                    (scale, 0))
                state.type, state.isVariable = schema.TensorType.INT16, True
                inputs.append(self.tensor(state))
        inputs += states or []  # initial states, int16 at the op's state scales
        if call.masked:
            if self.mask_tensor is None:
                raise ModelError(f"layer {name}: its mask is not computed from the model's "
                                 "input by Masking; int8 conversion cannot honour it (convert "
                                 "in float32)")
            inputs.append(self.mask_tensor)  # the last input (abi.mask_input)
        width = call.lowered.bound.width(graph.outputs[0])
        shape = [1, timesteps, width] if call.options["return_sequences"] else [1, width]
        outputs = [self.tensor(_activation(f"{name}/output", shape, q.output_qparams))]
        if call.options["return_state"]:
            for k, (j, scale) in enumerate(zip(graph.outputs[1:], q.state_scales)):
                state = _activation(f"{name}/final_state_{k}", [1, call.lowered.bound.width(j)],
                                    (scale, 0))
                state.type = schema.TensorType.INT16
                outputs.append(self.tensor(state))
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = call.lowered.op_name.encode()
        code.version = 1
        op = schema.OperatorT()
        op.opcodeIndex = self.opcode(code)
        op.inputs, op.outputs = inputs, outputs
        options = {**call.options, "weight_layout": WEIGHT_LAYOUTS["s8"]}  # abi.pack_s8_matrix
        op.customOptions = np.frombuffer(tflite_file.encode_options(options), np.uint8)
        op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
        self.graph.operators.append(op)
        return outputs

    def requantize(self, tensor: int, kind: int, qparams: QParams) -> int:
        """A QUANTIZE op: `tensor` as another type (INT8 / INT16) and (scale, zero point)."""
        source = self.graph.tensors[tensor]
        out = _activation(tflite_file._text(source.name) + "/requantized", list(source.shape),
                          qparams)
        out.type = kind
        return self.builtin(schema.BuiltinOperator.QUANTIZE, 1, [tensor], out)


def join(pipeline: Int8Pipeline, input_shape: tuple[int, ...]) -> bytes:
    """One .tflite, one subgraph, from the pipeline's pieces."""
    joiner = _Joiner()
    current: int | None = None
    model_input: int | None = None
    for part in pipeline.parts:
        if isinstance(part, Segment):
            inputs, current = joiner.segment(part, None if current is None else [current])
            model_input = inputs[0] if model_input is None else model_input
            continue
        if current is None:
            current = model_input = joiner.tensor(_activation("input", [1, *input_shape],
                                                              part.input_qparams))
        if pipeline.mask_value is not None and joiner.mask_tensor is None:
            joiner.masking(model_input, pipeline.mask_int8)
        elif pipeline.ids_mask and joiner.mask_tensor is None:
            joiner.masking(model_input, 0)
        current = joiner.part(part, current, sequence_input(part.layer).shape[1])
    joiner.graph.inputs, joiner.graph.outputs = [model_input], [current]
    return tflite_file.write_model(joiner.model)


def io_qparams(data: bytes, source: str = "the model") -> tuple[QParams, QParams]:
    from fusegen.converter.validate import io_tensors, tensor_qparams

    model = validate.read_model(data, source)
    return tuple(None if t.type == schema.TensorType.INT32 else  # token ids
                 tensor_qparams(t, f"{source}: model {role}")
                 for role, t in zip(("input", "output"), io_tensors(model, source)))


def is_int8(data: bytes, source: str = "the model") -> bool:
    from fusegen.converter.validate import io_tensors

    model = validate.read_model(data, source)
    x, y = io_tensors(model, source)
    # token ids (Embedding first) stay int32 in an int8 model
    return x.type == schema.TensorType.INT8 or (x.type == schema.TensorType.INT32 and
                                                y.type == schema.TensorType.INT8)
