"""verify's verdicts (fusegen/verdict.py): float32 against the layer in float64 beside Keras'
own error, int8 in output steps; one rule for the CLI and the API."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import fusegen
from fusegen import cli
from fusegen.converter import tflite_file
from fusegen.verdict import FloatBounds, Int8Bounds

T, I, U = 40, 4, 10


def test_the_float_rule_by_hand():
    b = FloatBounds(factor=4.0, rel=1e-5)
    assert b.bound(keras_err64=3e-6, magnitude=0.5) == pytest.approx(1.2e-5)  # 4 x 3e-6
    assert b.bound(keras_err64=1e-8, magnitude=0.5) == pytest.approx(1e-5)  # 1e-5 x max(1, .5)
    assert b.bound(keras_err64=1e-8, magnitude=30.0) == pytest.approx(3e-4)  # 1e-5 x 30
    assert Int8Bounds().failures(1.9, 15.0, 0.02) == []
    assert Int8Bounds().failures(2.1, 17.0, 0.03) == [
        "mean error 2.10 steps > --mean-steps 2.0", "max error 17.0 steps > --max-steps 16.0",
        "accuracy drop 0.0300 > --max-accuracy-drop 0.02"]


@pytest.fixture(scope="module")
def big_state_lstm():
    """A stock LSTM whose cell state integrates to |c| ~ 34 over 40 steps (forget and input
    gates open, candidates saturated), random non-zero weights otherwise."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((T, I)), keras.layers.LSTM(U, return_sequences=True)])
    lstm = model.layers[0]
    rng = np.random.default_rng(0)
    k = rng.uniform(-0.3, 0.3, (I, 4 * U))
    r = rng.uniform(-0.3, 0.3, (U, 4 * U))
    b = rng.uniform(-0.2, 0.2, 4 * U)
    b[U:2 * U] += 6.0  # forget gate ~1: c integrates
    b[:U] += 3.0  # input gate ~1
    b[2 * U:3 * U] += 1.5 * np.sign(rng.uniform(-1, 1, U))  # candidates near +-1
    lstm.set_weights([a.astype(np.float32) for a in (k, r, b)])
    x = rng.uniform(-1, 1, (6, T, I)).astype(np.float32)
    _, _, c = keras.layers.RNN(lstm.cell, return_state=True)(x)
    assert np.abs(np.asarray(c)).max() > 25
    return model, x, fusegen.convert(model)


def _with_weight_perturbed(data: bytes, delta: float, index: int = 3 * U * I + 1) -> bytes:
    """The fused op's first weight input (the input kernel, stored [4U, I]) with one element
    moved by `delta`: by default one of the output gate's, which no bias saturates."""
    model = tflite_file.read_model(data)
    g = model.subgraphs[0]
    op = next(o for o in g.operators if tflite_file.op_name(model, o).startswith("FUSEGEN_"))
    buffer = model.buffers[g.tensors[op.inputs[1]].buffer]
    w = np.frombuffer(bytes(bytearray(buffer.data)), np.float32).copy()
    w[index] += np.float32(delta)
    buffer.data = np.frombuffer(w.tobytes(), np.uint8)
    return tflite_file.write_model(model)


def test_a_large_state_lstm_passes_and_a_wrong_weight_fails(big_state_lstm):
    model, x, data = big_state_lstm
    report = fusegen.verify(data, model, inputs=x)
    row = report.layers[0]
    assert report.passed, report
    assert 0 < row.keras_err64 and 0 < row.err64 <= row.bound()  # both measured, not zero
    assert "Keras vs f64" in str(report) and str(report).splitlines()[-1].startswith("PASS")
    broken = fusegen.verify(_with_weight_perturbed(data, 1e-3), model, inputs=x)
    assert not broken.passed and broken.layers[0].err64 > 10 * broken.layers[0].bound()
    # --tolerance replaces the rule by a plain absolute bound against Keras
    assert fusegen.verify(data, model, inputs=x, tolerance=1e-12).verdict == "FAIL"


def test_cli_verify_fails_a_wrong_weight_in_one_line(big_state_lstm, tmp_path, capsys):
    model, x, data = big_state_lstm
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "bad.tflite").write_bytes(_with_weight_perturbed(data, 1e-3))
    args = ["verify", "--keras", str(tmp_path / "m.keras"), "--inputs", str(tmp_path / "x.npy")]
    code = cli.main([*args, str(tmp_path / "bad.tflite")])
    out, err = capsys.readouterr()
    assert code == 1 and out.splitlines()[-1].startswith("FAIL: error against float64")
    assert "Traceback" not in err
    (tmp_path / "good.tflite").write_bytes(data)
    assert cli.main([*args, str(tmp_path / "good.tflite")]) == 0
    assert cli.main([*args, str(tmp_path / "good.tflite"), "--factor", "0",
                     "--rel-tolerance", "1e-12"]) == 1  # the rule's flags reach the verdict


def test_cli_verify_fails_an_int8_file_with_a_wrong_weight(tmp_path, capsys):
    """`fusegen verify` on an int8 file, without labels, still fails a wrong file: the fused op's
    input matrix negated in the file is far past the output-step bounds (exit 1); the file as
    converted passes (compare judges by accuracy; verify keeps its step bounds)."""
    from cells_catalog import randomize

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((T, I)), keras.layers.GRU(U), keras.layers.Dense(3)])
    randomize(model, seed=5)
    x = np.random.default_rng(2).uniform(-1, 1, (16, T, I)).astype(np.float32)
    data = fusegen.convert(model, quantize="int8", calibration=x)
    tf_model = tflite_file.read_model(data)
    g = tf_model.subgraphs[0]
    op = next(o for o in g.operators if tflite_file.op_name(tf_model, o).startswith("FUSEGEN_"))
    buffer = tf_model.buffers[g.tensors[op.inputs[1]].buffer]
    w = np.frombuffer(bytes(bytearray(buffer.data)), np.int8)
    assert w.size == 3 * U * I and np.any(w != 0)  # GRU's input kernel, int8
    buffer.data = np.frombuffer((-np.maximum(w, -127)).astype(np.int8).tobytes(), np.uint8)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "good.tflite").write_bytes(data)
    (tmp_path / "bad.tflite").write_bytes(tflite_file.write_model(tf_model))
    args = ["verify", "--keras", str(tmp_path / "m.keras"), "--inputs", str(tmp_path / "x.npy")]
    capsys.readouterr()
    assert cli.main([*args, str(tmp_path / "good.tflite")]) == 0
    assert cli.main([*args, str(tmp_path / "bad.tflite")]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].startswith("FAIL: ") and "steps" in out.splitlines()[-1]
    assert "Traceback" not in err
