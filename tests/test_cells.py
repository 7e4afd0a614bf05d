"""Every cell x size x return_sequences: the numpy twin and the compiled C core against Keras.

Tolerance: 1e-5 absolute in float32 (fusegen.cli.FLOAT_TOLERANCE; the C core sums in another
order than TF and uses libm, measured ~1e-7).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from cells_catalog import CELLS, FLOAT_ONLY_CELLS, SIZES, random_layer, randomize

from fusegen.cli import FLOAT_TOLERANCE
from fusegen.host.core import HostCore
from fusegen.lower import cell_factory, lower_cell
from fusegen.reference import float_interp


def _lower(layer, input_size):
    return lower_cell(cell_factory(layer.cell), layer.cell, input_size)


@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"I{s[0]}-U{s[1]}-T{s[2]}")
@pytest.mark.parametrize("cell", sorted(CELLS) + sorted(FLOAT_ONLY_CELLS))
def test_twin_and_c_core_match_keras(cell, size, return_sequences):
    input_size, units, timesteps = size
    layer, x = random_layer(cell, input_size, units, timesteps, return_sequences, seed=units)
    expected = np.asarray(layer(x))
    lowered = _lower(layer, input_size)
    core = HostCore(lowered.bound, lowered.op_name)
    for sample in range(len(x)):
        twin, _ = float_interp.run(lowered.bound, x[sample], return_sequences=return_sequences)
        got, _ = core.run(x[sample], return_sequences=return_sequences)
        np.testing.assert_allclose(twin, expected[sample], rtol=0, atol=FLOAT_TOLERANCE)
        np.testing.assert_allclose(got, expected[sample], rtol=0, atol=FLOAT_TOLERANCE)
        assert np.abs(got).max() > 1e-3  # a silent all-zero output would pass a loose check


@pytest.mark.parametrize("cell", ["lstm", "gru", "minimal_gated", "exotic"])
def test_go_backwards_matches_keras(cell):
    layer, x = random_layer(cell, 4, 6, 9, return_sequences=True, go_backwards=True, seed=3)
    expected = np.asarray(layer(x))
    lowered = _lower(layer, 4)
    got, _ = HostCore(lowered.bound, lowered.op_name).run(x[0], True, go_backwards=True)
    np.testing.assert_allclose(got, expected[0], rtol=0, atol=FLOAT_TOLERANCE)


@pytest.mark.parametrize("cell", ["lstm", "peephole_lstm"])
def test_final_states_match_keras(cell):
    layer, x = random_layer(cell, 5, 7, 6, seed=4)
    _, *states = keras.layers.RNN(layer.cell, return_state=True)(x)  # same cell, same weights
    lowered = _lower(layer, 5)
    _, got = HostCore(lowered.bound, lowered.op_name).run(x[0])
    np.testing.assert_allclose(got, np.concatenate([np.asarray(s)[0] for s in states]),
                               rtol=0, atol=FLOAT_TOLERANCE)


@pytest.mark.parametrize("cell", ["lstm", "exotic"])
def test_input_projection_batch_size_does_not_change_results(cell):
    layer, x = random_layer(cell, 6, 9, 11, return_sequences=True, seed=5)
    lowered = _lower(layer, 6)
    core = HostCore(lowered.bound, lowered.op_name)
    outs = [core.run(x[0], True, max_chunk=chunk)[0] for chunk in (1, 3, 4, 11, 64)]
    for out in outs[1:]:
        assert np.array_equal(out, outs[0])  # same arithmetic in the same order, bit for bit


def test_plan_rejects_bad_sizes():
    layer, _ = random_layer("gru", 4, 6, 5)
    lowered = _lower(layer, 4)
    core = HostCore(lowered.bound, lowered.op_name)
    with pytest.raises(ValueError, match="at least 1"):
        core.plan(timesteps=0)
    with pytest.raises(ValueError, match="at least 1"):
        core.plan(timesteps=5, max_chunk=0)


DROPOUT_CELLS = {
    "lstm": lambda u: keras.layers.LSTMCell(u, dropout=0.5, recurrent_dropout=0.3),
    "gru": lambda u: keras.layers.GRUCell(u, dropout=0.4, recurrent_dropout=0.2),
    "simple_rnn": lambda u: keras.layers.SimpleRNNCell(u, dropout=0.5),
}


@pytest.mark.parametrize("cell", sorted(DROPOUT_CELLS))
def test_dropout_is_training_only(cell):
    """A cell built with dropout computes, at inference, what the same cell without it does.
    (Keras traces such a cell with per-gate matmuls, so its kernel may differ in form.)"""
    layer = keras.layers.RNN(DROPOUT_CELLS[cell](6), return_sequences=True)
    plain = keras.layers.RNN(type(layer.cell)(6), return_sequences=True)
    x = np.random.default_rng(10).uniform(-1, 1, (1, 8, 4)).astype(np.float32)
    layer(x), plain(x)
    randomize(layer, seed=11)
    plain.set_weights(layer.get_weights())
    expected = np.asarray(plain(x))[0]
    lowered = _lower(layer, 4)
    got, _ = HostCore(lowered.bound, lowered.op_name).run(x[0], True)
    np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT_TOLERANCE)


OPTION_CELLS = {
    "lstm_no_bias": lambda u: keras.layers.LSTMCell(u, use_bias=False),
    "gru_relu_hard_sigmoid": lambda u: keras.layers.GRUCell(
        u, activation="relu", recurrent_activation="hard_sigmoid"),
    "gru_no_bias_reset_before": lambda u: keras.layers.GRUCell(u, use_bias=False,
                                                               reset_after=False),
    "simple_rnn_relu": lambda u: keras.layers.SimpleRNNCell(u, activation="relu"),
    "lstm_silu_sigmoid": lambda u: keras.layers.LSTMCell(u, activation="silu",
                                                         recurrent_activation="sigmoid"),
}


@pytest.mark.parametrize("cell", sorted(OPTION_CELLS))
def test_builtin_cell_options_match_keras(cell):
    layer = keras.layers.RNN(OPTION_CELLS[cell](7), return_sequences=True)
    x = np.random.default_rng(8).uniform(-1, 1, (1, 9, 5)).astype(np.float32)
    layer(x)
    randomize(layer, seed=9)
    expected = np.asarray(layer(x))[0]
    lowered = _lower(layer, 5)
    got, _ = HostCore(lowered.bound, lowered.op_name).run(x[0], True)
    np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT_TOLERANCE)
    default = {"lstm": "FUSEGEN_LSTM", "gru": "FUSEGEN_GRU", "simple": "FUSEGEN_SIMPLE_RNN"}
    assert lowered.op_name != default[cell.split("_")[0]]  # other math, another kernel
