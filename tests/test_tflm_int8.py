"""Int8 models through tflite::MicroInterpreter, bit-exact against fusegen's host int8 runner.

The whole int8 .tflite (fused s8 ops with their int16 state tensors, and the builtins the joiner
adds: REVERSE_V2, CONCATENATION, ADD, MUL, RESHAPE, FULLY_CONNECTED) runs under a real TFLM with
the generated kernels, and is compared with equality against `HostFile`, which runs the same file
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
from tflm_env import TFLM_FLAGS, TFLM_INCLUDE, TFLM_LIB, needs_tflm

from fusegen.codegen import write_package
from fusegen.converter import tflite_file
from fusegen.host.file import HostFile
from fusegen.converter.int8 import convert_int8
from fusegen.converter.int8.chain import Int8Pipeline
from fusegen.host.tflm import TflmError, run_tflm_detailed

pytestmark = needs_tflm

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


def encoder_decoder() -> keras.Model:
    """States between layers: the encoder's int16 final states are the decoder's initial
    states (a QUANTIZE where the two state scales differ)."""
    inputs = keras.Input((TIMESTEPS, FEATURES))
    _, h, c = keras.layers.LSTM(UNITS, return_state=True)(inputs)
    # (RepeatVector would be a TILE, which TFLM lacks: the decoder reads the sequence again.)
    decoded = keras.layers.LSTM(UNITS, return_sequences=True)(inputs, initial_state=[h, c])
    model = keras.Model(inputs, keras.layers.Dense(2)(decoded))
    randomize(model, seed=33)
    return model


def states_through_builtins() -> keras.Model:
    """An initial state computed by Dense (QUANTIZE int8 -> int16) and final states read by
    Concatenate (QUANTIZE int16 -> int8)."""
    inputs = keras.Input((TIMESTEPS, FEATURES))
    init = keras.layers.Dense(UNITS, activation="tanh")(keras.layers.Flatten()(inputs))
    y, h = keras.layers.GRU(UNITS, return_state=True)(inputs, initial_state=[init])
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Concatenate()([y, h])))
    randomize(model, seed=34)
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

@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole_lstm"])
def test_stateful_int8_streams_bit_exact(cell, tmp_path):
    data, pipeline = converted(stateful(cell), tmp_path)
    states = variables(data)
    assert states and all(t.type == schema.TensorType.INT16 and len(t.shape) == 2
                          and t.shape[0] == 1 for t in states)
    frames = pipeline.quantize_input(uniform((STREAM_FRAMES, 1, FEATURES), seed=41))
    host = HostFile(data, pipeline.ops)
    expected = np.stack([host.invoke(frame) for frame in frames])
    # The state matters: frames each from zero states give other outputs, so a runner that reset
    # (or kernels that did not write their state back) would fail the equality below.
    assert not np.array_equal(expected, host.run(frames))
    np.testing.assert_array_equal(run_tflm(data, tmp_path, frames), expected)


@pytest.mark.parametrize("model", [
    pytest.param(lambda: bidirectional("concat"), id="bidirectional_concat"),
    pytest.param(lambda: bidirectional("ave"), id="bidirectional_ave"),
    pytest.param(stacked, id="stacked_lstm_gru"),
    pytest.param(encoder_decoder, id="encoder_decoder"),
    pytest.param(states_through_builtins, id="states_through_builtins"),
])
def test_composition_int8_bit_exact(model, tmp_path):
    data, pipeline = converted(model(), tmp_path)
    assert not variables(data)  # independent samples: streaming them equals running each alone
    x = pipeline.quantize_input(uniform((SAMPLES, TIMESTEPS, FEATURES), seed=42))
    expected = HostFile(data, pipeline.ops).run(x)
    np.testing.assert_array_equal(run_tflm(data, tmp_path, x), expected)


def test_float_inputs_to_an_int8_model_are_refused(tmp_path):
    data, _ = converted(stacked(), tmp_path)
    x = uniform((SAMPLES, TIMESTEPS, FEATURES), seed=43)
    with pytest.raises(TflmError, match="input is int8 and the inputs are float32: quantize"):
        run_tflm(data, tmp_path, x)
