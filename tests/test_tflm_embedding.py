"""Embedding(mask_zero=True) models load and run in TFLM (issue 15).

Keras' Embedding wraps negative ids, `where(ids < 0, ids + V, ids)`, which TF converts to LESS,
ADD and SELECT on int32; TFLM registers SELECT_V2 only, and for float/int8/int16 data only.
fusegen rewrites it after conversion (converter/tflm_ops.py). Without a TFLM build only the
rewrite's own tests run: the rewritten file computes what the original computes (negative ids
included) and has no SELECT. With one (tests/tflm_env.py), the float32 and int8 files of a
random Embedding -> GRU -> Dense model and of examples/masked_text.py's trained model run through
tflite::MicroInterpreter: float32 within the float tolerance of Keras, int8 equal to the host
runner bit for bit, and the example's accuracy in TFLM equal to Keras'.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from cells_catalog import randomize
from tflm_env import TFLM_FLAGS, TFLM_INCLUDE, TFLM_LIB, needs_tflm

import fusegen
from fusegen.cli import FLOAT_TOLERANCE
from fusegen.converter import tflite_file
from fusegen.converter.lowering import ModelLowering
from fusegen.converter.model import convert
from fusegen.converter.tflm_ops import select_for_tflm
from fusegen.host.file import HostFile

T, VOCAB = 9, 13


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((T,)), keras.layers.Embedding(VOCAB, 4, mask_zero=True),
                              keras.layers.GRU(7), keras.layers.Dense(3)])
    for k, layer in enumerate(model.layers):
        randomize(layer, seed=k)
    return model


def _ids(n: int, seed: int, low: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(low, VOCAB, (n, T)).astype(np.float32)
    x[0::3, :3] = 0  # prefix padding
    x[1::3, 6:] = 0  # suffix padding
    x[2::3, 3:5] = 0  # in the middle
    return x


def test_select_rewrite_keeps_the_results_and_leaves_no_select():
    model = _model()
    lowering = ModelLowering()
    original = convert(model, lowering.lower_layer)
    assert "SELECT" in tflite_file.summary(original).op_names()  # what TF writes
    rewritten = select_for_tflm(original)
    names = tflite_file.summary(rewritten).op_names()
    assert "SELECT" not in names and "SELECT_V2" not in names, names
    assert names.count("FUSEGEN_GRU") == 1 and "GATHER" in names
    x = _ids(6, seed=1, low=-VOCAB + 1)  # negative ids too: Keras wraps them, so must the file
    assert (x < 0).any()
    got = HostFile(rewritten, lowering.ops).run(x)
    np.testing.assert_array_equal(got, HostFile(original, lowering.ops).run(x))
    np.testing.assert_allclose(got, np.asarray(model(x)), rtol=0, atol=FLOAT_TOLERANCE)
    assert select_for_tflm(rewritten) == rewritten  # nothing left to do
    # fusegen.convert applies it, float32 and int8
    assert "SELECT" not in tflite_file.summary(fusegen.convert(model)).op_names()
    int8 = fusegen.convert(model, quantize="int8", calibration=_ids(24, seed=2))
    assert "SELECT" not in tflite_file.summary(int8).op_names()


def test_select_v2_for_float_selects_of_one_shape():
    """A float tf.where outside the fused ops: SELECT becomes SELECT_V2, same outputs."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((T, 3))
    h = keras.layers.GRU(5, return_sequences=True)(inputs)
    h = keras.layers.Lambda(lambda t: keras.ops.where(t > 0, t, 0.5 * t))(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
    lowering = ModelLowering()
    original = convert(model, lowering.lower_layer)
    if "SELECT" not in tflite_file.summary(original).op_names():
        pytest.skip("this TF writes no SELECT for tf.where")
    rewritten = select_for_tflm(original)
    names = tflite_file.summary(rewritten).op_names()
    assert "SELECT" not in names and "SELECT_V2" in names
    x = np.random.default_rng(0).uniform(-1, 1, (3, T, 3)).astype(np.float32)
    np.testing.assert_array_equal(HostFile(rewritten, lowering.ops).run(x),
                                  HostFile(original, lowering.ops).run(x))


def _tflm(data: bytes, kernels: Path, x: np.ndarray) -> np.ndarray:
    from fusegen.host.tflm import run_tflm

    return run_tflm(data, kernels, x, TFLM_INCLUDE, TFLM_LIB, TFLM_FLAGS)


def _float_and_int8(model: keras.Model, calibration: np.ndarray, tmp_path: Path):
    """(float32 file, its kernels), (int8 file, its kernels, its pipeline), as fusegen.convert
    writes them."""
    from fusegen.converter.int8 import convert_int8

    f32, s8 = tmp_path / "f32", tmp_path / "s8"
    data = fusegen.convert(model, kernels=f32)
    data8 = fusegen.convert(model, quantize="int8", calibration=calibration, kernels=s8)
    _, pipeline = convert_int8(model, calibration)  # the twin of the same conversion
    return (data, f32), (data8, s8, pipeline)


@needs_tflm
def test_embedding_models_run_in_tflm(tmp_path):
    model = _model()
    x = _ids(6, seed=3)
    (data, f32), (data8, s8, pipeline) = _float_and_int8(model, _ids(24, seed=2), tmp_path)
    np.testing.assert_allclose(_tflm(data, f32, x), np.asarray(model(x)), rtol=0,
                               atol=FLOAT_TOLERANCE)
    x_q = pipeline.quantize_input(x)
    assert x_q.dtype == np.int32
    np.testing.assert_array_equal(_tflm(data8, s8, x_q), HostFile(data8, pipeline.ops).run(x_q))


@needs_tflm
def test_masked_text_example_runs_in_tflm(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    import masked_text

    x, y = masked_text.make_data(600, seed=0)  # as tests/test_example_masked_text.py
    x_test, y_test = masked_text.make_data(120, seed=1)
    model = masked_text.make_model()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    (data, f32), (data8, s8, pipeline) = _float_and_int8(model, x, tmp_path)
    expected = np.asarray(model(x_test))
    got = _tflm(data, f32, x_test)
    np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT_TOLERANCE)
    x_q = pipeline.quantize_input(x_test)
    got8 = _tflm(data8, s8, x_q)
    np.testing.assert_array_equal(got8, HostFile(data8, pipeline.ops).run(x_q))
    keras_acc = np.mean(expected.argmax(-1) == y_test)
    assert keras_acc > 0.6  # it learned something
    assert np.mean(got.argmax(-1) == y_test) == keras_acc
    assert np.mean(got8.argmax(-1) == y_test) == keras_acc
