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


# Every catalog cell, unstacked, Masking and Embedding, float32 and int8, is in
# test_masking_cells_convert.py (one model per mask kind and dtype); these keep a stacked
# masked pair through fusegen.verify.
@pytest.mark.parametrize("source", ["masking", "embedding"])
@pytest.mark.parametrize("cell,stacked", [("peephole_lstm", True)])
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


def _padded_batch(n: int, rng) -> np.ndarray:
    """n padded float sequences: prefix, suffix and middle padding of 0-5 steps, in turn."""
    x = rng.uniform(-1, 1, (n, T, FEATURES)).astype(np.float32)
    for k in range(n):
        pad = int(rng.integers(0, 6))
        if k % 3 == 0:
            x[k, :pad] = 0
        elif k % 3 == 1:
            x[k, T - pad:] = 0
        else:
            x[k, 3:3 + pad] = 0
    return x


# every cell in int8, with each kind of mask: test_masking_cells_convert.py
@pytest.mark.parametrize("cell,stacked", [("lstm", True)])
def test_masked_model_int8_c_equals_twin_and_keras_within_bound(cell, stacked):
    """int8: Masking's mask is NOT_EQUAL on the int8 input (reduced in each op); the file's C
    cores equal the pipeline's integer twin bit for bit; the error against float Keras is
    within verify's int8 bounds (mean 2 steps, max 16)."""
    from fusegen.converter.int8 import convert_int8
    from fusegen.host.file import HostFile

    keras.utils.set_random_seed(3)
    inputs = keras.Input((T, FEATURES))
    h = keras.layers.Masking(0.0)(inputs)
    if stacked:
        h = keras.layers.GRU(6, return_sequences=True)(h)
    h = keras.layers.RNN(CELLS[cell](7))(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
    for k, layer in enumerate(model.layers):
        randomize(layer, seed=k)
    rng = np.random.default_rng(4)
    calibration, x = _padded_batch(48, rng), _padded_batch(24, rng)
    data, pipeline = convert_int8(model, calibration)
    tflite = read_model(data)
    graph = tflite.subgraphs[0]
    names = [op_name(tflite, op) for op in graph.operators]
    assert len(tflite.subgraphs) == 1 and "WHILE" not in names and "NOT_EQUAL" in names
    fused = [op for op in graph.operators if op_name(tflite, op).startswith("FUSEGEN_")]
    assert len(fused) == 1 + stacked
    assert all(graph.tensors[op.inputs[-1]].type == 6 for op in fused)  # the BOOL mask
    x_q = pipeline.quantize_input(x)
    got = HostFile(data, pipeline.ops).run(x_q)
    assert np.array_equal(got, pipeline.run_int8(x_q))
    step = pipeline.output_qparams[0]
    err = np.abs(pipeline.predict(x) - np.asarray(model(x)))
    assert err.mean() <= 2.0 * step and err.max() <= 16 * step, (err.mean() / step,
                                                                 err.max() / step)


def test_int8_embedding_mask_zero_keeps_int32_ids():
    """int8 Embedding(mask_zero=True) -> GRU -> Dense: the ids stay an int32 model input
    (GATHER on the int8 table), the mask is NOT_EQUAL(ids, 0); one CUSTOM op reads it; the C
    core equals the integer twin and the pipeline; the error against float Keras is within
    verify's int8 bounds (mean 2 steps, max 16)."""
    from fusegen.converter.int8 import convert_int8
    from fusegen.host.file import HostFile

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((T,)), keras.layers.Embedding(VOCAB, 4, mask_zero=True),
                              keras.layers.GRU(5), keras.layers.Dense(2)])
    for k, layer in enumerate(model.layers):
        randomize(layer, seed=k)
    rng = np.random.default_rng(5)
    calibration = np.concatenate([_padded_ids(rng) for _ in range(12)])
    x = np.concatenate([_padded_ids(rng) for _ in range(4)])
    data, pipeline = convert_int8(model, calibration)
    tflite = read_model(data)
    graph = tflite.subgraphs[0]
    names = [op_name(tflite, op) for op in graph.operators]
    assert len(tflite.subgraphs) == 1 and "WHILE" not in names
    assert "NOT_EQUAL" in names and "GATHER" in names
    assert sum(n.startswith("FUSEGEN_") for n in names) == 1
    assert graph.tensors[graph.inputs[0]].type == 2  # INT32 ids
    x_q = pipeline.quantize_input(x)
    got = HostFile(data, pipeline.ops).run(x_q)
    assert np.array_equal(got, HostFile(data, pipeline.ops, twin=True).run(x_q))
    assert np.array_equal(got, pipeline.run_int8(x_q))
    step = pipeline.output_qparams[0]
    err = np.abs(pipeline.predict(x) - np.asarray(model(x)))
    assert err.mean() <= 2.0 * step and err.max() <= 16 * step, (err.mean() / step,
                                                                 err.max() / step)
    report = fusegen.verify(data, model, inputs=x)
    assert report.passed, report


def test_int8_refuses_masks_it_cannot_honour():
    from fusegen.errors import UserError

    keras.utils.set_random_seed(0)
    inputs = keras.Input((T, FEATURES))
    h = keras.layers.GRU(4, return_sequences=True)(inputs)
    h = keras.layers.Masking(0.0, name="late")(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GRU(5)(h)))
    with pytest.raises(UserError, match=r"layer late.*float32"):
        fusegen.convert(model, quantize="int8", calibration=_padded_floats(np.random.default_rng(0)))


class SortedMask(keras.layers.Layer):
    """Passes x through with a mask computed by sorting (TFLite TOPK_V2, which TFLM lacks): a
    step is valid when its largest feature is positive."""

    def call(self, x):
        return x

    def compute_mask(self, x, mask=None):
        return keras.ops.sort(x, axis=-1)[..., -1] > 0


def test_a_mask_computed_by_an_op_tflm_lacks_is_refused_naming_the_layer(tmp_path):
    """The converted file would load on the host but not in TFLM (no TOPK_V2 kernel): convert
    refuses it in one line naming the recurrent layer and what to do, writes nothing, and the
    same model converts with --length-input (the file takes each sequence's length instead)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((T, FEATURES))
    h = SortedMask()(inputs)
    h = keras.layers.GRU(4, name="gated")(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    out, kernels = tmp_path / "m.tflite", tmp_path / "kernels"
    with pytest.raises(fusegen.UserError, match=r"^layer gated: its mask is computed with "
                       r"[^\n]*TOPK_V2[^\n]*--length-input[^\n]*$"):
        fusegen.convert(model, out=out, kernels=kernels)
    assert not out.exists() and not kernels.exists()
    data = fusegen.convert(model, length_input=True)
    names = {op_name(read_model(data), op) for op in read_model(data).subgraphs[0].operators}
    assert "TOPK_V2" not in names and "FUSEGEN_GRU" in names
