"""Variable-length data in `verify` and `compare` (issue 15, item 4): the file forms of
fusegen/sequences.py, the padding a masked model gets, compare's padded, masked classifier
deployed and timed at T and at the mean length, and malformed data failing with one line."""

from __future__ import annotations

import os
import shutil

import keras
import numpy as np
import pytest

from fusegen import cli
from fusegen.sequences import Sequences, from_arrays, is_object_npy, read_array

T, F = 7, 3
MASK = -3.0


def _ragged(seed: int, n: int, lengths=(2, T), features: int = F, signal: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    seqs = np.empty(n, object)
    for k in range(n):
        s = rng.uniform(-1, 1, (int(rng.integers(lengths[0], lengths[1] + 1)), features))
        if signal:
            s[:, 0] += 2 * y[k] - 1  # the class is in the first feature
        seqs[k] = s.astype(np.float32)
    return seqs, y


def _padded(seqs: np.ndarray, timesteps: int, fill: float = 9.0):
    x = np.full((len(seqs), timesteps, seqs[0].shape[1]), fill, np.float32)
    for k, s in enumerate(seqs):
        x[k, :len(s)] = s
    return x, np.array([len(s) for s in seqs])


def _one_line_failure(argv: list[str], capsys, *needles: str) -> None:
    capsys.readouterr()
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for needle in needles:
        assert needle in err[0], err[0]


def test_ragged_and_padded_forms_read_the_same(tmp_path):
    seqs, _ = _ragged(1, 5)
    np.save(tmp_path / "r.npy", seqs, allow_pickle=True)
    x, lengths = _padded(seqs, T)
    np.savez(tmp_path / "p.npz", x=x, lengths=lengths)
    assert is_object_npy(tmp_path / "r.npy")
    a = from_arrays(read_array(tmp_path / "r.npy", "x"), None, "r")
    b = from_arrays(read_array(tmp_path / "p.npz", "x", member="x"),
                    read_array(tmp_path / "p.npz", "x", member="lengths"), "p")
    np.testing.assert_array_equal(a.lengths, lengths)
    np.testing.assert_array_equal(b.lengths, lengths)
    np.testing.assert_array_equal(a.padded(T, MASK), b.padded(T, MASK))
    padded = a.padded(T, MASK)
    for k, s in enumerate(seqs):  # real steps first, then the padding value
        np.testing.assert_array_equal(padded[k, :len(s)], s)
        assert np.all(padded[k, len(s):] == MASK)
    cycled = Sequences(padded, a.lengths).cycled(5)  # real steps repeated, for timing
    np.testing.assert_array_equal(cycled[0, :len(seqs[0])], seqs[0][:5])


def test_object_arrays_are_read_without_running_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    bad = np.empty(1, object)
    bad[0] = Payload()
    np.save(tmp_path / "evil.npy", bad, allow_pickle=True)
    with pytest.raises(Exception, match="not a numpy array"):
        read_array(tmp_path / "evil.npy", "--inputs")
    assert not (tmp_path / "ran").exists()


@pytest.fixture(scope="module")
def masked_files(tmp_path_factory):
    """Masking(MASK) -> GRU -> Dense, converted to float32 and int8; and the same model with no
    mask (converted to float32)."""
    from cells_catalog import randomize

    from fusegen.commands.build import convert_model

    d = tmp_path_factory.mktemp("masked")
    model = keras.Sequential([keras.Input((T, F)), keras.layers.Masking(MASK),
                              keras.layers.GRU(5), keras.layers.Dense(2)])
    randomize(model, seed=3)
    model.save(d / "m.keras")
    seqs, _ = _ragged(4, 24)
    calibration = _padded(seqs, T, MASK)[0]
    np.save(d / "cal.npy", calibration)
    convert_model(d / "m.keras", [], d / "f.tflite", d / "kf")
    convert_model(d / "m.keras", [], d / "q.tflite", d / "kq", d / "cal.npy")
    plain = keras.Sequential([keras.Input((T, F)), keras.layers.GRU(5), keras.layers.Dense(2)])
    randomize(plain, seed=3)
    plain.save(d / "plain.keras")
    convert_model(d / "plain.keras", [], d / "plain.tflite", d / "kp")
    return d, model


@pytest.mark.parametrize("tflite", ["f.tflite", "q.tflite"])
def test_verify_takes_sequences_of_different_lengths(masked_files, tmp_path, capsys, tflite):
    from fusegen.commands.verify import load_inputs

    d, model = masked_files
    seqs, _ = _ragged(5, 12)
    np.save(tmp_path / "r.npy", seqs, allow_pickle=True)
    x, lengths = _padded(seqs, T, fill=0.5)  # whatever the padding holds: --lengths says
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "l.npy", lengths)
    ragged_x = load_inputs(tmp_path / "r.npy", model)
    np.testing.assert_array_equal(ragged_x, _padded(seqs, T, MASK)[0])  # the model's padding
    np.testing.assert_array_equal(load_inputs(tmp_path / "x.npy", model, tmp_path / "l.npy"),
                                  ragged_x)
    verify = ["verify", str(d / tflite), "--keras", str(d / "m.keras"), "--inputs"]
    for extra in ([str(tmp_path / "r.npy")], [str(tmp_path / "x.npy"), "--lengths",
                                             str(tmp_path / "l.npy")]):
        capsys.readouterr()
        assert cli.main([*verify, *extra]) == 0
        assert "PASS" in capsys.readouterr().out


