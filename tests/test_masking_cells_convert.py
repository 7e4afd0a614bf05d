"""Every catalog cell with a Keras mask, through a real conversion (issue 15's first acceptance
bullet): Masking and Embedding(mask_zero=True) -> RNN -> Dense, float32 and int8, inputs padded
at the front, at the end and in the middle (and one row not at all).

To keep this to a few conversions (the suite's time budget), each (mask kind, dtype) is ONE
model holding every cell:

* float32: parallel branches off the same masked input, one RNN per cell (the catalog's cells,
  the issue-14 op cells, the float-only ones, and the LSTM/GRU/SimpleRNN layers), each followed
  by its own Dense(2), concatenated. The file, run op by op on the host (fused ops through their
  C cores), equals Keras within verify's float tolerance, branch by branch; it is one subgraph,
  one CUSTOM op per RNN reading a BOOL mask, no WHILE.
* int8: full-int8 conversion honours masks in chains of layers (converter/int8/graph.py refuses
  them in branched models), so the int8 model stacks the same cells (return_sequences, the mask
  passing from layer to layer as Keras passes it) -> Dense. The file's C cores equal the
  pipeline's integer twin bit for bit; each layer's int8 output, fed Keras' own float input of
  that layer, is within verify's int8 bounds of Keras' (mean INT8_MEAN_STEPS, max INT8_MAX_STEPS
  output steps): a per-layer bound, as a 20-deep stack adds its layers' errors up.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from cells_catalog import CELLS, FLOAT_ONLY_CELLS, randomize
from cells_catalog_ops import OPS_CELLS, randomize_ops

from fusegen.cli import FLOAT_TOLERANCE
from fusegen.converter.lowering import ModelLowering
from fusegen.converter.model import convert
from fusegen.converter.tflite_file import op_name, read_model
from fusegen.converter.tflm_ops import select_for_tflm
from fusegen.host.file import HostFile
from fusegen.quantize.scales import dequantize_int8, quantize_int8
from fusegen.verdict import INT8_MAX_STEPS, INT8_MEAN_STEPS

T, FEATURES, VOCAB, EMBED = 8, 3, 11, 3


def _units(name: str) -> int:
    """Not multiples of 4: 5 for the op cells, 6 for the others (LSTMP outputs 4, HeadCell 3).
    A host C core depends on the cell's ops only (not its sizes, weights or T; an LSTM layer's
    is LSTMCell's), so in the suite these cores are the ones test_masking_core, test_cells_ops
    and test_int8_cells compile: this file adds lowering and conversion time, not compiles."""
    return 5 if name in OPS_CELLS else 6


ROWS = {"prefix": np.arange(T) >= 3, "suffix": np.arange(T) < 5,
        "middle": ~np.isin(np.arange(T), [2, 3]), "none": np.ones(T, bool)}

BUILTIN_LAYERS = {"LSTM": keras.layers.LSTM, "GRU": keras.layers.GRU,
                  "SimpleRNN": keras.layers.SimpleRNN}


def _recurrent(name: str, units: int, return_sequences: bool) -> keras.layers.Layer:
    if name in BUILTIN_LAYERS:
        return BUILTIN_LAYERS[name](units, return_sequences=return_sequences, name=name)
    cell = OPS_CELLS[name](units) if name in OPS_CELLS else {**CELLS, **FLOAT_ONLY_CELLS}[name](
        units)
    return keras.layers.RNN(cell, return_sequences=return_sequences, name=name)


def _randomize(layer: keras.layers.Layer, seed: int) -> None:
    (randomize_ops if layer.name in OPS_CELLS else randomize)(layer, seed)


INT8_NAMES = [*BUILTIN_LAYERS, *CELLS, *OPS_CELLS]
FLOAT_NAMES = [*INT8_NAMES, *FLOAT_ONLY_CELLS]


def _masked_input(kind: str) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    if kind == "masking":
        inputs = keras.Input((T, FEATURES))
        return inputs, keras.layers.Masking(0.0, name="mask")(inputs)
    inputs = keras.Input((T,))
    return inputs, keras.layers.Embedding(VOCAB, EMBED, mask_zero=True, name="mask")(inputs)


def _data(kind: str, n: int, seed: int) -> np.ndarray:
    """n inputs; row k padded as ROWS' (k mod 4)-th pattern (the padding value 0 in each)."""
    rng = np.random.default_rng(seed)
    if kind == "masking":
        x = rng.uniform(-1, 1, (n, T, FEATURES)).astype(np.float32)
    else:
        x = rng.integers(1, VOCAB, (n, T)).astype(np.float32)
    patterns = list(ROWS.values())
    for k in range(n):
        x[k, ~patterns[k % len(patterns)]] = 0
    return x


