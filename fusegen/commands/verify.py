"""`fusegen verify`: each fused layer of a .tflite, run by its compiled C cores with the weights
stored in the .tflite, against the Keras layer on the same inputs (each sample at batch 1)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from fusegen.abi import OP_PREFIX
from fusegen.converter import tflite_file, validate
from fusegen.fileio import load_npy, read_bytes
from fusegen.frontend.keras_model import (
    ModelError,
    check_io,
    import_file,
    layer_mask,
    load_model,
    recurrent_layers,
    sequence_input,
    sequence_output,
)
from fusegen.host.core import HostCore, StepMask
from fusegen.reference.float_interp import run64
from fusegen import verdict
from fusegen.verdict import DEFAULT_FLOAT_BOUNDS, FloatBounds
from fusegen.converter.lowering import ModelLowering

if TYPE_CHECKING:  # imported where used: the TFLM runner is needed only with --tflm-*
    from fusegen.host.tflm import ModelCheck


@dataclass(frozen=True)
class LayerCheck:
    """One fused layer against Keras, and both against the layer in float64 (verdict.py)."""

    layer: str
    op_name: str
    samples: int
    max_abs: float  # against Keras
    max_rel: float
    err64: float = 0.0  # the kernel's max abs error against float64
    keras_err64: float = 0.0  # Keras' own
    magnitude: float = 0.0  # max |y| in float64

    def bound(self, bounds: FloatBounds = DEFAULT_FLOAT_BOUNDS) -> float:
        return bounds.bound(self.keras_err64, self.magnitude)

    def passed(self, bounds: FloatBounds = DEFAULT_FLOAT_BOUNDS) -> bool:
        return self.err64 <= self.bound(bounds)


def load_inputs(path: Path, model: keras.Model, lengths_path: Path | None = None) -> np.ndarray:
    """--inputs as N samples of the model input; sequences of different lengths (an object
    array, or --lengths) padded for the model's own mask (input_padding)."""
    return read_inputs(path, lengths_path, model, None, "")[0]


def read_inputs(path: Path, lengths_path: Path | None, model: keras.Model, data: bytes | None,
                source: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, lengths) of a verify: --inputs [N, T, F] as today; or sequences of different
    lengths (fusegen/sequences.py: an object array of [L, F], or a padded array plus --lengths
    L.npy, real steps first), padded to the model's T. A --length-input file (`data`) gets
    them zero-padded with their lengths; a model with a Keras mask at its input (Masking,
    Embedding(mask_zero=True)) gets its padding value after each sequence's real steps."""
    from fusegen.sequences import is_object_npy, read_array

    if not is_object_npy(path) and lengths_path is None:
        return inputs_from_arrays(load_npy(path, "--inputs"), None, model, data, source,
                                  str(path))
    lengths = None if lengths_path is None else load_npy(lengths_path, "--lengths")
    return inputs_from_arrays(read_array(path, "--inputs", ModelError), lengths, model, data,
                              source, str(path))


