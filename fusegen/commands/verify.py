"""`fusegen verify`: each fused layer of a .tflite, run by its compiled C cores with the weights
stored in the .tflite, against the Keras layer on the same inputs (each sample at batch 1)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from fusegen.abi import OP_PREFIX
from fusegen.converter import tflite_file
from fusegen.frontend.keras_model import (ModelError, import_file, load_model, recurrent_layers,
                                          sequence_input, sequence_output)
from fusegen.host.core import HostCore
from fusegen.converter.lowering import ModelLowering


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
    """(op name, options, weight inputs) of every fused op, in graph order."""
    model = tflite_file.read_model(data)
    found = []
    for op in model.subgraphs[0].operators:
        name = tflite_file.op_name(model, op)
        if name.startswith(OP_PREFIX):
            weights = [tflite_file.tensor_value(model, i) for i in op.inputs[1:]]
            found.append((name, tflite_file.decode_options(op.customOptions), weights))
    return found


def verify_model(tflite_path: Path, keras_path: Path, imports: list[str],
                 inputs_path: Path) -> list[LayerCheck]:
    model = load_model(keras_path, [import_file(p) for p in imports])
    layers = recurrent_layers(model)
    stored = fused_op_weights(tflite_path.read_bytes())
    x = load_inputs(inputs_path, model)
    probe = keras.Model(model.inputs, [t for layer in layers
                                       for t in (sequence_input(layer), sequence_output(layer))])
    values = [np.asarray(v) for v in probe([x])]
    lowering, checks, used = ModelLowering(), [], 0
    for k, layer in enumerate(layers):
        fused = lowering.lower_layer(layer)
        mine = stored[used:used + len(fused.calls)]
        used += len(fused.calls)
        if [name for name, _, _ in mine] != [c.op_name for c in fused.calls]:
            raise ModelError(f"{tflite_path}: fused ops {[m[0] for m in mine]} do not match "
                             f"layer {layer.name} ({[c.op_name for c in fused.calls]}); was it "
                             "converted from this model?")
        cores = [_core(lowering.layers[layer.name][j], m) for j, m in enumerate(mine)]
        checks.append(_compare(layer.name, fused, cores, values[2 * k], values[2 * k + 1]))
    if used != len(stored):
        raise ModelError(f"{tflite_path} has {len(stored)} fused ops but the Keras model's "
                         f"recurrent layers make {used}")
    return checks


def _core(lowered, stored):
    _, options, weights = stored
    core = HostCore(lowered.bound, lowered.op_name, params=tuple(weights))
    rs, gb = bool(options.get("return_sequences")), bool(options.get("go_backwards"))
    return lambda x: core.run(x[0], rs, gb)[0][None]  # [1, T, I] -> [1, ...], batch 1


def _compare(name, fused, cores, layer_in, expected) -> LayerCheck:
    got = np.concatenate([fused.wire(sample[None], lambda k, v: cores[k](v), np)
                          for sample in layer_in])
    err = np.abs(got - expected)
    rel = err / np.maximum(np.abs(expected), 1e-3)
    ops = " + ".join(dict.fromkeys(c.op_name for c in fused.calls))
    return LayerCheck(name, ops, len(layer_in), float(err.max()), float(rel.max()))


# -- int8 models -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Int8Check:
    samples: int
    mean_abs: float
    max_abs: float
    output_step: float  # one int8 step of the output
    keras_accuracy: float | None
    int8_accuracy: float | None


def run_int8_file(data: bytes, model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The int8 .tflite on float inputs, on the host, each sample from reset states: builtin
    ops through tf.lite, fused ops through their compiled int8 C cores, every constant read
    from the file (converter/host_file.py)."""
    from fusegen.host.file import HostFile
    from fusegen.converter.int8.chain import io_qparams
    from fusegen.quantize.scales import dequantize_int8, quantize_int8

    in_q, out_q = io_qparams(data)
    lowering = ModelLowering("s8")
    for layer in recurrent_layers(model):
        lowering.lower_layer(layer)
    return dequantize_int8(HostFile(data, lowering.ops).run(quantize_int8(x, in_q)), out_q)


def verify_int8(tflite_path: Path, keras_path: Path, imports: list[str], inputs_path: Path,
                labels_path: Path | None = None) -> Int8Check:
    from fusegen.converter.int8.chain import io_qparams

    model = load_model(keras_path, [import_file(p) for p in imports])
    x = load_inputs(inputs_path, model)
    data = tflite_path.read_bytes()
    got = run_int8_file(data, model, x)
    expected = np.asarray(model(x))
    err = np.abs(got - expected)
    acc_keras = acc_int8 = None
    if labels_path is not None:
        labels = np.load(labels_path).reshape(-1)
        if len(labels) != len(x):
            raise ModelError(f"{labels_path}: {len(labels)} labels for {len(x)} samples")
        acc_keras = float(np.mean(expected.argmax(-1) == labels))
        acc_int8 = float(np.mean(got.argmax(-1) == labels))
    return Int8Check(len(x), float(err.mean()), float(err.max()), io_qparams(data)[1][0],
                     acc_keras, acc_int8)


def verify_model_tflm(tflite_path: Path, keras_path: Path, imports: list[str], inputs_path: Path,
                      include_dirs: Sequence[str], library: str,
                      extra_flags: Sequence[str] = ()) -> ModelCheck:
    """`fusegen verify --tflm-include ... --tflm-lib ...`: the kernels are generated again from
    the Keras model (into a temporary directory) and the .tflite is run whole by TFLM."""
    from fusegen.codegen import write_package
    from fusegen.host.tflm import ModelCheck, TflmError, io_tensors, run_tflm_detailed

    if io_tensors(tflite_path.read_bytes())[0].dtype != np.float32:
        raise TflmError(f"{tflite_path} is an int8 model; the comparison with Keras under TFLM "
                        "is for float32 models")
    model = load_model(keras_path, [import_file(p) for p in imports])
    x = load_inputs(inputs_path, model)
    lowering = ModelLowering()
    for layer in recurrent_layers(model):
        lowering.lower_layer(layer)
    with tempfile.TemporaryDirectory(prefix="fusegen_kernels_") as kernels:
        write_package(lowering.ops, Path(kernels))
        run = run_tflm_detailed(tflite_path.read_bytes(), kernels, x, include_dirs, library,
                                extra_flags)
    expected = np.asarray(model(x))
    if expected.shape != run.outputs.shape:
        raise TflmError(f"{tflite_path} outputs {run.outputs.shape[1:]} per sample, the Keras "
                        f"model {expected.shape[1:]}; was it converted from this model?")
    err = np.abs(run.outputs - expected)
    rel = err / np.maximum(np.abs(expected), 1e-3)
    return ModelCheck(len(x), float(err.max()), float(rel.max()), run.arena_used_bytes)
