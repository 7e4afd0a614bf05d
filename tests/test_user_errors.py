"""Every user error is one line on stderr and exit 1, never a traceback (issue 16).

A table of bad inputs through `fusegen.cli.main` in this process (stderr captured; no
TensorFlow start-up per case); then the int8 verdict on a deliberately broken quantization,
`verify --labels` on a float32 model, the calibration sanity checks, and a damaged .tflite
through verify and bench core mode.
"""

from __future__ import annotations

import textwrap
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from fusegen import cli
from fusegen.converter import tflite_file

T, FEATURES, UNITS = 6, 3, 5


def _run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line(code: int, err: str, text: str = "") -> None:
    assert "Traceback" not in err, err
    assert code == 1, (code, err)
    lines = [line for line in err.splitlines() if not line.startswith("fusegen: warning:")]
    assert len(lines) == 1 and lines[0].startswith("fusegen: error: "), err
    assert text.lower() in err.lower(), err


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A small LSTM model converted to float32 and int8, and inputs."""
    root = tmp_path_factory.mktemp("user_errors")
    rng = np.random.default_rng(3)
    model = keras.Sequential([keras.Input((T, FEATURES)), keras.layers.LSTM(UNITS),
                              keras.layers.Dense(4)])
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    model.save(root / "m.keras")
    x = rng.uniform(-1, 1, (8, T, FEATURES)).astype(np.float32)
    np.save(root / "x.npy", x)
    np.save(root / "cal.npy", rng.uniform(-1, 1, (32, T, FEATURES)).astype(np.float32))
    np.save(root / "y.npy", np.asarray(model(x)).argmax(-1))
    from fusegen.commands.build import convert_model

    convert_model(root / "m.keras", [], root / "m.tflite", root / "kernels")
    convert_model(root / "m.keras", [], root / "m8.tflite", None, root / "cal.npy")
    return {"root": root, "keras": root / "m.keras", "x": root / "x.npy",
            "tflite": root / "m.tflite", "int8": root / "m8.tflite", "cal": root / "cal.npy",
            "kernels": root / "kernels", "y": root / "y.npy"}


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


CELL_HEADER = """
    import keras
    from keras import ops