def _fused_ops(data: bytes, count: int):
    tflite = read_model(data)
    assert len(tflite.subgraphs) == 1
    graph = tflite.subgraphs[0]
    names = [op_name(tflite, op) for op in graph.operators]
    assert "WHILE" not in names, names
    fused = [op for op in graph.operators if op_name(tflite, op).startswith("FUSEGEN_")]
    assert len(fused) == count, names
    for op in fused:  # the mask is each op's last input, BOOL [1, T] or [1, T, F]
        mask = graph.tensors[op.inputs[-1]]
        assert mask.type == 6 and list(mask.shape[:2]) == [1, T]
    return names


@pytest.mark.parametrize("kind", ["masking", "embedding"])
def test_every_cell_masked_float32_file_equals_keras(kind):
    keras.utils.set_random_seed(1)
    inputs, masked = _masked_input(kind)
    heads = [keras.layers.Dense(2, name=f"head_{name}")(
        _recurrent(name, _units(name), False)(masked))
        for k, name in enumerate(FLOAT_NAMES)]
    model = keras.Model(inputs, keras.layers.Concatenate()(heads))
    for k, layer in enumerate(model.layers):
        _randomize(layer, seed=k)
    # fusegen.convert's float32 path (commands/build.py), its lowering kept: each cell is
    # traced once (tracing 21 cells is most of this test's time)
    lowering = ModelLowering()
    data = select_for_tflm(convert(model, lowering.lower_layer))
    _fused_ops(data, len(FLOAT_NAMES))
    x = _data(kind, 4, seed=2)
    # the suffix-padded row with its padding moved to the front, run in the same batch
    moved = np.roll(x[1:2], T - int(ROWS["suffix"].sum()), axis=1)
    assert not np.array_equal(moved, x[1:2])
    expected = np.asarray(model(np.concatenate([x, moved])))
    got = HostFile(data, lowering.ops).run(np.concatenate([x, moved]))
    for k, name in enumerate(FLOAT_NAMES):
        for row, padding in enumerate(ROWS):
            np.testing.assert_allclose(got[row, 2 * k:2 * k + 2], expected[row, 2 * k:2 * k + 2],
                                       rtol=0, atol=FLOAT_TOLERANCE, err_msg=f"{name} {padding}")
    # The mask is honoured: the suffix-padded row with its padding moved to the front gives the
    # same outputs, in Keras and in the file (a dropped mask would run the zeros as data).
    np.testing.assert_allclose(expected[-1], expected[1], rtol=0, atol=FLOAT_TOLERANCE)
    np.testing.assert_allclose(got[-1], got[1], rtol=0, atol=FLOAT_TOLERANCE)


@pytest.mark.parametrize("kind", ["masking", "embedding"])
def test_every_cell_masked_int8_file_equals_twin_and_each_layer_keras_within_bound(kind):
    from fusegen.converter.int8 import convert_int8
    from fusegen.converter.int8.chain import FusedPart

    keras.utils.set_random_seed(3)
    inputs, h = _masked_input(kind)
    recurrent = []
    for k, name in enumerate(INT8_NAMES):
        recurrent.append(_recurrent(name, _units(name), k < len(INT8_NAMES) - 1))
        h = recurrent[-1](h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense_out")(h))
    for k, layer in enumerate(model.layers):
        _randomize(layer, seed=20 + k)
    calibration, x = _data(kind, 48, seed=4), _data(kind, 8, seed=5)
    data, pipeline = convert_int8(model, calibration)
    names = _fused_ops(data, len(INT8_NAMES))
    assert "NOT_EQUAL" in names
    x_q = pipeline.quantize_input(x)
    got = HostFile(data, pipeline.ops).run(x_q)
    assert np.array_equal(got, pipeline.run_int8(x_q))
    # Each layer on Keras' float input of that layer, quantized as the file quantizes it, under
    # the file's mask, against Keras' output of that layer.
    keras_in = keras.Model(inputs, [model.get_layer("mask").output] +
                           [layer.output for layer in recurrent])
    floats = [np.asarray(t) for t in keras_in(x)]
    valid = np.any(x != 0, axis=-1) if kind == "masking" else x != 0
    parts = [p for p in pipeline.parts if isinstance(p, FusedPart)]
    assert [p.layer.name for p in parts] == INT8_NAMES
    failures = []
    for k, part in enumerate(parts):
        y_q = part.run(quantize_int8(floats[k], part.input_qparams), valid)
        step = part.output_qparams[0]
        err = np.abs(dequantize_int8(y_q, part.output_qparams) - floats[k + 1]) / step
        if err.mean() > INT8_MEAN_STEPS or err.max() > INT8_MAX_STEPS:
            failures.append(f"{part.layer.name}: mean {err.mean():.2f} max {err.max():.1f} steps")
    assert not failures, failures
