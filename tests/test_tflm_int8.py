"""Int8 models through tflite::MicroInterpreter, bit-exact against fusegen's host int8 runner.

The whole int8 .tflite (fused s8 ops with their int16 state tensors, and the builtins the joiner
adds: REVERSE_V2, CONCATENATION, ADD, MUL, RESHAPE, FULLY_CONNECTED) runs under a real TFLM with
the generated kernels, and is compared with equality against `Int8File`, which runs the same file
op by op on the host (builtins by tf.lite, fused ops by their compiled int8 C cores). Integer
paths have no tolerance: any difference is a bug.

Every test needs a TFLM build and is skipped without one (see tests/test_tflm_runner.py):
    FUSEGEN_TFLM_INCLUDE  colon-separated include dirs (TFLM root, flatbuffers/include, ...)
    FUSEGEN_TFLM_LIB      the static library (e.g. .../gen/<target>/lib/libtensorflow-microlite.a)
    FUSEGEN_TFLM_FLAGS    optional extra compiler flags, space-separated
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import keras
import numpy as np
import pytest
from cells_catalog import CELLS, randomize
from tensorflow.lite.python import schema_py_generated as schema

from fusegen.codegen import write_package
from fusegen.converter import tflite_file
from fusegen.converter.int8 import Int8File, Int8Pipeline, convert_int8
from fusegen.tflm_check import TflmError, run_tflm_detailed

TFLM_INCLUDE = [d for d in os.environ.get("FUSEGEN_TFLM_INCLUDE", "").split(":") if d]
TFLM_LIB = os.environ.get("FUSEGEN_TFLM_LIB", "")
TFLM_FLAGS = os.environ.get("FUSEGEN_TFLM_FLAGS", "").split()
pytestmark = pytest.mark.skipif(
    not (TFLM_INCLUDE and TFLM_LIB),
    reason="needs a TFLM build: set FUSEGEN_TFLM_INCLUDE (colon-separated include dirs) and "
           "FUSEGEN_TFLM_LIB (libtensorflow-microlite.a)",
)

FEATURES, UNITS, TIMESTEPS = 3, 5, 8
CALIBRATION_SAMPLES, STREAM_FRAMES, SAMPLES = 64, 40, 6


# -- models --------------------------------------------------------------------------------------

def stateful(cell: str) -> keras.Model:
    """One frame per call, the cell's state kept between calls (int16 variables in the file)."""
    model = keras.Sequential([
        keras.Input((1, FEATURES), batch_size=1),
        keras.layers.RNN(CELLS[cell](UNITS), stateful=True),
        keras.layers.Dense(2),
    ])
    randomize(model, seed=30)
    return model


def bidirectional(merge_mode: str) -> keras.Model:
    """Forward and backward fused ops; the joiner adds REVERSE_V2 and the merge builtins."""
    model = keras.Sequential([
        keras.Input((TIMESTEPS, FEATURES)),
        keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=True),
                                   merge_mode=merge_mode),
        keras.layers.Flatten(),
        keras.layers.Dense(2),
    ])
    randomize(model, seed=31)
    return model


def stacked() -> keras.Model:
    """StackedRNNCells: one fused op per cell, the int8 sequence passed between them."""
    cells = keras.layers.StackedRNNCells([keras.layers.LSTMCell(UNITS), keras.layers.GRUCell(4)])
    model = keras.Sequential([
        keras.Input((TIMESTEPS, FEATURES)),
        keras.layers.RNN(cells),
        keras.layers.Dense(2),
    ])
    randomize(model, seed=32)
    return model


# -- helpers -------------------------------------------------------------------------------------

def uniform(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def converted(model: keras.Model, kernels: Path) -> tuple[bytes, Int8Pipeline]:
    """The whole-model int8 .tflite, calibrated on random frames; its s8 kernels in `kernels`."""
    shape = tuple(model.inputs[0].shape[1:])
    data, pipeline = convert_int8(model, uniform((CALIBRATION_SAMPLES, *shape), seed=40))
    write_package(pipeline.ops, kernels, ("s8",))
    return data, pipeline


def run_tflm(data: bytes, kernels: Path, x: np.ndarray) -> np.ndarray:
    """One Invoke per sample, no Reset in between (variables stream)."""
    result = run_tflm_detailed(data, kernels, x, TFLM_INCLUDE, TFLM_LIB, TFLM_FLAGS)
    assert result.outputs.dtype == np.int8 and result.arena_used_bytes > 0
    return result.outputs


def variables(data: bytes) -> list[schema.TensorT]:
    graph = tflite_file.read_model(data).subgraphs[0]
    return [t for t in graph.tensors if t.isVariable]


# -- tests ---------------------------------------------------------------------------------------

# HostFile (Int8File) runs builtins through tf.lite.Interpreter with its default XNNPACK delegate,
# whose int8 requantization rounds once, in float; TFLM's reference kernels (and tf.lite without
# delegates) round twice, gemmlowp's way. They differ by one step where the exact value is near a
# half: here frame 26's FULLY_CONNECTED, acc 8405 * 0.0061269808 = 51.4973 (+ zero point -85):
# high mul 6592 / 2^7 = 51.5 -> 52, so TFLM writes -33, the host -34. With
# OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES in host_file._OneOp every case here is equal.
XNNPACK_ROUNDING = pytest.mark.xfail(
    reason="host_file._OneOp uses tf.lite's XNNPACK delegate, which rounds int8 requantization "
           "once; TFLM rounds twice (1 step at frame 26's FULLY_CONNECTED)", strict=False)


@pytest.mark.parametrize("cell", [pytest.param("lstm", marks=XNNPACK_ROUNDING), "gru",
                                  "peephole_lstm"])
def test_stateful_int8_streams_bit_exact(cell, tmp_path):
    data, pipeline = converted(stateful(cell), tmp_path)
    states = variables(data)
    assert states and all(t.type == schema.TensorType.INT16 and len(t.shape) == 2
                          and t.shape[0] == 1 for t in states)
    frames = pipeline.quantize_input(uniform((STREAM_FRAMES, 1, FEATURES), seed=41))
    host = Int8File(data, pipeline.ops)
    expected = np.stack([host.invoke(frame) for frame in frames])
    # The state matters: frames each from zero states give other outputs, so a runner that reset
    # (or kernels that did not write their state back) would fail the equality below.
    assert not np.array_equal(expected, host.run(frames))
    np.testing.assert_array_equal(run_tflm(data, tmp_path, frames), expected)


@pytest.mark.parametrize("model", [
    pytest.param(lambda: bidirectional("concat"), id="bidirectional_concat"),
    pytest.param(lambda: bidirectional("ave"), id="bidirectional_ave"),
    pytest.param(stacked, id="stacked_lstm_gru"),
])
def test_composition_int8_bit_exact(model, tmp_path):
    data, pipeline = converted(model(), tmp_path)
    assert not variables(data)  # independent samples: streaming them equals running each alone
    x = pipeline.quantize_input(uniform((SAMPLES, TIMESTEPS, FEATURES), seed=42))
    expected = Int8File(data, pipeline.ops).run(x)
    np.testing.assert_array_equal(run_tflm(data, tmp_path, x), expected)


def test_float_inputs_to_an_int8_model_are_refused(tmp_path):
    data, _ = converted(stacked(), tmp_path)
    x = uniform((SAMPLES, TIMESTEPS, FEATURES), seed=43)
    with pytest.raises(TflmError, match="input is int8 and the inputs are float32: quantize"):
        run_tflm(data, tmp_path, x)