"""


def _bad_inputs(f: dict[str, Path], tmp: Path) -> dict[str, tuple[list, str]]:
    """case -> (argv, text the error must contain)."""
    two_in = keras.Input((T, FEATURES)), keras.Input((T, FEATURES))
    merged = keras.layers.Add()([keras.layers.LSTM(4)(two_in[0]), keras.layers.LSTM(4)(two_in[1])])
    keras.Model(list(two_in), merged).save(tmp / "two_inputs.keras")
    x_in = keras.Input((T, FEATURES))
    h = keras.layers.LSTM(4)(x_in)
    keras.Model(x_in, [keras.layers.Dense(2)(h), keras.layers.Dense(3)(h)]).save(
        tmp / "two_outputs.keras")
    _write(tmp / "syntax.py", "def broken(:\n    pass\n")
    (tmp / "raises.py").write_text("import keras\n\nraise RuntimeError('boom at import')\n")
    _write(tmp / "no_units.py", CELL_HEADER + """
    class NoUnitsCell(keras.layers.Layer):
        def __init__(self, width=4, **kwargs):
            super().__init__(**kwargs)
            self.width = width
            self.state_size = width

        def call(self, inputs, states):
            return inputs[:, :self.width] + states[0], [states[0]]
    """)
    _write(tmp / "if_tensor.py", CELL_HEADER + """
    class IfCell(keras.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units))

        def call(self, inputs, states):
            h = ops.matmul(inputs, self.kernel)
            if ops.sum(h) > 0:
                h = h * 2.0
            return h + states[0], [h]
    """)
    np.save(tmp / "empty.npy", np.zeros((0, T, FEATURES), np.float32))
    np.save(tmp / "object.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (tmp / "not_npy.npy").write_text("hello")
    np.save(tmp / "zero_samples.npy", np.zeros((0, T, FEATURES), np.float32))
    data = f["keras"].read_bytes()
    (tmp / "truncated.keras").write_bytes(data[:len(data) // 2])
    (tmp / "random.keras").write_bytes(np.random.default_rng(0).bytes(2000))
    with zipfile.ZipFile(tmp / "corrupt.keras", "w") as z:
        z.writestr("config.json", "{not json")
        z.writestr("metadata.json", "{}")
    tfl = f["tflite"].read_bytes()
    (tmp / "truncated.tflite").write_bytes(tfl[:len(tfl) // 2])
    (tmp / "random.tflite").write_bytes(b"\0\0\0\0TFL3" + np.random.default_rng(1).bytes(600))
    (tmp / "text.tflite").write_text("not a model at all")
    (tmp / "existing_file").write_text("x")
    missing = tmp / "missing"
    verify = ["verify", "--keras", f["keras"], "--inputs"]
    return {
        "convert two inputs": (["convert", tmp / "two_inputs.keras", "-o", tmp / "o.tflite"],
                               "input"),
        "convert two outputs": (["convert", tmp / "two_outputs.keras", "-o", tmp / "o.tflite"],
                                "output"),
        "convert -o a directory": (["convert", f["keras"], "-o", tmp], "directory"),
        "convert -o unwritable": (["convert", f["keras"], "-o", "/proc/fusegen/m.tflite"], ""),
        "convert --kernels a file": (["convert", f["keras"], "-o", tmp / "o.tflite", "--kernels",
                                      tmp / "existing_file"], "is a file"),
        "build syntax error": (["build", tmp / "syntax.py", "-o", tmp / "k1"], "syntax.py:1"),
        "build raises at import": (["build", tmp / "raises.py", "-o", tmp / "k2"], "boom"),
        "build cell without units": (["build", tmp / "no_units.py", "-o", tmp / "k3"], "units"),
        "build python if on a tensor": (["build", tmp / "if_tensor.py", "-o", tmp / "k4"], ""),
        "convert --import syntax error": (["convert", f["keras"], "--import", tmp / "syntax.py",
                                           "-o", tmp / "o.tflite"], "syntax"),
        "verify --inputs empty": ([*verify, tmp / "empty.npy", f["tflite"]], "empty"),
        "verify --inputs object": ([*verify, tmp / "object.npy", f["tflite"]], "npy"),
        "verify --inputs not npy": ([*verify, tmp / "not_npy.npy", f["tflite"]], "npy"),
        "verify --inputs missing": ([*verify, missing / "x.npy", f["tflite"]], "not found"),
        "verify --labels wrong count": ([*verify, f["x"], f["tflite"], "--labels", f["cal"]],
                                        "labels"),
        "verify tflite missing": ([*verify, f["x"], missing / "m.tflite"], "not found"),
        "verify tflite a directory": ([*verify, f["x"], tmp], "directory"),
        "verify tflite truncated": ([*verify, f["x"], tmp / "truncated.tflite"], ""),
        "verify tflite random": ([*verify, f["x"], tmp / "random.tflite"], ""),
        "verify tflite text": ([*verify, f["x"], tmp / "text.tflite"], "not a .tflite"),
        "convert keras missing": (["convert", missing / "m.keras", "-o", tmp / "o.tflite"],
                                  "no such file"),
        "convert keras truncated": (["convert", tmp / "truncated.keras", "-o", tmp / "o.tflite"],
                                    "damaged"),
        "convert keras random": (["convert", tmp / "random.keras", "-o", tmp / "o.tflite"],
                                 "keras"),
        "convert keras corrupt archive": (["convert", tmp / "corrupt.keras", "-o",
                                           tmp / "o.tflite"], "cannot load"),
        "convert --import missing": (["convert", f["keras"], "--import", missing / "c.py", "-o",
                                      tmp / "o.tflite"], "no such file"),
        "convert --calibration missing": (["convert", f["keras"], "-o", tmp / "o.tflite",
                                           "--quantize", "int8", "--calibration",
                                           missing / "c.npy"], "not found"),
        "bench --inputs zero samples": (["bench", f["tflite"], "--kernels", f["kernels"],
                                         "--inputs", tmp / "zero_samples.npy", "--target",
                                         "qemu-m4"], "empty"),
    }


def test_bad_inputs_are_one_line_errors(files, tmp_path, capsys):
    failures = []
    cases = _bad_inputs(files, tmp_path)
    for name, (argv, text) in cases.items():
        try:
            code, _, err = _run(capsys, *argv)
        except Exception as e:  # noqa: BLE001 - the test lists every case that escapes
            failures.append(f"{name}: raised {type(e).__name__}: {e}")
            continue
        try:
            _assert_one_line(code, err, text)
        except AssertionError as e:
            failures.append(f"{name}: exit {code}: {str(e)[-600:]}")
    assert not failures, "\n\n".join(failures)
    assert not (tmp_path / "o.tflite").exists(), "a failed convert wrote its output"


def _with_fused_output_scale(data: bytes, factor: float) -> bytes:
    """The file with the fused op's output tensor's scale multiplied: the op still writes int8
    at the scale its qparams were made for, the Dense after it reads them at the new one."""
    model = tflite_file.read_model(data)
    graph = model.subgraphs[0]
    fused = [op for op in graph.operators
             if tflite_file.op_name(model, op).startswith("FUSEGEN_")]
    q = graph.tensors[fused[0].outputs[0]].quantization
    q.scale = np.asarray(q.scale, np.float32) * np.float32(factor)
    return tflite_file.write_model(model)


def test_int8_verify_passes_a_good_file_and_fails_a_wrong_scale(files, tmp_path, capsys):
    args = ["verify", "--keras", files["keras"], "--inputs", files["x"]]
    code, out, err = _run(capsys, *args, files["int8"], "--labels", files["y"])
    assert code == 0 and "PASS" in out and "Traceback" not in err, out + err
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(_with_fused_output_scale(files["int8"].read_bytes(), 4.0))
    code, out, err = _run(capsys, *args, broken)
    assert code == 1 and "FAIL" in out and "steps" in out, out + err
    # The bounds are flags: a tight enough bound fails the good file too.
    code, out, _ = _run(capsys, *args, files["int8"], "--mean-steps", "0.001")
    assert code == 1 and "--mean-steps" in out, out
    code, out, _ = _run(capsys, *args, files["int8"], "--max-steps", "0.001")
    assert code == 1 and "--max-steps" in out, out


def test_verify_labels_reports_float32_accuracy(files, capsys):
    code, out, err = _run(capsys, "verify", "--keras", files["keras"], "--inputs", files["x"],
                          files["tflite"], "--labels", files["y"])
    assert code == 0, out + err
    # y.npy holds Keras' own predictions: Keras' accuracy is 1, and so is the fused file's.
    assert "accuracy: Keras float 1.0000, float32 file 1.0000" in out, out


@pytest.mark.parametrize("data", ["zeros", "constant"])
def test_degenerate_calibration_is_refused(files, tmp_path, capsys, data):
    x = np.zeros((32, T, FEATURES), np.float32) + (0.0 if data == "zeros" else 0.7)
    np.save(tmp_path / "cal.npy", x)
    code, _, err = _run(capsys, "convert", files["keras"], "-o", tmp_path / "o.tflite",
                        "--quantize", "int8", "--calibration", tmp_path / "cal.npy")
    _assert_one_line(code, err, "calibration")
    assert not (tmp_path / "o.tflite").exists()


def test_constant_feature_leaves_a_tensor_without_range(files, tmp_path):
    """Calibration data that varies, but leaves a tensor inside the model constant: the
    converted file is refused, naming the tensor."""
    from fusegen.converter.validate import check_calibrated_ranges
    from fusegen.errors import FileFormatError

    model = tflite_file.read_model(files["int8"].read_bytes())
    graph = model.subgraphs[0]
    out = graph.tensors[graph.outputs[0]]
    out.quantization.scale = np.asarray([1e-9], np.float32)
    with pytest.raises(FileFormatError, match="empty range") as info:
        check_calibrated_ranges(tflite_file.write_model(model))
    assert tflite_file._text(out.name) in str(info.value)


def test_verify_warns_when_inputs_leave_the_calibrated_range(files, tmp_path, capsys):
    np.save(tmp_path / "far.npy", np.load(files["x"]) * 50)
    _, _, err = _run(capsys, "verify", "--keras", files["keras"], "--inputs",
                     tmp_path / "far.npy", files["int8"])
    assert "fusegen: warning:" in err and "calibrated input range" in err, err
    assert "Traceback" not in err