def inputs_from_arrays(raw: np.ndarray, lengths: np.ndarray | None, model: keras.Model,
                       data: bytes | None, source: str, label: str = "inputs",
                       lengths_name: str = "--lengths"
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """read_inputs on arrays (the CLI's files, the Python API's arrays): `raw` N samples
    [N, T, F], or an object array of N [L, F] sequences, or padded [N, T, F] with `lengths`."""
    from fusegen.sequences import from_arrays

    has_length = data is not None and validate.length_input(
        validate.read_model(data, source)) is not None
    if raw.dtype != object and lengths is None:
        x = check_inputs(raw, model, label)
        return x, (np.full(len(x), x.shape[1], np.int64) if has_length else None)
    check_io(model)
    sample_shape = tuple(model.inputs[0].shape[1:])
    if not sample_shape or sample_shape[0] is None:
        raise ModelError(f"{label}: sequences of different lengths are padded to the model's T, "
                         f"but its input {sample_shape} has no fixed timesteps; give the model "
                         "an Input(shape=(timesteps, features)), as for conversion")
    if raw.dtype != object and raw.ndim == 2 and len(sample_shape) == 1:
        raw = raw[..., None]  # token ids [N, T]
    seqs = from_arrays(raw, lengths, label, ModelError)
    if not seqs.ragged and seqs.x.shape[1] == sample_shape[0]:  # every sample all T steps
        x = seqs.x[..., 0] if len(sample_shape) == 1 else seqs.x
        return check_inputs(x, model, label), (seqs.lengths if has_length else None)
    pad = 0.0 if has_length else input_padding(model)
    if pad is None and lengths is not None:
        raise ModelError(f"{source or 'the file'} has no length input and the model no Keras mask "
                         f"at its input: {lengths_name} is for files converted with "
                         "--length-input or models starting with Masking or "
                         "Embedding(mask_zero=True)")
    if pad is None:
        raise ModelError(f"{label}: sequences of different lengths, but the model has no Keras "
                         "mask at its input (Masking, Embedding(mask_zero=True)) and the file no "
                         "length input: pad them to T yourself, or convert with --length-input")
    x = seqs.padded(sample_shape[0], pad, ModelError, label)
    x = x[..., 0] if len(sample_shape) == 1 else x
    return check_inputs(x, model, label), (seqs.lengths if has_length else None)


def input_padding(model: keras.Model) -> float | None:
    """The value a padded step holds for the mask at the model's input: Masking's mask_value,
    0 for Embedding(mask_zero=True); None when its first layer makes no mask."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    first = layers[0] if layers else None
    if isinstance(first, keras.layers.Masking):
        return float(first.mask_value)
    if isinstance(first, keras.layers.Embedding) and first.mask_zero:
        return 0.0
    return None


def check_inputs(x: np.ndarray, model: keras.Model, path: str = "inputs") -> np.ndarray:
    """x as N float32 samples of the model input (one sample [T, I] becomes [1, T, I])."""
    check_io(model)
    x = np.asarray(x)
    sample_shape = tuple(model.inputs[0].shape[1:])
    if x.shape == sample_shape:
        x = x[None]
    if x.ndim != len(sample_shape) + 1 or tuple(x.shape[1:]) != sample_shape:
        raise ModelError(f"{path}: shape {x.shape} is not N samples of the model input "
                         f"{sample_shape}")
    if not np.all(np.isfinite(x)):
        raise ModelError(f"{path}: inputs contain NaN or inf")
    return x.astype(np.float32)


def keras_on_prefixes(model: keras.Model, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The Keras reference of a --length-input file: each sample run on its first `length`
    steps only (what the file computes, with or without a Keras mask)."""
    out = []
    for sample, length in zip(x, lengths):
        prefix = sample[None, :int(length)]
        if isinstance(model, keras.Sequential):
            y = prefix
            for layer in model.layers:
                y = layer(y, training=False) if _takes_training(layer) else layer(y)
        else:  # a functional model checks its input's T; its graph does not
            y = model._run_through_graph(prefix, operation_fn=lambda op: op)
            y = y[0] if isinstance(y, (list, tuple)) else y
        out.append(np.asarray(y))
    return np.concatenate(out)


def _takes_training(layer) -> bool:
    return bool(getattr(layer, "_call_has_training_arg", False))


def verify_lengths_float(tflite_path: Path, keras_path: Path, imports: list[str],
                         inputs_path: Path, lengths_path: Path | None) -> LayerCheck:
    """A float32 --length-input file run whole on the host with the lengths, against
    keras_on_prefixes."""
    model = load_model(keras_path, [import_file(p) for p in imports])
    data = read_bytes(tflite_path)
    x, lengths = read_inputs(inputs_path, lengths_path, model, data, str(tflite_path))
    return check_lengths_float(model, data, x, lengths)


def check_lengths_float(model: keras.Model, data: bytes, x: np.ndarray,
                        lengths: np.ndarray) -> LayerCheck:
    """verify_lengths_float on the model, the file's bytes and the inputs (read_inputs')."""
    from fusegen.host.file import HostFile

    lowering = ModelLowering()
    for layer in recurrent_layers(model):
        lowering.lower_layer(layer)
    got = HostFile(data, lowering.ops).run(x, lengths)
    expected = keras_on_prefixes(model, x, lengths)
    err = np.abs(got - expected)
    rel = err / np.maximum(np.abs(expected), 1e-3)
    # No float64 twin of the whole model here: the relative term of the float rule applies to
    # the error against Keras itself (Keras' own float64 error taken as 0, the strict side).
    return LayerCheck("whole model (length)", "host file", len(x), float(err.max()),
                      float(rel.max()), err64=float(err.max()), keras_err64=0.0,
                      magnitude=float(np.abs(expected).max()))


def fused_op_weights(data: bytes) -> list[tuple[str, dict, list[np.ndarray]]]:
    """(op name, options, weight inputs) of every fused op, in graph order, unchecked against
    any IR (validate.fused_ops checks them)."""
    model = validate.read_model(data)
    found = []
    for op in model.subgraphs[0].operators:
        name = tflite_file.op_name(model, op)
        if name.startswith(OP_PREFIX):
            weights = [tflite_file.tensor_value(model, i) for i in op.inputs[1:]]
            found.append((name, validate.read_options(op.customOptions, name), weights))
    return found


def verify_model(tflite_path: Path, keras_path: Path, imports: list[str],
                 inputs_path: Path, lengths_path: Path | None = None) -> list[LayerCheck]:
    model = load_model(keras_path, [import_file(p) for p in imports])
    return FloatVerifier(model, load_inputs(inputs_path, model, lengths_path)).check(
        read_bytes(tflite_path), str(tflite_path))


class FloatVerifier:
    """The Keras side of a float32 verify, computed once: each recurrent layer's lowering and
    its inputs and outputs on `x`. `check(data)` runs a .tflite's fused ops against them (the
    mutation test runs many files through one verifier)."""

    def __init__(self, model: keras.Model, x: np.ndarray) -> None:
        self.layers = recurrent_layers(model)
        self.lowering = ModelLowering()
        self.lowered = [self.lowering.lower_layer(layer) for layer in self.layers]
        tensors = [t for layer in self.layers for t in (sequence_input(layer),
                                                        sequence_output(layer))]
        # Each layer's Keras mask (Masking, Embedding(mask_zero=True), ...), [N, T] bool.
        masked = [(k, m) for k, m in enumerate(layer_mask(layer) for layer in self.layers)
                  if m is not None]
        probe = keras.Model(model.inputs, tensors + [m for _, m in masked])
        values = [np.asarray(v) for v in probe([x])]
        self.values = values[:len(tensors)]
        self.masks: list[np.ndarray | None] = [None] * len(self.layers)
        for (k, _), v in zip(masked, values[len(tensors):]):
            self.masks[k] = v

    def check(self, data: bytes, source: str = "the model") -> list[LayerCheck]:
        lowering = self.lowering
        stored = validate.fused_ops(validate.read_model(data, source), lowering.ops, source)
        checks, used = [], 0
        for k, layer in enumerate(self.layers):
            fused = self.lowered[k]
            mine = stored[used:used + len(fused.calls)]
            used += len(fused.calls)
            if [m.name for m in mine] != [c.op_name for c in fused.calls]:
                raise ModelError(f"{source}: fused ops {[m.name for m in mine]} do not match "
                                 f"layer {layer.name} ({[c.op_name for c in fused.calls]}); was "
                                 "it converted from this model?")
            lows = lowering.layers[layer.name]
            cores = [_core(lows[j], call, m) for j, (call, m) in enumerate(zip(fused.calls, mine))]
            twins = [_twin64(lows[j], m) for j, m in enumerate(mine)]
            checks.append(_compare(layer.name, fused, cores, twins, self.values[2 * k],
                                   self.values[2 * k + 1], self.masks[k]))
        if used != len(stored):
            raise ModelError(f"{source} has {len(stored)} fused ops but the Keras model's "
                             f"recurrent layers make {used}")
        return checks


def _core(lowered, call, stored: validate.FusedOp):
    """The host core of one fused op as stored, checked to be the op the Keras layer lowers to:
    same sizes, options and state interface (else the comparison would be meaningless)."""
    if stored.dtype != "f32":
        raise ModelError(f"{stored.name} is {stored.dtype}, the rest of the model float32")
    mismatch = [f"{key} {stored.options[key]} (the Keras layer: {int(value)})"
                for key, value in call.options.items()
                if key in stored.options and stored.options[key] != int(value)]
    if (stored.units, stored.input_size) != (lowered.bound.units, lowered.bound.input_size):
        mismatch.append(f"{stored.units} units, input {stored.input_size} (the Keras layer: "
                        f"{lowered.bound.units}, {lowered.bound.input_size})")
    if stored.timesteps != call.output_shape[1] and len(call.output_shape) == 3:
        mismatch.append(f"{stored.timesteps} timesteps")
    if bool(stored.state_inputs) != bool(call.initial_states or stored.stateful):
        mismatch.append("state inputs")
    if mismatch:
        raise ModelError(f"{stored.name} differs from the op its Keras layer lowers to: "
                         f"{'; '.join(mismatch)}; was it converted from this model?")
    core = HostCore(lowered.bound, lowered.op_name, params=stored.consts)
    rs, gb = stored.return_sequences, stored.go_backwards
    zero_output = bool(stored.options["zero_output_for_mask"])

    def run(x, valid):  # [1, T, I] -> [1, ...], batch 1; valid: the sample's Keras mask [T]
        mask = None if valid is None else StepMask(valid.astype(np.uint8), None, zero_output)
        return core.run(x[0], rs, gb, mask=mask)[0][None]

    return run


def float_rule(tolerance: float | None, factor: float = verdict.FLOAT_FACTOR,
               rel: float = verdict.FLOAT_REL) -> str:
    """The float32 rule verify applied, as it prints it."""
    if tolerance is not None:
        return f"tolerance {tolerance:.1e} (absolute, float32 against Keras)"
    return (f"error against float64 <= max({factor:g} x Keras' own, {rel:.0e} x max(1, |y|)) "
            "(float32; fusegen/verdict.py)")


def float_table(rows, tolerance: float | None, bounds: FloatBounds = DEFAULT_FLOAT_BOUNDS) -> str:
    """verify's float32 table: each layer against Keras, and kernel and Keras against float64."""
    lines = [(f"{'layer':20s} {'op':28s} {'samples':>7s} {'max abs err':>12s} "
              f"{'max rel err':>12s} {'vs float64':>11s} {'Keras vs f64':>12s} {'bound':>9s}")]
    for row in rows:
        bound = tolerance if tolerance is not None else row.bound(bounds)
        lines.append(f"{row.layer:20s} {row.op_name:28s} {row.samples:7d} {row.max_abs:12.3e} "
                     f"{row.max_rel:12.3e} {row.err64:11.3e} {row.keras_err64:12.3e} "
                     f"{bound:9.2e}")
    return "\n".join(lines)


def _twin64(lowered, stored: validate.FusedOp):
    """The layer's op in float64 (the numpy twin in double, the Keras layer's weights), under
    the sample's Keras mask like the kernel."""
    rs, gb = stored.return_sequences, stored.go_backwards
    zero_output = bool(stored.options["zero_output_for_mask"])
    return lambda x, valid: run64(lowered.bound, x[0], rs, gb, valid, zero_output)[None]


def _compare(name, fused, cores, twins, layer_in, expected, masks=None) -> LayerCheck:
    def mask(i):
        return None if masks is None else masks[i]

    got = np.concatenate([
        fused.wire(sample[None], lambda k, v, i=i: cores[k](v, mask(i)), np)
        for i, sample in enumerate(layer_in)])
    exact = np.concatenate([
        fused.wire(sample[None].astype(np.float64), lambda k, v, i=i: twins[k](v, mask(i)), np)
        for i, sample in enumerate(layer_in)])
    err = np.abs(got - expected)
    rel = err / np.maximum(np.abs(expected), 1e-3)
    ops = " + ".join(dict.fromkeys(c.op_name for c in fused.calls))
    return LayerCheck(name, ops, len(layer_in), float(err.max()), float(rel.max()),
                      err64=float(np.abs(got - exact).max()),
                      keras_err64=float(np.abs(expected - exact).max()),
                      magnitude=float(np.abs(exact).max()))


# -- int8 models -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Int8Check:
    samples: int
    mean_abs: float
    max_abs: float
    output_step: float  # one int8 step of the output
    keras_accuracy: float | None
    int8_accuracy: float | None
    twin_mismatches: int | None = None  # samples where C and integer twin differ (twin=N)
    twin_samples: int = 0  # ... of this many (the first ones)

    @property
    def mean_steps(self) -> float:
        return self.mean_abs / self.output_step

    @property
    def max_steps(self) -> float:
        return self.max_abs / self.output_step


def run_float_file(data: bytes, model: keras.Model, x: np.ndarray) -> np.ndarray:
    """A float32 .tflite on the host, op by op (host/file.py), each sample from
    reset states."""
    from fusegen.host.file import HostFile

    lowering = ModelLowering()
    for layer in recurrent_layers(model):
        lowering.lower_layer(layer)
    return HostFile(data, lowering.ops).run(x)


def load_labels(path: Path, samples: int) -> np.ndarray:
    labels = load_npy(path, "--labels").reshape(-1)
    if len(labels) != samples:
        raise ModelError(f"{path}: {len(labels)} labels for {samples} samples")
    if not np.issubdtype(labels.dtype, np.integer) and np.any(labels != np.round(labels)):
        raise ModelError(f"{path}: labels must be integer class indices")
    return labels.astype(np.int64)


def accuracies(labels: np.ndarray, expected: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """(Keras float accuracy, the file's accuracy) of argmax over the last axis."""
    if expected.ndim < 2 or expected.shape[-1] < 2:
        raise ModelError("--labels needs a model whose output is class scores [N, classes]")
    return (float(np.mean(expected.reshape(len(labels), -1).argmax(-1) == labels)),
            float(np.mean(got.reshape(len(labels), -1).argmax(-1) == labels)))


def float_accuracy(tflite_path: Path, keras_path: Path, imports: list[str], inputs_path: Path,
                   labels_path: Path, lengths_path: Path | None = None) -> tuple[float, float]:
    """(Keras accuracy, the float32 file's accuracy on the host) on labelled inputs."""
    model = load_model(keras_path, [import_file(p) for p in imports])
    x = load_inputs(inputs_path, model, lengths_path)
    labels = load_labels(labels_path, len(x))
    got = run_float_file(read_bytes(tflite_path), model, x)
    return accuracies(labels, np.asarray(model(x)), got)


def run_int8_file(data: bytes, model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The int8 .tflite on float inputs, on the host, each sample from reset states: builtin
    ops through tf.lite, fused ops through their compiled int8 C cores, every constant read
    from the file (host/file.py)."""
    return Int8Verifier(model, x, expected=False).run(data)


class Int8Verifier:
    """The Keras side of an int8 verify, computed once (the lowered ops and Keras' outputs on
    `x`); `check(data)` runs a file against it."""

    def __init__(self, model: keras.Model, x: np.ndarray, expected: bool = True,
                 lengths: np.ndarray | None = None) -> None:
        lowering = ModelLowering("s8")
        for layer in recurrent_layers(model):
            lowering.lower_layer(layer)
        self.ops, self.x, self.lengths = lowering.ops, x, lengths
        if not expected:
            self.expected = None
        else:
            self.expected = (np.asarray(model(x)) if lengths is None
                             else keras_on_prefixes(model, x, lengths))

    def run(self, data: bytes, source: str = "the model") -> np.ndarray:
        from fusegen.host.file import HostFile
        from fusegen.converter.int8.chain import io_qparams
        from fusegen.quantize.scales import dequantize_int8

        out_q = io_qparams(data, source)[1]
        host = HostFile(data, self.ops)
        x = self._quantized(data, source)  # token ids: int32
        return dequantize_int8(host.run(x, self.lengths), out_q)

    def twin_mismatches(self, data: bytes, source: str = "the model",
                        samples: int | None = None) -> int:
        """Samples (of the first `samples`; None: all) on which a fused op's compiled int8 C
        core and the integer twin (reference/int_interp.py), fed the same inputs and the file's
        constants, give different outputs: 0 for a correct kernel (the same integer
        arithmetic)."""
        from fusegen.host.file import HostFile

        x = self._quantized(data, source)[:samples]
        lengths = None if self.lengths is None else self.lengths[:samples]
        got = HostFile(data, self.ops).run_fused(x, lengths)
        twin = HostFile(data, self.ops, twin=True).run_fused(x, lengths)
        differ = np.zeros(len(x), bool)
        for a, b in zip(got, twin, strict=True):
            differ |= np.any((a != b).reshape(len(x), -1), axis=1)
        return int(differ.sum())

    def _quantized(self, data: bytes, source: str) -> np.ndarray:
        from fusegen.converter.int8.chain import io_qparams
        from fusegen.quantize.scales import quantize_int8

        in_q = io_qparams(data, source)[0]
        return self.x.astype(np.int32) if in_q is None else quantize_int8(self.x, in_q)

    def check(self, data: bytes, source: str = "the model",
              labels: np.ndarray | None = None) -> tuple[Int8Check, np.ndarray]:
        from fusegen.converter.int8.chain import io_qparams

        got = self.run(data, source)
        expected = self.expected
        if got.shape != expected.shape:
            raise ModelError(f"{source}: output shape {list(got.shape[1:])} differs from the "
                             f"Keras model's {list(expected.shape[1:])}; was it converted from "
                             "this model?")
        err = np.abs(got.astype(np.float64) - expected)
        acc_keras = acc_int8 = None
        if labels is not None:
            acc_keras, acc_int8 = accuracies(labels, expected, got)
        step = io_qparams(data, source)[1][0]
        return Int8Check(len(self.x), float(err.mean()), float(err.max()), step, acc_keras,
                         acc_int8), got


# Inputs a calibration range leaves out: a few outliers are what calibrating on a sample of the
# data gives; from this share on, the input range does not fit the data and verify warns.
SATURATION_WARNING = 0.001


def _warn_outside_calibration(x: np.ndarray, qparams: tuple[float, int], path: Path) -> None:
    """A warning (stderr) when inputs leave the range the model was calibrated on: they
    saturate at the int8 limits. Printed when at least SATURATION_WARNING of the values do,
    or with --verbose when any does."""
    import sys

    from fusegen import quiet

    scale, zero = qparams
    lo, hi = (-128 - zero) * scale, (127 - zero) * scale
    outside = int(np.count_nonzero((x < lo - scale / 2) | (x > hi + scale / 2)))
    share = outside / max(1, x.size)
    if outside and (share >= SATURATION_WARNING or quiet.verbose()):
        print(f"fusegen: warning: {outside:,} of the {x.size:,} values in {path} "
              f"({100 * share:.2g}%) are outside the calibrated input range "
              f"[{lo:.4g}, {hi:.4g}] and saturate; calibrate on data like these inputs",
              file=sys.stderr)


def verify_int8(tflite_path: Path, keras_path: Path, imports: list[str], inputs_path: Path,
                labels_path: Path | None = None, lengths_path: Path | None = None,
                twin: int = 0) -> Int8Check:
    """twin: also count the samples, of the first `twin`, on which the fused ops' C and
    integer twin differ."""
    from fusegen.converter.int8.chain import io_qparams

    model = load_model(keras_path, [import_file(p) for p in imports])
    data = read_bytes(tflite_path)
    x, lengths = read_inputs(inputs_path, lengths_path, model, data, str(tflite_path))
    in_q = io_qparams(data, str(tflite_path))[0]
    if in_q is not None:  # None: token ids
        _warn_outside_calibration(x, in_q, inputs_path)
    labels = None if labels_path is None else load_labels(labels_path, len(x))
    verifier = Int8Verifier(model, x, lengths=lengths)
    check = verifier.check(data, str(tflite_path), labels)[0]
    if not twin:
        return check
    return replace(check, twin_mismatches=verifier.twin_mismatches(data, str(tflite_path), twin),
                   twin_samples=min(twin, len(x)))


def verify_model_tflm(tflite_path: Path, keras_path: Path, imports: list[str], inputs_path: Path,
                      include_dirs: Sequence[str], library: str,
                      extra_flags: Sequence[str] = (),
                      lengths_path: Path | None = None) -> ModelCheck:
    """`fusegen verify --tflm-include ... --tflm-lib ...`: the kernels are generated again from
    the Keras model (into a temporary directory) and the .tflite is run whole by TFLM."""
    from fusegen.codegen import write_package
    from fusegen.host.tflm import ModelCheck, TflmError, io_tensors, run_tflm_detailed

    if io_tensors(tflite_path.read_bytes())[0].dtype != np.float32:
        raise TflmError(f"{tflite_path} is an int8 model; the comparison with Keras under TFLM "
                        "is for float32 models")
    model = load_model(keras_path, [import_file(p) for p in imports])
    x = load_inputs(inputs_path, model, lengths_path)
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