def test_malformed_sequences_fail_with_one_line(masked_files, tmp_path, capsys):
    d, _ = masked_files
    verify = ["verify", str(d / "f.tflite"), "--keras", str(d / "m.keras"), "--inputs"]
    mixed = np.empty(2, object)
    mixed[:] = [np.zeros((3, F), np.float32), np.zeros((4, F + 1), np.float32)]
    np.save(tmp_path / "mixed.npy", mixed, allow_pickle=True)
    _one_line_failure([*verify, str(tmp_path / "mixed.npy")], capsys, "features")
    long, _ = _ragged(6, 3, lengths=(T + 1, T + 2))
    np.save(tmp_path / "long.npy", long, allow_pickle=True)
    _one_line_failure([*verify, str(tmp_path / "long.npy")], capsys, f"more than T={T}")
    x, lengths = _padded(_ragged(7, 3)[0], T)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "over.npy", lengths + T)
    _one_line_failure([*verify, str(tmp_path / "x.npy"), "--lengths", str(tmp_path / "over.npy")],
                      capsys, f"lengths must be in 1..{T}")
    np.save(tmp_path / "flat.npy", x[:, 0])
    np.save(tmp_path / "l.npy", lengths)
    _one_line_failure([*verify, str(tmp_path / "flat.npy"), "--lengths", str(tmp_path / "l.npy")],
                      capsys, "expected numbers [N, T, F]")
    np.save(tmp_path / "r.npy", _ragged(8, 3)[0], allow_pickle=True)
    _one_line_failure([*verify, str(tmp_path / "r.npy"), "--lengths", str(tmp_path / "l.npy")],
                      capsys, "carries its own lengths")
    # A model with no mask and no length input cannot honour the padding.
    _one_line_failure(["verify", str(d / "plain.tflite"), "--keras", str(d / "plain.keras"),
                       "--inputs", str(tmp_path / "r.npy")], capsys, "no Keras mask")
    # A Keras model without a fixed T (Input((None, F))): nothing to pad the sequences to.
    free = keras.Sequential([keras.Input((None, F)), keras.layers.Masking(MASK),
                             keras.layers.GRU(5), keras.layers.Dense(2)])
    free.save(tmp_path / "free.keras")
    _one_line_failure(["verify", str(d / "f.tflite"), "--keras", str(tmp_path / "free.keras"),
                       "--inputs", str(tmp_path / "r.npy")], capsys, "no fixed timesteps")


def _compare_files(tmp_path):
    train, y = _ragged(10, 40, lengths=(2, 9), signal=True)
    test, y_test = _ragged(11, 12, lengths=(2, 9), signal=True)
    np.savez(tmp_path / "train.npz", x=train, y=y)
    np.savez(tmp_path / "test.npz", x=test, y=y_test)
    x, lengths = _padded(test, 9)
    np.savez(tmp_path / "test_padded.npz", x=x, y=y_test, lengths=lengths)
    return train, test


