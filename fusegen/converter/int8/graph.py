"""Whole-model int8 for models that are not chains: states passed between layers (an encoder's
return_state feeding a decoder's initial_state), branches and joins.

int8.py cuts a chain of layers into runs; a graph has no runs, so every layer call is a piece
of its own, walked in topological order:
  * a builtin layer: a segment converted by the standard converter to full int8, calibrated on
    its float inputs computed in Keras (a layer of several inputs names them);
  * a recurrent layer: its fused op(s) quantized by fusegen with x at the scale x is made in,
    y at the scale of its one builtin reader if it has one, and given initial states calibrated
    on the float states that reach them (QuantizedCell.state_scales).
Every tensor is made once, at its producer's type and (scale, zero point). Where a reader wants
another (a segment calibrated its input otherwise, a decoder's state scale differs from the
encoder's), the joiner inserts a QUANTIZE op: int8 -> int8, int16 -> int16, int16 -> int8 and
int8 -> int16, all in TFLM's QUANTIZE kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np
from fusegen.converter.tflite_file import schema

from fusegen.converter import tflite_file
from fusegen.converter.int8.chain import (Call, FusedPart, QParams, Segment, _activation, _has_training,
                                    _Joiner, _lower_part, check_calibration)
from fusegen.frontend.keras_model import ModelError, sequence_input
from fusegen.converter.lowering import ModelLowering
from fusegen.quantize import quantize_cell
from fusegen.quantize.scales import asymmetric_int8, dequantize_int8, quantize_int8

INT8, INT16 = schema.TensorType.INT8, schema.TensorType.INT16
Format = tuple[int, QParams]  # (tensor type, (scale, zero point))


@dataclass
class _Piece:
    layer: keras.layers.Layer
    inputs: list[int]  # ids of the KerasTensors read: x first, then initial states
    outputs: list[int]  # ids of the KerasTensors made: y, then final states
    segment: Segment | None = None
    part: FusedPart | None = None


@dataclass
class Int8Graph:
    """The pieces of a converted graph model, and the joined file."""

    pieces: list[_Piece]
    input_qparams: QParams
    output_qparams: QParams
    ops: dict = field(default_factory=dict)  # op name -> graph, for the kernels
    data: bytes = b""

    @property
    def parts(self) -> list[FusedPart | Segment]:
        return [p.part or p.segment for p in self.pieces]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        return quantize_int8(x, self.input_qparams)

    def run_int8(self, x_int8: np.ndarray) -> np.ndarray:
        """The joined file on the host, each sample from zero states (C cores, tf.lite)."""
        from fusegen.host.file import HostFile

        return HostFile(self.data, self.ops).run(x_int8)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return dequantize_int8(self.run_int8(self.quantize_input(x)), self.output_qparams)


def convert_graph(model: keras.Model, calibration: np.ndarray,
                  per_channel: bool = False) -> tuple[bytes, Int8Graph]:
    calibration = check_calibration(calibration, model)
    pieces = _pieces(model)
    values = _float_values(model, pieces, calibration)
    lowering = ModelLowering("s8")
    for piece in pieces:
        if isinstance(piece.layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            _lower(piece, lowering, values)
        else:
            piece.segment = _segment(piece, model, values)
    formats = _quantize(pieces, model, values, calibration, per_channel)
    data = _join(pieces, model, formats)
    out = id(model.outputs[0])
    graph = Int8Graph(pieces, formats[id(model.inputs[0])][1], formats[out][1], dict(lowering.ops),
                      data)
    if formats[out][0] != INT8:
        raise ModelError("the model's output is a recurrent state; int8 models end in an int8 "
                         "tensor (add the layer that reads the state)")
    return data, graph


def _pieces(model: keras.Model) -> list[_Piece]:
    pieces = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            layer = node.operation
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if isinstance(layer, keras.Model):
                raise ModelError(f"layer {layer.name}: int8 conversion of nested models is not "
                                 "supported; build the model flat")
            if getattr(layer, "stateful", False):
                raise ModelError(f"layer {layer.name}: stateful layers convert to int8 in "
                                 "chains of layers (one input, one output each)")
            inputs = [id(t) for t in node.input_tensors]
            if isinstance(layer, keras.layers.RNN):
                inputs = _rnn_inputs(node)
            pieces.append(_Piece(layer, inputs, [id(t) for t in node.outputs]))
    names = [p.layer.name for p in pieces]
    shared = {n for n in names if names.count(n) > 1}
    if shared:
        raise ModelError(f"layers called more than once ({', '.join(sorted(shared))}): int8 "
                         "conversion needs each layer called once")
    return pieces


def _rnn_inputs(node) -> list[int]:
    args, kwargs = node.arguments.args, node.arguments.kwargs
    states = kwargs.get("initial_state", args[1] if len(args) > 1 else None)
    if kwargs.get("mask") is not None:
        raise ModelError(f"layer {node.operation.name}: int8 conversion honours a mask in "
                         "chains of layers that start with Masking; make the model a chain or "
                         "convert it in float32")
    return [id(args[0]), *(id(s) for s in (states or []))]


def _float_values(model, pieces, calibration) -> dict[int, np.ndarray]:
    """Every tensor of the graph on the calibration data, from Keras."""
    tensors = {id(t): t for t in model.inputs}
    for node_list in model._nodes_by_depth.values():
        for node in node_list:
            tensors.update({id(t): t for t in node.outputs})
    order = list(tensors)
    probe = keras.Model(model.inputs, [tensors[i] for i in order])
    outs = probe([calibration], training=False)
    return {i: np.asarray(v) for i, v in zip(order, outs)}


def _lower(piece: _Piece, lowering: ModelLowering, values) -> None:
    piece.part, _ = _lower_part(piece.layer, lowering, values[piece.inputs[0]],
                                allow_state=True)
    if _has_state_io(piece) and len(piece.part.calls) != 1:
        raise ModelError(f"layer {piece.layer.name}: initial_state/return_state need a plain RNN "
                         "layer (not Bidirectional or StackedRNNCells)")


def _has_state_io(piece: _Piece) -> bool:
    return len(piece.inputs) > 1 or any(c.options["return_state"] for c in piece.part.calls)


def _segment(piece: _Piece, model: keras.Model, values) -> Segment:
    """The builtin layer as a model of its own, its inputs named fg_in<k>."""
    node = next(n for n in piece.layer._inbound_nodes if id(n.outputs[0]) == piece.outputs[0])
    if len(piece.outputs) != 1:
        raise ModelError(f"layer {piece.layer.name}: builtin layers with several outputs are not "
                         "supported in int8 graph models")
    fresh = {i: keras.Input(values[i].shape[1:], name=f"fg_in{k}")
             for k, i in enumerate(dict.fromkeys(piece.inputs))}
    args, kwargs = node.arguments.fill_in(fresh)
    if _has_training(piece.layer):
        kwargs = {**kwargs, "training": False}
    out = piece.layer(*args, **kwargs)
    sub = keras.Model(list(fresh.values()), out)
    return Segment.of_model(sub, [values[i] for i in fresh])


def _quantize(pieces, model, values, calibration, per_channel: bool) -> dict[int, Format]:
    """Each tensor's format where it is made; fused ops quantized on the way."""
    readers: dict[int, list[tuple[_Piece, int]]] = {}
    for piece in pieces:
        for k, i in enumerate(dict.fromkeys(piece.inputs)):
            readers.setdefault(i, []).append((piece, k))
    model_in = id(model.inputs[0])
    first = next((p.segment.qparams("input", k) for p, k in readers.get(model_in, [])
                  if p.segment is not None), None)
    formats = {model_in: (INT8, first or asymmetric_int8(float(calibration.min()),
                                                          float(calibration.max())))}
    for piece in pieces:
        if piece.segment is not None:
            formats[piece.outputs[0]] = (INT8, piece.segment.qparams("output"))
            continue
        x_format = formats[piece.inputs[0]]
        x_q = x_format[1] if x_format[0] == INT8 else _range(values[piece.inputs[0]])
        y_readers = readers.get(piece.outputs[0], [])
        after = (y_readers[0][0].segment.qparams("input", y_readers[0][1])
                 if len(y_readers) == 1 and y_readers[0][0].segment is not None else None)
        part = piece.part
        if not _has_state_io(piece):
            part.quantize(x_q, after, per_channel)
        else:
            call = part.calls[0]
            states = [values[i] for i in piece.inputs[1:]] or None
            call.qcell = quantize_cell(call.lowered.bound, values[piece.inputs[0]], x_q, after,
                                       calibration_states=states, per_channel=per_channel)
        formats[piece.outputs[0]] = (INT8, part.output_qparams)
        for i, scale in zip(piece.outputs[1:], part.calls[0].qcell.state_scales):
            formats[i] = (INT16, (scale, 0))
    return formats


