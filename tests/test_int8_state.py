"""int8 recurrent state and layer options, for every catalog cell.

The int8 op's states are its own int16 values at the state's power-of-two scale
(QuantizedCell.state_scales): initial-state inputs, stateful variables and return_state outputs
all hold them, so nothing is requantized at the op boundary.

What each test holds, and why:
  * C equals the integer twin exactly (y and final states), from non-zero initial states.
  * The twin against float Keras: y within the int8 accuracy rule of test_int8_cells.py (mean
    error at most 2 output steps; measured 0.23 to 0.48 with initial states); final states
    within 2% of their largest magnitude on average (measured 0.23% to 0.62%: the state is
    int16, its error is the int8 x / weights / matmul-operand error that y also carries).
  * Whole models (stateful streaming, Bidirectional in every merge mode, StackedRNNCells,
    go_backwards): the .tflite run op by op on the host (C cores for the fused ops, tf.lite for
    the builtins, every constant read from the file) equals the converter's own pipeline of
    integer twins exactly, and both are within 2 output steps of Keras on average.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
from cells_catalog import CELLS, randomize
from tensorflow.lite.python import schema_py_generated as schema

from fusegen.converter import tflite_file
from fusegen.host.file import HostFile
from fusegen.converter.int8 import convert_int8
from fusegen.lower import cell_factory, lower_cell
from fusegen.quantize import quantize_cell
from fusegen.host.core_s8 import HostCoreS8
from fusegen.quantize.scales import asymmetric_int8
from fusegen.reference import float_interp

MAX_STEPS = 2.0  # mean |int8 - Keras| in output steps (test_int8_cells.py)
MAX_STATE_ERROR = 0.02  # mean |int8 - Keras| of a final state / its largest magnitude
STREAM_STEPS = 40
CELL_NAMES = sorted(CELLS)


def _steps(got: np.ndarray, expected: np.ndarray, step: float) -> float:
    return float(np.abs(got - expected).mean() / step)


@functools.cache
def _state_case(cell: str):
    input_size, units, timesteps = 4, 12, 9
    layer = keras.layers.RNN(CELLS[cell](units), return_sequences=True, return_state=True)
    rng = np.random.default_rng(CELL_NAMES.index(cell))
    x = rng.uniform(-1.5, 1.5, (24, timesteps, input_size)).astype(np.float32)
    layer(x[:1])
    randomize(layer, seed=30 + CELL_NAMES.index(cell))
    lowered = lower_cell(cell_factory(layer.cell), layer.cell, input_size)
    # Initial states as deployed: the final states of other sequences.
    warm = rng.uniform(-1.5, 1.5, (24, timesteps, input_size)).astype(np.float32)
    init = [np.stack(s) for s in zip(*[float_interp.run(lowered.bound, w)[1] for w in warm])]
    qcell = quantize_cell(lowered.bound, x[:16], asymmetric_int8(-1.5, 1.5),
                          calibration_states=[s[:16] for s in init])
    return layer, lowered, qcell, HostCoreS8(qcell, lowered.op_name), x[16:], [s[16:] for s in init]


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_int8_initial_and_final_states(cell):
    layer, _, qcell, core, x, init = _state_case(cell)
    y, *states = layer(x, initial_state=[keras.ops.convert_to_tensor(s) for s in init])
    y, states = np.asarray(y), [np.asarray(s) for s in states]
    ys, finals = [], []
    for n in range(len(x)):
        x_q = qcell.quantize_input(x[n])
        init_q = qcell.quantize_states([s[n] for s in init])
        twin_y, twin_states = qcell.run_states(x_q, init_q, return_sequences=True)
        c_y, c_states = core.run(x_q, True, False, np.concatenate(init_q))
        assert np.array_equal(c_y, twin_y)
        assert np.array_equal(c_states, np.concatenate(twin_states))
        ys.append(qcell.dequantize_output(twin_y))
        finals.append(qcell.dequantize_states(twin_states))
    assert _steps(np.stack(ys), y, qcell.output_qparams[0]) <= MAX_STEPS
    for k, expected in enumerate(states):
        got = np.stack([f[k] for f in finals])
        assert np.abs(got - expected).mean() <= MAX_STATE_ERROR * np.abs(expected).max()


def test_int8_state_scales_cover_the_calibrated_initial_states():
    _, _, qcell, _, _, init = _state_case("lstm")
    assert len(qcell.state_scales) == 2  # h and c, each at its own scale
    for state, scale in zip(init, qcell.state_scales):
        assert np.abs(state).max() <= scale * 32767
    back = qcell.dequantize_states(qcell.quantize_states(init))
    for got, state, scale in zip(back, init, qcell.state_scales):
        assert np.abs(got - state).max() <= scale / 2 * (1 + 1e-6)


def test_int8_calibration_states_are_checked():
    _, lowered, _, _, x, init = _state_case("gru")
    with pytest.raises(ValueError, match="1 states, got 2"):
        quantize_cell(lowered.bound, x, asymmetric_int8(-1.5, 1.5),
                      calibration_states=[init[0], init[0]])
    with pytest.raises(ValueError, match="must be"):
        quantize_cell(lowered.bound, x, asymmetric_int8(-1.5, 1.5),
                      calibration_states=[init[0][:, :3]])


# -- whole models --------------------------------------------------------------------------------
def _check_model(model: keras.Model, calibration: np.ndarray, x: np.ndarray) -> bytes:
    # The test samples are calibrated on too: an output the ranges do not cover saturates,
    # which is the calibration's doing, not the kernels'.
    data, pipeline = convert_int8(model, np.concatenate([calibration, x]))
    x_q = pipeline.quantize_input(x)
    from_file = HostFile(data, pipeline.ops).run(x_q)
    assert np.array_equal(from_file, pipeline.run_int8(x_q))
    scale, zero_point = pipeline.output_qparams
    got = (from_file.astype(np.float32) - zero_point) * scale
    assert _steps(got, np.asarray(model(x)), scale) <= MAX_STEPS
    return data


def _op_names(data: bytes) -> list[str]:
    return tflite_file.summary(data).op_names()


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_int8_stateful_streaming_equals_the_whole_sequence(cell):
    model = keras.Sequential([keras.Input((1, 3), batch_size=1),
                              keras.layers.RNN(CELLS[cell](5), stateful=True),
                              keras.layers.Dense(2)])
    randomize(model, seed=40 + CELL_NAMES.index(cell))
    rng = np.random.default_rng(41)
    calibration = rng.uniform(-1, 1, (64, 1, 3)).astype(np.float32)  # one stream of frames
    data, pipeline = convert_int8(model, calibration)
    frames = pipeline.quantize_input(rng.uniform(-1, 1, (STREAM_STEPS, 1, 3)).astype(np.float32))
    file = HostFile(data, pipeline.ops)
    streamed = np.stack([file.invoke(f) for f in frames])  # one invocation per frame
    whole = pipeline.run_int8(frames.reshape(1, STREAM_STEPS, 3))[0]  # 40 steps in one call
    assert np.array_equal(streamed[-1], whole)
    assert np.array_equal(streamed, pipeline.run_int8(frames))  # the twin streams the same
    file.reset()  # MicroInterpreter::Reset(): the variables are zero again
    assert np.array_equal(file.invoke(frames[0]), streamed[0])
    assert not np.array_equal(streamed[0], streamed[-1])
    # Against Keras' own stateful layer, frame by frame.
    scale, zero_point = pipeline.output_qparams
    keras_frames = (frames.astype(np.float32) - pipeline.input_qparams[1]) * \
        pipeline.input_qparams[0]
    model.layers[0].reset_states()
    expected = np.stack([np.asarray(model(f[None]))[0] for f in keras_frames])
    got = (streamed.astype(np.float32) - zero_point) * scale
    assert _steps(got, expected, scale) <= MAX_STEPS
    # The states are int16 variables at the op's state scales.
    tfl = tflite_file.read_model(data)
    graph = tfl.subgraphs[0]
    variables = [t for t in graph.tensors if t.isVariable]
    assert [t.type for t in variables] == [schema.TensorType.INT16] * len(variables)
    fused = pipeline.parts[0].calls[0].qcell
    assert [float(t.quantization.scale[0]) for t in variables] == \
        pytest.approx(list(fused.state_scales))


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_int8_bidirectional(cell):
    model = keras.Sequential([
        keras.Input((8, 3)),
        keras.layers.Bidirectional(keras.layers.RNN(CELLS[cell](5), return_sequences=True)),
        keras.layers.Flatten(), keras.layers.Dense(3)])
    randomize(model, seed=50 + CELL_NAMES.index(cell))
    rng = np.random.default_rng(51)
    data = _check_model(model, rng.uniform(-1, 1, (48, 8, 3)).astype(np.float32),
                        rng.uniform(-1, 1, (8, 8, 3)).astype(np.float32))
    names = _op_names(data)
    assert names.count(names[0]) == 2 and names[0].startswith("FUSEGEN_")
    assert "REVERSE_V2" in names and "CONCATENATION" in names and "WHILE" not in names


@pytest.mark.parametrize("mode", ["sum", "mul", "ave", "concat"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_int8_bidirectional_merge_modes(mode, return_sequences):
    head = [keras.layers.Flatten()] if return_sequences else []
    model = keras.Sequential([
        keras.Input((8, 3)),
        keras.layers.Bidirectional(keras.layers.GRU(6, return_sequences=return_sequences),
                                   merge_mode=mode),
        *head, keras.layers.Dense(3)])
    randomize(model, seed=52)
    rng = np.random.default_rng(53)
    data = _check_model(model, rng.uniform(-1, 1, (48, 8, 3)).astype(np.float32),
                        rng.uniform(-1, 1, (8, 8, 3)).astype(np.float32))
    assert ("REVERSE_V2" in _op_names(data)) == return_sequences


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_int8_stacked_cells_go_backwards(cell):
    stack = keras.layers.StackedRNNCells([CELLS[cell](5), keras.layers.LSTMCell(4)])
    model = keras.Sequential([keras.Input((8, 3)),
                              keras.layers.RNN(stack, go_backwards=True),
                              keras.layers.Dense(2)])
    randomize(model, seed=60 + CELL_NAMES.index(cell))
    rng = np.random.default_rng(61)
    data = _check_model(model, rng.uniform(-1, 1, (48, 8, 3)).astype(np.float32),
                        rng.uniform(-1, 1, (8, 8, 3)).astype(np.float32))
    fused = [n for n in _op_names(data) if n.startswith("FUSEGEN_")]
    assert len(fused) == 2 and fused[1] == "FUSEGEN_LSTM_S8"
    options = [o.options for o in tflite_file.custom_ops(data)]
    assert [bool(o["go_backwards"]) for o in options] == [True, False]


def test_int8_several_rnn_layers():
    model = keras.Sequential([keras.Input((8, 3)), keras.layers.GRU(6, return_sequences=True),
                              keras.layers.SimpleRNN(5, return_sequences=True),
                              keras.layers.LSTM(4), keras.layers.Dense(2)])
    randomize(model, seed=70)
    rng = np.random.default_rng(71)
    data = _check_model(model, rng.uniform(-1, 1, (48, 8, 3)).astype(np.float32),
                        rng.uniform(-1, 1, (8, 8, 3)).astype(np.float32))
    assert [n for n in _op_names(data) if n.startswith("FUSEGEN_")] == \
        ["FUSEGEN_GRU_S8", "FUSEGEN_SIMPLE_RNN_S8", "FUSEGEN_LSTM_S8"]


# -- states between layers: graph models (converter/int8_graph.py) ------------------------------
def _check_graph(model: keras.Model, x_calibration: np.ndarray, x: np.ndarray) -> bytes:
    data, converted = convert_int8(model, np.concatenate([x_calibration, x]))
    x_q = converted.quantize_input(x)
    c_run = HostFile(data, converted.ops).run(x_q)
    assert np.array_equal(c_run, HostFile(data, converted.ops, twin=True).run(x_q))
    scale, zero_point = converted.output_qparams
    got = (c_run.astype(np.float32) - zero_point) * scale
    assert _steps(got, np.asarray(model(x)), scale) <= MAX_STEPS
    return data


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_int8_encoder_states_feed_the_decoder(cell):
    inputs = keras.Input((6, 3))
    y, *states = keras.layers.RNN(CELLS[cell](5), return_state=True)(inputs)
    repeated = keras.layers.RepeatVector(4)(y)
    decoded = keras.layers.RNN(CELLS[cell](5), return_sequences=True)(repeated,
                                                                      initial_state=states)
    model = keras.Model(inputs, keras.layers.Dense(2)(decoded))
    randomize(model, seed=80 + CELL_NAMES.index(cell))
    rng = np.random.default_rng(81)
    data = _check_graph(model, rng.uniform(-1, 1, (48, 6, 3)).astype(np.float32),
                        rng.uniform(-1, 1, (8, 6, 3)).astype(np.float32))
    tfl = tflite_file.read_model(data)
    graph = tfl.subgraphs[0]
    encoder, decoder = [op for op in graph.operators
                        if tflite_file.op_name(tfl, op).startswith("FUSEGEN_")]
    n_states = len(states)
    assert len(encoder.outputs) == 1 + n_states
    for k in range(n_states):  # each state reaches the decoder directly or through a QUANTIZE
        made, read = encoder.outputs[1 + k], decoder.inputs[-n_states + k]
        assert graph.tensors[read].type == schema.TensorType.INT16
        if read != made:
            (op,) = [o for o in graph.operators if list(o.outputs) == [read]]
            assert tflite_file.op_name(tfl, op) == "QUANTIZE" and list(op.inputs) == [made]


def test_int8_final_state_read_by_a_dense_layer():
    inputs = keras.Input((6, 3))
    _, h, c = keras.layers.LSTM(5, return_state=True)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Concatenate()([h, c])))
    randomize(model, seed=82)
    rng = np.random.default_rng(83)
    data = _check_graph(model, rng.uniform(-1, 1, (48, 6, 3)).astype(np.float32),
                        rng.uniform(-1, 1, (8, 6, 3)).astype(np.float32))
    assert _op_names(data).count("QUANTIZE") == 2  # int16 states -> int8 concat inputs


def test_int8_initial_state_computed_by_a_dense_layer():
    inputs = keras.Input((6, 3))
    init = keras.layers.Dense(5, activation="tanh")(keras.layers.Flatten()(inputs))
    out = keras.layers.GRU(5)(inputs, initial_state=[init])
    model = keras.Model(inputs, keras.layers.Dense(2)(out))
    randomize(model, seed=84)
    rng = np.random.default_rng(85)
    data = _check_graph(model, rng.uniform(-1, 1, (48, 6, 3)).astype(np.float32),
                        rng.uniform(-1, 1, (8, 6, 3)).astype(np.float32))
    assert "QUANTIZE" in _op_names(data)  # int8 -> the GRU's int16 state scale


def test_int8_graph_with_a_stateful_layer_says_what_to_do():
    from fusegen.frontend.keras_model import ModelError

    inputs = keras.Input((1, 3), batch_size=1)
    y, h = keras.layers.GRU(4, stateful=True, return_state=True)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Add()([y, h])))
    with pytest.raises(ModelError, match="stateful layers convert to int8 in chains"):
        convert_int8(model, np.random.default_rng(0).uniform(-1, 1, (40, 1, 3)).astype(np.float32))


def test_int8_encoder_decoder_through_the_cli(tmp_path, capsys):
    from fusegen import cli

    inputs = keras.Input((6, 3))
    _, h, c = keras.layers.LSTM(5, return_state=True)(inputs)
    decoded = keras.layers.GRU(5)(inputs, initial_state=[h])
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Concatenate()([decoded, c])))
    randomize(model, seed=86)
    model.save(tmp_path / "m.keras")
    rng = np.random.default_rng(87)
    np.save(tmp_path / "calib.npy", rng.uniform(-1, 1, (48, 6, 3)).astype(np.float32))
    np.save(tmp_path / "x.npy", rng.uniform(-1, 1, (6, 6, 3)).astype(np.float32))
    code = cli.main(["convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "q.tflite"),
                     "--quantize", "int8", "--calibration", str(tmp_path / "calib.npy"),
                     "--kernels", str(tmp_path / "k")])
    out = capsys.readouterr().out
    assert code == 0 and "FUSEGEN_LSTM" in out and "FUSEGEN_GRU" in out
    code = cli.main(["verify", str(tmp_path / "q.tflite"), "--keras", str(tmp_path / "m.keras"),
                     "--inputs", str(tmp_path / "x.npy")])
    assert code == 0 and "output steps" in capsys.readouterr().out


@pytest.mark.parametrize("make", [
    lambda: keras.layers.GRU(6, use_bias=False),
    lambda: keras.layers.LSTM(6, activation="relu", recurrent_activation="hard_sigmoid"),
    lambda: keras.layers.SimpleRNN(6, activation="relu", use_bias=False),
    lambda: keras.layers.LSTM(6, dropout=0.3, recurrent_dropout=0.2),  # training-only
    lambda: keras.layers.GRU(6, reset_after=False, activation="softsign"),
], ids=["gru_no_bias", "lstm_relu_hard_sigmoid", "simple_rnn_relu_no_bias", "lstm_dropout",
        "gru_reset_before_softsign"])
def test_int8_layer_options(make):
    model = keras.Sequential([keras.Input((8, 3)), make(), keras.layers.Dense(2)])
    randomize(model, seed=90)
    rng = np.random.default_rng(91)
    _check_model(model, rng.uniform(-1, 1, (48, 8, 3)).astype(np.float32),
                 rng.uniform(-1, 1, (8, 8, 3)).astype(np.float32))
