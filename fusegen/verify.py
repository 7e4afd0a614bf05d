"""`fusegen verify`: each fused layer of a .tflite, run by its compiled C core with the weights
stored in the .tflite, against the Keras layer on the same inputs (each sample at batch 1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from fusegen.converter import tflite_file
from fusegen.frontend.keras_model import ModelError, import_file, load_model, recurrent_layers
from fusegen.hostcore import HostCore
from fusegen.lower import cell_factory, lower_cell


@dataclass(frozen=True)
class LayerCheck:
    layer: str
    op_name: str
    samples: int
    max_abs: float
    max_rel: float


def load_inputs(path: Path, model: keras.Model) -> np.ndarray:
    x = np.load(path)
    sample_shape = tuple(model.inputs[0].shape[1:])
    if x.shape == sample_shape:
        x = x[None]
    if x.ndim != len(sample_shape) + 1 or tuple(x.shape[1:]) != sample_shape:
        raise ModelError(f"{path}: shape {x.shape} is not N samples of the model input "
                         f"{sample_shape}")
    if not np.all(np.isfinite(x)):
        raise ModelError(f"{path}: inputs contain NaN or inf")
    return x.astype(np.float32)


def fused_op_weights(data: bytes) -> list[tuple[str, dict, list[np.ndarray]]]:
    """(op name, options, weight inputs) of every CUSTOM op, in graph order."""
    model = tflite_file.read_model(data)
    graph = model.subgraphs[0]
    found = []
    for op in graph.operators:
        name = tflite_file.op_name(model, op)
        if not name.startswith("FUSEGEN_"):
            continue
        weights = [tflite_file.tensor_value(model, i) for i in op.inputs[1:]]
        found.append((name, tflite_file.decode_options(op.customOptions), weights))
    return found


def verify_model(tflite_path: Path, keras_path: Path, imports: list[str],
                 inputs_path: Path) -> list[LayerCheck]:
    model = load_model(keras_path, [import_file(p) for p in imports])
    layers = recurrent_layers(model)
    fused = fused_op_weights(tflite_path.read_bytes())
    if len(fused) != len(layers):
        raise ModelError(f"{tflite_path} has {len(fused)} fused ops but the Keras model has "
                         f"{len(layers)} recurrent layers; was it converted from this model?")
    x = load_inputs(inputs_path, model)
    probe = keras.Model(model.inputs, [out for layer in layers
                                       for out in (layer.input, layer.output)])
    values = probe([x])
    return [_check_layer(layer, fused[k], np.asarray(values[2 * k]), np.asarray(values[2 * k + 1]))
            for k, layer in enumerate(layers)]


def _check_layer(layer, fused, layer_in: np.ndarray, expected: np.ndarray) -> LayerCheck:
    name, options, weights = fused
    lowered = lower_cell(cell_factory(layer.cell), layer.cell, layer_in.shape[-1])
    if lowered.op_name != name:
        raise ModelError(f"layer {layer.name} lowers to {lowered.op_name} but the .tflite has "
                         f"{name}; convert the model again")
    core = HostCore(lowered.bound, name, params=tuple(weights))
    rs, gb = bool(options.get("return_sequences")), bool(options.get("go_backwards"))
    got = np.stack([core.run(sample, rs, gb)[0] for sample in layer_in])
    err = np.abs(got - expected)
    rel = err / np.maximum(np.abs(expected), 1e-3)
    return LayerCheck(layer.name, name, len(layer_in), float(err.max()), float(rel.max()))