def _range(x: np.ndarray) -> QParams:
    return asymmetric_int8(float(x.min()), float(x.max()))


def _join(pieces: list[_Piece], model: keras.Model, formats: dict[int, Format]) -> bytes:
    joiner = _Joiner()
    made: dict[int, int] = {}  # tensor id -> joined index, in its made format
    converted: dict[tuple, int] = {}  # (tensor id, format) -> joined index of a QUANTIZE output
    model_in = id(model.inputs[0])
    shape = [1, *model.inputs[0].shape[1:]]
    made[model_in] = joiner.tensor(_activation("input", shape, formats[model_in][1]))

    def read(i: int, want: Format) -> int:
        have = formats[i]
        if have[0] == want[0] and np.isclose(have[1][0], want[1][0], rtol=1e-6, atol=0) \
                and have[1][1] == want[1][1]:
            return made[i]
        key = (i, want[0], float(want[1][0]), int(want[1][1]))
        if key not in converted:
            converted[key] = joiner.requantize(made[i], want[0], want[1])
        return converted[key]

    for piece in pieces:
        if piece.segment is not None:
            ids = list(dict.fromkeys(piece.inputs))
            inputs = [read(i, (INT8, piece.segment.qparams("input", k)))
                      for k, i in enumerate(ids)]
            made[piece.outputs[0]] = joiner.segment(piece.segment, inputs)[1]
            continue
        part = piece.part
        x = read(piece.inputs[0], (INT8, part.input_qparams))
        timesteps = sequence_input(piece.layer).shape[1]
        if not _has_state_io(piece):
            made[piece.outputs[0]] = joiner.part(part, x, timesteps)
            continue
        call: Call = part.calls[0]
        states = [read(i, (INT16, (scale, 0)))
                  for i, scale in zip(piece.inputs[1:], call.qcell.state_scales)]
        outs = joiner.call(piece.layer.name, call, x, timesteps, states)
        made.update(zip(piece.outputs, outs))
    joiner.graph.inputs = [made[model_in]]
    joiner.graph.outputs = [made[id(model.outputs[0])]]
    return tflite_file.write_model(joiner.model)