def test_compare_pads_variable_length_data_with_a_value_below_every_real_one(tmp_path):
    from fusegen.compare.datasets import from_npz
    from fusegen.compare.run import calibration_samples, measure_inputs

    train, test = _compare_files(tmp_path)
    data = from_npz(tmp_path / "train.npz", tmp_path / "test.npz")
    again = from_npz(tmp_path / "train.npz", tmp_path / "test_padded.npz")
    assert data.digest() == again.digest()  # object array or padded + lengths: the same data
    assert data.variable and data.timesteps == max(len(s) for s in (*train, *test))
    reals = [(x, n) for split in ("train", "val", "test")
             for x, n in zip(getattr(data, f"x_{split}"), getattr(data, f"lengths_{split}"))]
    assert sum(len(x) for x in (data.x_train, data.x_val)) == len(train)
    low = min(float(x[:n].min()) for x, n in reals)
    assert data.mask_value <= low - 1
    for x, n in reals:
        assert np.all(x[n:] == data.mask_value)
        assert not np.any(np.all(x[:n] == data.mask_value, axis=-1))
    assert data.mean_length == round(np.mean([len(s) for s in test]))
    full, at_mean = measure_inputs(data)
    assert not np.any(full == data.mask_value)  # every one of the T steps real
    assert np.all(at_mean[:, data.mean_length:] == data.mask_value)
    assert not np.any(at_mean[:, :data.mean_length] == data.mask_value)
    assert np.any(calibration_samples(data) == data.mask_value)


def test_compare_refuses_malformed_variable_length_files(tmp_path, capsys):
    _compare_files(tmp_path)
    x, lengths = _padded(_ragged(12, 4)[0], T)
    np.savez(tmp_path / "over.npz", x=x, y=np.arange(4), lengths=lengths + T)
    np.savez(tmp_path / "flat.npz", x=x[:, 0], y=np.arange(4), lengths=lengths)
    np.savez(tmp_path / "features.npz", x=_ragged(13, 4, features=F + 2)[0], y=np.arange(4))
    compare = ["compare", "--cells", "gru", "-o", str(tmp_path / "out"), "--train",
               str(tmp_path / "train.npz"), "--test"]
    _one_line_failure([*compare, str(tmp_path / "over.npz")], capsys, "lengths must be in 1..")
    _one_line_failure([*compare, str(tmp_path / "flat.npz")], capsys, "[N, T, F]")
    _one_line_failure([*compare, str(tmp_path / "features.npz")], capsys, "same F")


_QEMU = shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")


