"""`fusegen convert --length-input`: a scalar int32 model input "length" feeds every fused op's
mask input as MASK_LENGTH (converter/length_input.py), float32 and int8, run on the host."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from fusegen.abi import MASK_LENGTH
from fusegen.commands.build import convert_keras
from fusegen.converter import tflite_file, validate
from fusegen.converter.length_input import add_length_input
from fusegen.errors import FileFormatError, UserError
from fusegen.host.file import HostFile

T, F, UNITS = 9, 3, 5
MAX_STEPS = 2.0  # mean |int8 - Keras| in output steps (test_int8_state.py, test_int8_cells.py)


def _model(seed: int, **kwargs) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((T, F)), keras.layers.GRU(UNITS, **kwargs),
                              keras.layers.Dense(2)])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32)
                       for w in model.get_weights()])  # non-zero biases too
    return model


def _keras_on_prefix(model: keras.Model, x: np.ndarray, length: int) -> np.ndarray:
    """Keras on the first `length` steps (the layers take any T eagerly)."""
    y = x[:, :max(length, 0)]
    for layer in model.layers:
        y = layer(y)
    return np.asarray(y)


def _ops(data: bytes) -> list[str]:
    model = tflite_file.read_model(data)
    return [tflite_file.op_name(model, op) for g in model.subgraphs for op in g.operators]


def test_float32_length_input_equals_keras_on_the_prefix():
    model = _model(1)
    converted = convert_keras(model, None, None, length_input=True)
    names = _ops(converted.data)
    assert sum(n.startswith("FUSEGEN_") for n in names) == 1 and "WHILE" not in names
    file = HostFile(converted.data, converted.ops)
    x = np.random.default_rng(2).normal(size=(3, T, F)).astype(np.float32)
    for length in (1, 4, T):
        got = file.run(x, np.full(3, length))
        np.testing.assert_allclose(got, _keras_on_prefix(model, x, length), rtol=0, atol=1e-5)
    # Clamped, as the kernel does: > T runs T steps, < 0 none (the initial zero state).
    np.testing.assert_array_equal(file.run(x, np.full(3, T + 5)), file.run(x, np.full(3, T)))
    np.testing.assert_allclose(file.run(x[:1], np.array([-3]))[0],
                               np.asarray(model.layers[-1](np.zeros((1, UNITS))))[0], atol=1e-6)


def test_masked_model_gets_the_length_in_place_of_its_mask():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((T,)), keras.layers.Embedding(7, F, mask_zero=True),
                              keras.layers.LSTM(UNITS), keras.layers.Dense(2)])
    converted = convert_keras(model, None, None, length_input=True)
    names = _ops(converted.data)
    assert "NOT_EQUAL" not in names and sum(n.startswith("FUSEGEN_") for n in names) == 1
    ids = np.random.default_rng(4).integers(1, 7, size=(2, T)).astype(np.float32)
    got = HostFile(converted.data, converted.ops).run(ids, np.array([6, 6]))
    np.testing.assert_allclose(got, _keras_on_prefix(model, ids, 6), rtol=0, atol=1e-5)


def test_int8_length_input_c_equals_twin_and_keras():
    model = _model(5, return_sequences=False)
    rng = np.random.default_rng(6)
    calibration = rng.normal(size=(64, T, F)).astype(np.float32)
    converted = convert_keras(model, None, None, calibration, length_input=True)
    names = _ops(converted.data)
    assert sum(n.startswith("FUSEGEN_") for n in names) == 1 and "WHILE" not in names
    file = tflite_file.read_model(converted.data)
    graph = file.subgraphs[0]
    x_t, y_t = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    (sx,), (zx,) = x_t.quantization.scale, x_t.quantization.zeroPoint
    (sy,), (zy,) = y_t.quantization.scale, y_t.quantization.zeroPoint
    x = rng.normal(size=(4, T, F)).astype(np.float32)
    x_q = np.clip(np.round(x / sx) + zx, -128, 127).astype(np.int8)
    lengths = np.array([2, 5, T, T + 3])
    c_run = HostFile(converted.data, converted.ops).run(x_q, lengths)
    assert np.array_equal(c_run, HostFile(converted.data, converted.ops, twin=True).run(x_q, lengths))
    ref = np.concatenate([_keras_on_prefix(model, x[k:k + 1], int(min(length, T)))
                          for k, length in enumerate(lengths)])
    got = (c_run.astype(np.float32) - zy) * sy
    assert float(np.abs(got - ref).mean()) / sy <= MAX_STEPS


def test_a_length_of_another_type_is_refused():
    model = _model(7)
    converted = convert_keras(model, None, None, length_input=True)
    file = validate.read_model(converted.data)
    graph = file.subgraphs[0]
    graph.tensors[graph.inputs[1]].type = tflite_file.schema.TensorType.FLOAT32
    op = next(op for op in graph.operators
              if tflite_file.op_name(file, op).startswith("FUSEGEN_"))
    assert tflite_file.decode_options(op.customOptions)["mask"] == MASK_LENGTH
    with pytest.raises(FileFormatError, match=r"mask input is FLOAT32\[\], expected INT32"):
        validate.fused_op(file, op, converted.ops[tflite_file.op_name(file, op)])


def test_a_file_without_fused_ops_is_refused():
    keras.utils.set_random_seed(8)
    plain = keras.Sequential([keras.Input((T, F)), keras.layers.Dense(2)])
    data = tf.lite.TFLiteConverter.from_keras_model(plain).convert()
    with pytest.raises(UserError, match="no fused recurrent op"):
        add_length_input(data)


@pytest.mark.parametrize("quantize", ["float32", "int8"])
def test_cli_convert_and_verify_with_lengths(tmp_path, capsys, quantize):
    from fusegen import cli
    from fusegen.commands.verify import keras_on_prefixes

    keras.utils.set_random_seed(9)
    inputs = keras.Input((T, F))  # a functional model: the reference runs its graph on prefixes
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.SimpleRNN(6)(inputs)))
    model.save(tmp_path / "m.keras")
    rng = np.random.default_rng(10)
    x = rng.uniform(-1, 1, (5, T, F)).astype(np.float32)
    lengths = np.array([1, 3, 5, 7, T])
    np.save(tmp_path / "calib.npy", rng.uniform(-1, 1, (40, T, F)).astype(np.float32))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "l.npy", lengths)
    np.save(tmp_path / "bad.npy", np.array([0, 3, 5, 7, T]))
    int8 = ["--quantize", "int8", "--calibration", str(tmp_path / "calib.npy")]
    out = str(tmp_path / "m.tflite")
    assert cli.main(["convert", str(tmp_path / "m.keras"), "-o", out, "--length-input",
                     *(int8 if quantize == "int8" else [])]) == 0
    verify = ["verify", out, "--keras", str(tmp_path / "m.keras"), "--inputs",
              str(tmp_path / "x.npy")]
    capsys.readouterr()
    assert cli.main([*verify, "--lengths", str(tmp_path / "l.npy")]) == 0
    assert "PASS" in capsys.readouterr().out
    # The reference really is the prefix: the full-length outputs are far from it.
    assert np.abs(keras_on_prefixes(model, x, lengths)[:4] - np.asarray(model(x))[:4]).max() > 0.05
    assert cli.main([*verify, "--lengths", str(tmp_path / "bad.npy")]) == 1
    err = capsys.readouterr().err
    assert "lengths must be in 1..9" in err and "Traceback" not in err


def test_lengths_for_a_file_without_a_length_input_is_refused(tmp_path, capsys):
    from fusegen import cli

    model = _model(11)
    model.save(tmp_path / "m.keras")
    convert_keras(model, tmp_path / "m.tflite", None)
    np.save(tmp_path / "x.npy", np.zeros((2, T, F), np.float32))
    np.save(tmp_path / "l.npy", np.array([2, 3]))
    assert cli.main(["verify", str(tmp_path / "m.tflite"), "--keras", str(tmp_path / "m.keras"),
                     "--inputs", str(tmp_path / "x.npy"), "--lengths",
                     str(tmp_path / "l.npy")]) == 1
    assert "has no length input" in capsys.readouterr().err
