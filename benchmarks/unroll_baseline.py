"""What the stock TFLite converter makes of a Keras RNN, the baseline fusegen is measured against.

For each cell: the model unrolled (`unroll=True`) as float32 and as full int8, and the default
WHILE-loop form as float32 and as int8. The WHILE int8 conversion is known to crash the process
(SIGSEGV inside the calibrator), so it runs in a subprocess and only its exit status is kept.

    .venv/bin/python benchmarks/unroll_baseline.py [--timesteps 28 --inputs 28 --units 32]

Nothing is written to disk; `baseline_sizes` is the API for other benchmarks.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from fusegen.converter.model import float_weight_bytes, make_converter
from fusegen.converter.tflite_file import summary

CELLS = {"LSTM": keras.layers.LSTM, "GRU": keras.layers.GRU, "SimpleRNN": keras.layers.SimpleRNN}
DENSE_UNITS = 10
CALIBRATION_SAMPLES = 16
WHILE_INT8_TIMEOUT_S = 600


@dataclass(frozen=True)
class Baseline:
    cell: str
    float_weight_bytes: int
    unroll_float_bytes: int
    unroll_int8_bytes: int
    unroll_ops: int  # one set of gate ops per timestep: where the unrolled bytes go
    while_float_bytes: int
    while_int8_status: str  # "ok, N bytes", "SIGSEGV (exit -11)", ...


def build(cell_kind: str, timesteps: int, input_size: int, units: int, unroll: bool):
    """Input -> cell -> Dense(10), with non-zero weights everywhere (zero biases fold away)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((timesteps, input_size)),
            CELLS[cell_kind](units, unroll=unroll),
            keras.layers.Dense(DENSE_UNITS),
        ]
    )
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(-0.3, 0.3, w.shape).astype(np.float32) for w in model.weights])
    return model


def to_float(model: keras.Model) -> bytes:
    return make_converter(model, lambda layer: None).convert()


def to_int8(model: keras.Model) -> bytes:
    """Full-integer conversion: int8 weights and activations, int8 input and output."""
    converter = make_converter(model, lambda layer: None)
    shape = (1, *model.inputs[0].shape[1:])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: _calibration(shape)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def _calibration(shape: tuple[int, ...]) -> Iterator[list[np.ndarray]]:
    rng = np.random.default_rng(1)
    for _ in range(CALIBRATION_SAMPLES):
        yield [rng.normal(size=shape).astype(np.float32)]


def while_int8_status(cell_kind: str, timesteps: int, input_size: int, units: int) -> str:
    """Run the WHILE-loop int8 conversion in a child process; describe how it ended."""
    args = [sys.executable, __file__, "--while-int8-child", cell_kind]
    args += [str(timesteps), str(input_size), str(units)]
    try:
        done = subprocess.run(
            args, check=False, capture_output=True, text=True, timeout=WHILE_INT8_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return f"timeout after {WHILE_INT8_TIMEOUT_S} s"
    return _describe_exit(done.returncode, done.stdout, done.stderr)


def _describe_exit(code: int, stdout: str, stderr: str) -> str:
    if code == 0:
        return f"ok, {stdout.strip().splitlines()[-1]} bytes"
    if code < 0:
        return f"{signal.Signals(-code).name} (exit {code})"
    last = (stderr.strip().splitlines() or ["no output"])[-1]
    return f"exit {code}: {last[:80]}"


def baseline_sizes(cell_kind: str, timesteps: int, input_size: int, units: int) -> dict:
    """Sizes in bytes of the stock conversions of Input -> cell -> Dense(10); see `Baseline`."""
    unrolled = build(cell_kind, timesteps, input_size, units, unroll=True)
    looped = build(cell_kind, timesteps, input_size, units, unroll=False)
    unroll_float = to_float(unrolled)
    return asdict(
        Baseline(
            cell=cell_kind,
            float_weight_bytes=float_weight_bytes(unrolled),
            unroll_float_bytes=len(unroll_float),
            unroll_int8_bytes=len(to_int8(unrolled)),
            unroll_ops=len(summary(unroll_float).ops),
            while_float_bytes=len(to_float(looped)),
            while_int8_status=while_int8_status(cell_kind, timesteps, input_size, units),
        )
    )


def table(rows: list[dict]) -> str:
    columns = list(Baseline.__dataclass_fields__)
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def _child(cell_kind: str, timesteps: str, input_size: str, units: str) -> None:
    model = build(cell_kind, int(timesteps), int(input_size), int(units), unroll=False)
    print(len(to_int8(model)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=28)
    parser.add_argument("--inputs", type=int, default=28)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--while-int8-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.while_int8_child:
        _child(*args.while_int8_child)
        return
    rows = [baseline_sizes(c, args.timesteps, args.inputs, args.units) for c in args.cells]
    print(table(rows))


if __name__ == "__main__":
    main()