def test_compare_runs_given_masked_models_on_variable_length_data(tmp_path, capsys):
    """compare --models with sequences of different lengths: a model starting with Masking(v)
    gets the data padded with its own v after each sequence's real steps (what its Keras
    accuracy is recomputed on here); a model without a mask, or whose v a real step takes, is
    refused in one line saying what to do."""
    import csv

    from cells_catalog import randomize

    train, test = _compare_files(tmp_path)
    timesteps = max(len(s) for s in (*train, *test))
    y_test = np.load(tmp_path / "test.npz", allow_pickle=True)["y"]

    def model(*first):
        m = keras.Sequential([keras.Input((timesteps, F)), *first, keras.layers.GRU(4),
                              keras.layers.Dense(2, activation="softmax")])
        randomize(m, seed=7)
        return m

    masked = model(keras.layers.Masking(0.0))
    masked.save(tmp_path / "masked.keras")
    model().save(tmp_path / "plain.keras")
    compare = ["compare", "--train", str(tmp_path / "train.npz"), "--test",
               str(tmp_path / "test.npz"), "--no-standardize", "--quantize", "float32",
               "--target", "host", "-o", str(tmp_path / "out"), "--models"]
    capsys.readouterr()
    assert cli.main([*compare, str(tmp_path / "masked.keras")]) == 0, capsys.readouterr()
    with (tmp_path / "out" / "summary.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    by_hand = _padded(test, timesteps, fill=0.0)[0]  # the model's own padding
    expected = float(np.mean(np.argmax(masked(by_hand), -1) == y_test))
    assert row["error"] == "" and float(row["keras_acc"]) == pytest.approx(expected), row
    assert float(row["fused_acc"]) == pytest.approx(expected)
    other = np.asarray(masked(_padded(test, timesteps, fill=-7.0)[0]))  # padding not masked
    assert np.abs(other - np.asarray(masked(by_hand))).max() > 1e-3
    _one_line_failure([*compare, str(tmp_path / "plain.keras")], capsys,
                      "no Masking layer at its input", "starts with Masking(mask_value)")
    bad = np.empty(len(test), object)
    for k, s in enumerate(test):
        bad[k] = s
    bad[0] = np.concatenate([test[0], np.zeros((1, F), np.float32)])[-timesteps:]
    np.savez(tmp_path / "zero_step.npz", x=bad, y=y_test)
    _one_line_failure([*compare[:4], str(tmp_path / "zero_step.npz"), *compare[5:],
                       str(tmp_path / "masked.keras")], capsys,
                      "a real step of the test data is all 0")


def test_compare_says_the_unrolled_baseline_ignores_the_mask(tmp_path):
    """The stock converter drops Masking's mask when it unrolls: on variable-length data the
    unroll=True file's outputs differ from Keras far past verify's float rule, and the report
    says so (unroll_error, a note, no point in size.png) instead of showing a baseline; the
    difference recomputed here from the file."""
    import csv

    import tensorflow as tf

    from fusegen.compare.datasets import from_npz

    _compare_files(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["compare", "--cells", "gru", "--train", str(tmp_path / "train.npz"),
                     "--test", str(tmp_path / "test.npz"), "--units", "5", "--epochs", "2",
                     "--quantize", "float32", "--target", "host", "-o", str(out)]) == 0
    with (out / "summary.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["error"] == "" and row["unroll_error"].startswith(
        "ignores the mask: outputs differ from Keras by"), row
    assert "not a valid baseline" in row["unroll_error"]
    assert "GRU: unroll=True ignores the mask" in (out / "summary.md").read_text()
    data = from_npz(tmp_path / "train.npz", tmp_path / "test.npz")
    model = keras.saving.load_model(out / "cells" / "GRU" / "model.keras", compile=False)
    interpreter = tf.lite.Interpreter(
        model_content=(out / "cells" / "GRU" / "unroll_float32.tflite").read_bytes())
    interpreter.allocate_tensors()
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    got = []
    for sample in data.x_test:
        interpreter.set_tensor(inp["index"], sample[None].astype(np.float32))
        interpreter.invoke()
        got.append(interpreter.get_tensor(outp["index"])[0])
    differ = np.abs(np.array(got) - np.asarray(model(data.x_test))).max()
    assert differ > 1e-3 and float(row["unroll_err"]) == pytest.approx(differ, rel=1e-6)


def test_compare_trains_deploys_and_times_a_masked_classifier(tmp_path):
    """The classifier compare trains on variable-length data starts with Masking; its deployed
    C core masks the padding as Keras does (float32 and int8), and a target times it at T and at
    the mean length on real runs whose outputs are checked (qemu-m4 where it runs, else host)."""
    from fusegen.bench.firmware.core_model import read_chain
    from fusegen.commands.build import convert_model
    from fusegen.compare import deploy, targets
    from fusegen.compare.datasets import from_npz
    from fusegen.compare.run import _artifacts, calibration_samples, measure_inputs
    from fusegen.compare.train import TrainOptions, train

    _compare_files(tmp_path)
    data = from_npz(tmp_path / "train.npz", tmp_path / "test.npz")
    model, _ = train(lambda units: keras.layers.GRUCell(units), data,
                     TrainOptions(units=5, epochs=2, patience=0), lambda _line: None)
    assert isinstance(model.layers[0], keras.layers.Masking)
    model.save(tmp_path / "m.keras")
    deploy.convert(tmp_path / "m.keras", [], tmp_path)
    deployed = deploy.Deployed.load("gru", tmp_path / "fused.tflite", tmp_path / "m.keras", [])
    hidden = np.asarray(keras.Model(model.inputs[0], model.layers[-2].output)(data.x_test))
    kernel, bias = model.layers[-1].get_weights()
    keras_logits = hidden @ kernel + bias
    np.testing.assert_allclose(deployed.logits(data.x_test), keras_logits, atol=1e-5)
    unmasked = deploy.Deployed(**{**deployed.__dict__, "mask_value": None})
    assert np.abs(unmasked.logits(data.x_test) - keras_logits).max() > 1e-3  # the mask matters
    np.save(tmp_path / "cal.npy", calibration_samples(data))
    convert_model(tmp_path / "m.keras", [], tmp_path / "q.tflite", tmp_path / "kq",
                  tmp_path / "cal.npy")
    chain = read_chain((tmp_path / "q.tflite").read_bytes(), tmp_path / "kq")
    scale, zero = chain.input_qparams
    assert chain.mask_value == round(data.mask_value / scale) + zero >= -128  # not clamped
    real = np.concatenate([x[:n] for x, n in zip(data.x_test, data.lengths_test)])
    assert np.round(real.min() / scale) + zero >= chain.mask_value + 14  # no real step collides
    full, at_mean = measure_inputs(data)
    target = targets.select("qemu-m4" if _QEMU else "host")
    whole = target.measure(_artifacts(deployed, full, tmp_path))
    mean = target.measure(_artifacts(deployed, at_mean, tmp_path))
    if _QEMU:  # instruction counts: the padded steps are not run
        assert mean.per_inference < whole.per_inference * (data.mean_length + 1) / data.timesteps
    x_q = np.clip(np.round(at_mean / scale) + zero, -128, 127).astype(np.int8)
    assert np.all(chain.step_mask(x_q[0]).step_valid(data.timesteps)
                  == (np.arange(data.timesteps) < data.mean_length))


@pytest.mark.parametrize("tflite", ["f.tflite", "q.tflite"])
def test_python_api_verify_takes_sequences_of_different_lengths(masked_files, tmp_path, tflite):
    """fusegen.verify(inputs=...) takes what `verify --inputs` takes: a list of [L, F] arrays,
    an object array (or its .npy), or a padded array with lengths=; each is the same as the
    samples padded by hand with the model's mask value, and the CLI's verdict."""
    import fusegen

    d, model = masked_files
    seqs, _ = _ragged(5, 12)
    by_hand = _padded(seqs, T, MASK)[0]
    x, lengths = _padded(seqs, T, fill=0.5)  # whatever the padding holds: lengths= says
    np.save(tmp_path / "r.npy", seqs, allow_pickle=True)
    np.save(tmp_path / "l.npy", lengths)
    reports = [fusegen.verify(d / tflite, model, inputs=inputs, lengths=given)
               for inputs, given in [(by_hand, None), (list(seqs), None), (seqs, None),
                                     (tmp_path / "r.npy", None), (x, lengths),
                                     (x, tmp_path / "l.npy")]]

    def numbers(report):
        if report.dtype == "int8":
            return report.int8.samples, report.int8.mean_abs, report.int8.max_abs
        return [(r.samples, r.max_abs, r.err64) for r in report.layers]

    assert all(r.passed for r in reports), reports[0]
    assert all(numbers(r) == numbers(reports[0]) for r in reports[1:])
    assert numbers(reports[0])[0] == 12 or numbers(reports[0])[0][0] == 12


def test_python_api_verify_sequences_errors_and_length_input(masked_files, tmp_path):
    """Ragged inputs for a model without a mask: the CLI's one-line error, unless the file was
    converted with length_input=True, which runs each sample's length (the reference: Keras on
    each sample's first L steps, as `verify --lengths`)."""
    import fusegen
    from fusegen.commands.verify import keras_on_prefixes

    d, _ = masked_files
    plain = keras.saving.load_model(d / "plain.keras", compile=False)
    seqs, _ = _ragged(6, 5)
    with pytest.raises(fusegen.UserError, match="no Keras mask"):
        fusegen.verify(d / "plain.tflite", plain, inputs=list(seqs))
    with pytest.raises(fusegen.UserError, match="carries its own lengths"):
        fusegen.verify(d / "plain.tflite", plain, inputs=seqs, lengths=np.full(5, 2))
    data = fusegen.convert(plain, length_input=True)
    report = fusegen.verify(data, plain, inputs=list(seqs))
    assert report.passed, report
    x, lengths = _padded(seqs, T, fill=0.0)
    got = report.layers[0]
    expected = keras_on_prefixes(plain, x, lengths)
    assert got.samples == 5 and got.max_abs <= 1e-5
    assert got.magnitude == float(np.abs(expected).max())  # the reference on the prefixes
    whole = keras_on_prefixes(plain, x, np.full(5, T))  # the same arrays as T-step samples
    assert fusegen.verify(data, plain, inputs=x).layers[0].magnitude == float(np.abs(whole).max())
    assert np.abs(whole).max() != np.abs(expected).max()
