"""Recurrent state at the op boundary: initial states, final states, stateful streaming, reset.

The compute core takes the states in and gives the final states back (one buffer); the converter
makes them op inputs (initial_state), op outputs (return_state) or variable tensors (stateful).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from cells_catalog import CELLS, random_layer, randomize
from tensorflow.lite.python import schema_py_generated as schema
from tflm_env import TFLM_FLAGS, TFLM_INCLUDE, TFLM_LIB, needs_tflm

from fusegen.cli import FLOAT_TOLERANCE
from fusegen.converter import tflite_file
from fusegen.converter.model import convert
from fusegen.host.core import HostCore
from fusegen.lower import cell_factory, lower_cell
from fusegen.converter.lowering import ModelLowering
from fusegen.quantize import quantize_cell
from fusegen.host.core_s8 import HostCoreS8
from fusegen.quantize.scales import asymmetric_int8

STREAM_STEPS = 40


def _lowered(layer, input_size):
    return lower_cell(cell_factory(layer.cell), layer.cell, input_size)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_initial_and_final_states_match_keras(cell):
    layer, x = random_layer(cell, 4, 6, 7, seed=11)
    lowered = _lowered(layer, 4)
    core = HostCore(lowered.bound, lowered.op_name)
    rng = np.random.default_rng(12)
    widths = [lowered.bound.width(j) for j in lowered.graph.outputs[1:]]
    init = [rng.uniform(-0.5, 0.5, (1, w)).astype(np.float32) for w in widths]
    probe = keras.layers.RNN(layer.cell, return_state=True)
    y, *states = probe(x[:1], initial_state=[keras.ops.convert_to_tensor(s) for s in init])
    got_y, got_states = core.run(x[0], states=np.concatenate([s[0] for s in init]))
    np.testing.assert_allclose(got_y, np.asarray(y)[0], rtol=0, atol=FLOAT_TOLERANCE)
    expected_states = np.concatenate([np.asarray(s)[0] for s in states])
    np.testing.assert_allclose(got_states, expected_states, rtol=0, atol=FLOAT_TOLERANCE)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_streaming_one_step_at_a_time_equals_the_whole_sequence(cell):
    layer, _ = random_layer(cell, 3, 5, 1, seed=13)
    x = np.random.default_rng(14).uniform(-1, 1, (STREAM_STEPS, 3)).astype(np.float32)
    lowered = _lowered(layer, 3)
    core = HostCore(lowered.bound, lowered.op_name)
    whole, _ = core.run(x)
    state = None
    for t in range(STREAM_STEPS):  # a stateful model converted with timesteps=1
        y, state = core.run(x[t:t + 1], states=state)
    np.testing.assert_allclose(y, whole, rtol=0, atol=FLOAT_TOLERANCE)
    reset, _ = core.run(x[:1])  # after a reset: the first step from zero state again
    first, _ = core.run(x[:1], states=None)
    assert np.array_equal(reset, first)
    assert not np.allclose(reset, y)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_int8_streaming_is_bit_identical_to_the_whole_sequence(cell):
    layer, _ = random_layer(cell, 3, 5, 1, seed=15)
    lowered = _lowered(layer, 3)
    calib = np.random.default_rng(16).uniform(-1, 1, (8, STREAM_STEPS, 3)).astype(np.float32)
    qcell = quantize_cell(lowered.bound, calib, asymmetric_int8(-1.0, 1.0))
    core = HostCoreS8(qcell, lowered.op_name)
    x = qcell.quantize_input(calib[0])
    whole, whole_states = core.run(x)
    state = None
    for t in range(STREAM_STEPS):
        y, state = core.run(x[t:t + 1], states=state)
    assert np.array_equal(y, whole) and np.array_equal(state, whole_states)
    assert np.array_equal(whole, qcell.run(x))  # and the integer twin agrees


def test_keras_stateful_layer_streams_like_the_fused_core():
    model = keras.Sequential([keras.Input((1, 4), batch_size=1),
                              keras.layers.GRU(6, stateful=True)])
    randomize(model, seed=17)
    x = np.random.default_rng(18).uniform(-1, 1, (10, 1, 4)).astype(np.float32)
    expected = [np.asarray(model(x[t:t + 1]))[0] for t in range(10)]
    layer = model.layers[0]
    lowered = _lowered(layer, 4)
    core, state = HostCore(lowered.bound, lowered.op_name), None
    for t in range(10):
        y, state = core.run(x[t], states=state)
        np.testing.assert_allclose(y, expected[t], rtol=0, atol=FLOAT_TOLERANCE)


def _fused_ops(data):
    model = tflite_file.read_model(data)
    graph = model.subgraphs[0]
    ops = [op for op in graph.operators if tflite_file.op_name(model, op).startswith("FUSEGEN_")]
    return model, graph, ops


def test_stateful_layer_gets_variable_state_tensors():
    model = keras.Sequential([keras.Input((1, 3), batch_size=1),
                              keras.layers.LSTM(5, stateful=True), keras.layers.Dense(2)])
    data = convert(model, ModelLowering().lower_layer)
    tfl, graph, (op,) = _fused_ops(data)
    assert tflite_file.decode_options(op.customOptions)["stateful"] == 1
    params = 3  # kernel, recurrent kernel, bias
    states = [graph.tensors[i] for i in op.inputs[1 + params:]]
    assert len(states) == 2  # h and c, in Keras order
    for tensor in states:
        assert tensor.isVariable and list(tensor.shape) == [1, 5]
        assert tensor.type == schema.TensorType.FLOAT32
        assert tflite_file.tensor_value(tfl, op.inputs[-1]) is None  # no data: zero at reset


def test_encoder_states_feed_the_decoder():
    inputs = keras.Input((6, 3))
    y, h, c = keras.layers.LSTM(5, return_state=True)(inputs)
    repeated = keras.layers.RepeatVector(4)(y)
    decoded = keras.layers.LSTM(5, return_sequences=True)(repeated, initial_state=[h, c])
    model = keras.Model(inputs, keras.layers.Dense(2)(decoded))
    randomize(model, seed=19)
    data = convert(model, ModelLowering().lower_layer)
    _, _, (encoder, decoder) = _fused_ops(data)
    assert len(encoder.outputs) == 3  # y, h, c
    assert list(decoder.inputs[-2:]) == list(encoder.outputs[1:])
    assert tflite_file.decode_options(encoder.customOptions)["return_state"] == 1




@needs_tflm
@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole_lstm"])
def test_stateful_model_streams_through_tflm(tmp_path, cell):
    from fusegen.codegen import write_package
    from fusegen.host.tflm import run_tflm

    model = keras.Sequential([keras.Input((1, 3), batch_size=1),
                              keras.layers.RNN(CELLS[cell](5), stateful=True),
                              keras.layers.Dense(2)])
    randomize(model, seed=20)
    frames = np.random.default_rng(21).uniform(-1, 1, (STREAM_STEPS, 1, 3)).astype(np.float32)
    expected = np.stack([np.asarray(model(frames[t:t + 1]))[0] for t in range(STREAM_STEPS)])
    lowering = ModelLowering()
    data = convert(model, lowering.lower_layer)
    write_package(lowering.ops, tmp_path / "kernels")
    got = run_tflm(data, tmp_path / "kernels", frames, TFLM_INCLUDE, TFLM_LIB,  # one Invoke each
                   TFLM_FLAGS)
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=0,
                               atol=FLOAT_TOLERANCE)


def test_variable_sequence_length_says_what_to_do(tmp_path, capsys):
    from fusegen import cli

    model = keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(4)])
    model.save(tmp_path / "m.keras")
    code = cli.main(["convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "m.tflite")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "fixed timesteps" in err[0]


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_stateful_converted_model_streams_like_the_whole_sequence(cell):
    """The float32 file, run op by op on the host with its variable tensors: 40 frames, one
    invocation each, end where one call on the 40-step sequence ends; a reset starts over."""
    from fusegen.host.file import HostFile

    def model_of(timesteps, stateful):
        return keras.Sequential([keras.Input((timesteps, 3), batch_size=1),
                                 keras.layers.RNN(CELLS[cell](5), stateful=stateful),
                                 keras.layers.Dense(2)])

    streaming, whole = model_of(1, True), model_of(STREAM_STEPS, False)
    randomize(streaming, seed=22)
    whole.set_weights(streaming.get_weights())
    lowering = ModelLowering()
    data = convert(streaming, lowering.lower_layer)
    frames = np.random.default_rng(23).uniform(-1, 1, (STREAM_STEPS, 1, 3)).astype(np.float32)
    file = HostFile(data, lowering.ops)
    streamed = np.stack([file.invoke(f) for f in frames])
    expected = np.asarray(whole(frames.reshape(1, STREAM_STEPS, 3)))[0]
    np.testing.assert_allclose(streamed[-1], expected, rtol=0, atol=FLOAT_TOLERANCE)
    file.reset()
    np.testing.assert_array_equal(file.invoke(frames[0]), streamed[0])
    assert not np.allclose(streamed[0], streamed[-1])
