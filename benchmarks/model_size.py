"""Model file size: fusegen's fused float32 and int8 models against the stock converter's
unroll=True ones.

    .venv/bin/python benchmarks/model_size.py > benchmarks/results/model_size.md

Each model is Input(T, I) -> RNN(units) -> Dense(10) with non-zero weights (anchor shape
T=28, I=28, units=32). The fused model stores every weight once plus one op; the unrolled one
repeats the gate ops (not the weights) per timestep.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from unroll_baseline import to_float, to_int8  # noqa: E402

from fusegen.converter.int8 import convert_int8  # noqa: E402
from fusegen.converter.model import convert, float_weight_bytes  # noqa: E402
from fusegen.converter.tflite_file import summary  # noqa: E402
from fusegen.converter.lowering import ModelLowering  # noqa: E402

T, I, U = 28, 28, 32


def _cells():
    from minimal_gated import MinimalGatedCell
    from peephole_lstm import PeepholeLSTMCell

    return {"LSTM": keras.layers.LSTMCell, "GRU": keras.layers.GRUCell,
            "SimpleRNN": keras.layers.SimpleRNNCell, "MinimalGated": MinimalGatedCell,
            "PeepholeLSTM": PeepholeLSTMCell}


def _model(cell_cls, unroll: bool) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((T, I)), keras.layers.RNN(cell_cls(U), unroll=unroll),
                              keras.layers.Dense(10)])
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(-0.3, 0.3, w.shape).astype(np.float32) for w in model.weights])
    return model


def _int8_fused(model: keras.Model) -> tuple[int, int]:
    """(fused int8 .tflite bytes, its int8 weight + int32 bias bytes)."""
    calibration = np.random.default_rng(1).uniform(-1, 1, (32, T, I)).astype(np.float32)
    data, pipeline = convert_int8(model, calibration)
    weights = sum(int(np.asarray(p).nbytes) for part in pipeline.parts
                  for call in getattr(part, "calls", []) for p in call.qcell.inputs.params)
    depth, cols = model.layers[-1].weights[0].shape  # the Dense head: int8 kernel, int32 bias
    return len(data), weights + depth * cols + 4 * cols


def row(name: str, cell_cls) -> str:
    fused = convert(_model(cell_cls, False), ModelLowering().lower_layer)
    int8_bytes, int8_weights = _int8_fused(_model(cell_cls, False))
    unrolled = _model(cell_cls, True)
    weights = float_weight_bytes(unrolled)
    unroll_float = to_float(unrolled)
    try:
        unroll_int8 = f"{len(to_int8(unrolled)):,}"
    except Exception as err:  # noqa: BLE001 - reported in the table
        unroll_int8 = f"fails: {type(err).__name__}"
    ops = summary(fused).op_names()
    return (f"| {name} | {weights:,} | {len(fused):,} | {len(fused) - weights:,} | "
            f"{len(unroll_float):,} | {len(unroll_float) / len(fused):.1f}x | {int8_bytes:,} | "
            f"{int8_weights:,} | {int8_bytes - int8_weights:,} | {unroll_int8} | "
            f"{', '.join(ops)} |")


def main() -> None:
    print(f"Model: Input({T}, {I}) -> RNN({U}) -> Dense(10), float32 (TF 2.21, Keras 3).\n")
    print("| cell | float weights B | fused .tflite B | overhead B | unroll=True float B | "
          "unroll / fused | fused int8 .tflite B | int8 weights + int32 biases B | "
          "int8 overhead B | unroll=True int8 B | fused ops |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, cls in _cells().items():
        print(row(name, cls), flush=True)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
