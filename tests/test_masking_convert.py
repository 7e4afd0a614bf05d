"""Masked models through `fusegen convert`: Masking and Embedding(mask_zero=True) -> RNN -> Dense.

Inputs are padded at the front, at the end and in the middle (and not at all). The float32 file,
run op by op on the host (fused ops through their C cores, under the mask the file computes
with builtin NOT_EQUAL), equals Keras within verify's float tolerance; verify's per-layer check
passes; the file is one subgraph, one CUSTOM op per recurrent layer, no WHILE, and each fused op
reads the mask as its last input.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from cells_catalog import CELLS, randomize

import fusegen
from fusegen.cli import FLOAT_TOLERANCE
from fusegen.commands.verify import run_float_file
from fusegen.converter.tflite_file import op_name, read_model

T, FEATURES, VOCAB = 10, 3, 13


def _padded_floats(rng) -> np.ndarray:
    x = rng.uniform(-1, 1, (4, T, FEATURES)).astype(np.float32)
    x[0, :4] = 0.0  # prefix
    x[1, 6:] = 0.0  # suffix
    x[2, 3:5] = 0.0  # middle
    return x


def _padded_ids(rng) -> np.ndarray:
    x = rng.integers(1, VOCAB, (4, T)).astype(np.float32)
    x[0, :4] = 0
    x[1, 6:] = 0
    x[2, 3:5] = 0
    return x


def _model(source: str, cell: str, stacked: bool) -> tuple[keras.Model, np.ndarray]:
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(2)
    if source == "masking":
        inputs = keras.Input((T, FEATURES))
        h = keras.layers.Masking(0.0)(inputs)
        x = _padded_floats(rng)
    else:
        inputs = keras.Input((T,))
        h = keras.layers.Embedding(VOCAB, 4, mask_zero=True)(inputs)
        x = _padded_ids(rng)
    if stacked:
        h = keras.layers.GRU(6, return_sequences=True)(h)
    h = keras.layers.RNN(CELLS[cell](7))(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
    for k, layer in enumerate(model.layers):
        randomize(layer, seed=k)
    return model, x


@pytest.mark.parametrize("source", ["masking", "embedding"])
@pytest.mark.parametrize("cell,stacked", [("lstm", False), ("gru", True), ("simple_rnn", False),
                                          ("minimal_gated", False), ("peephole_lstm", True)])
def test_masked_model_converts_and_matches_keras(source, cell, stacked):
    model, x = _model(source, cell, stacked)
    data = fusegen.convert(model)
    tflite = read_model(data)
    assert len(tflite.subgraphs) == 1
    graph = tflite.subgraphs[0]
    names = [op_name(tflite, op) for op in graph.operators]
    fused = [op for op in graph.operators if op_name(tflite, op).startswith("FUSEGEN_")]
    assert len(fused) == 1 + stacked and "WHILE" not in names
    for op in fused:  # the mask is each op's last input, bool [1, T] or [1, T, F]
        mask = graph.tensors[op.inputs[-1]]
        assert mask.type == 6 and list(mask.shape[:2]) == [1, T]  # BOOL
    expected = np.asarray(model(x))
    got = run_float_file(data, model, x)
    np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT_TOLERANCE)
    report = fusegen.verify(data, model, inputs=x)
    assert report.passed, report
    # the mask is honoured: the suffix-padded sample with its padding moved to the front gives
    # the same output (a converter that dropped the mask would run the zeros as data)
    moved = x[1:2].copy()
    moved[0] = np.roll(x[1], T - 6, axis=0)
    np.testing.assert_allclose(run_float_file(data, model, moved)[0], got[1], rtol=0,
                               atol=FLOAT_TOLERANCE)
    assert np.abs(np.asarray(model(moved))[0] - got[1]).max() < FLOAT_TOLERANCE
