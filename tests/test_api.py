"""The Python API (fusegen/api.py) against the CLI, and the quiet, quick command line:
`import fusegen`, every --help and `fusegen bench` on a converted file import no TensorFlow;
no command prints TensorFlow's log lines or the libraries' warnings unless --verbose."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import fusegen
from fusegen.cli import main as cli_main
from test_readme import TF_NOISE

COMMANDS = ("build", "convert", "verify", "bench", "compare")


def _tiny_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((9, 3)), keras.layers.GRU(5),
                             keras.layers.Dense(3, activation="softmax")])


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 9, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model object, the same model saved, calibration samples, inputs and their files."""
    d = tmp_path_factory.mktemp("api")
    model = _tiny_model()
    model.save(d / "m.keras")
    np.save(d / "cal.npy", _inputs(8, 1))
    np.save(d / "x.npy", _inputs(3, 2))
    return d, model


def _run(argv: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=600, **kw)


def test_import_and_every_help_import_no_tensorflow(tmp_path):
    probe = textwrap.dedent(f"""
        import contextlib, io, sys
        import fusegen
        assert callable(fusegen.convert) and callable(fusegen.bench)
        from fusegen.cli import main
        for argv in [["--help"]] + [[c, "--help"] for c in {COMMANDS!r}]:
            with contextlib.redirect_stdout(io.StringIO()) as out:
                try:
                    main(argv)
                except SystemExit as e:
                    assert e.code == 0, argv
            assert "usage: fusegen" in out.getvalue(), argv
            assert "own modules" not in out.getvalue(), argv
        heavy = sorted(m for m in ("tensorflow", "keras", "matplotlib") if m in sys.modules)
        print("HEAVY", heavy)
    """)
    done = _run(["-c", probe], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout
    assert done.stderr == ""


def test_api_converts_a_model_object_like_the_cli(saved, tmp_path):
    """fusegen.convert on the object gives the bytes `fusegen convert` writes from the saved
    model, float32 and int8 (per-channel too), with the same kernels."""
    d, model = saved
    calibration = np.load(d / "cal.npy")
    cases = {"float32": ({}, []),
             "int8": ({"quantize": "int8", "calibration": calibration},
                      ["--quantize", "int8", "--calibration", str(d / "cal.npy")]),
             "int8_per_channel": ({"quantize": "int8", "calibration": calibration,
                                   "per_channel": True},
                                  ["--quantize", "int8", "--calibration", str(d / "cal.npy"),
                                   "--per-channel"])}
    files = {}
    for name, (kwargs, options) in cases.items():
        data = fusegen.convert(model, kernels=tmp_path / "api" / name, **kwargs)
        out = tmp_path / f"{name}.tflite"
        assert cli_main(["convert", str(d / "m.keras"), "-o", str(out),
                         "--kernels", str(tmp_path / "cli" / name), *options]) == 0
        assert data == out.read_bytes(), name
        files[name] = data
        api_kernels = sorted(p.relative_to(tmp_path / "api" / name)
                             for p in (tmp_path / "api" / name).rglob("*") if p.is_file())
        cli_kernels = sorted(p.relative_to(tmp_path / "cli" / name)
                             for p in (tmp_path / "cli" / name).rglob("*") if p.is_file())
        assert api_kernels == cli_kernels and api_kernels
        for rel in api_kernels:
            assert ((tmp_path / "api" / name / rel).read_bytes()
                    == (tmp_path / "cli" / name / rel).read_bytes()), rel
    assert files["int8"] != files["int8_per_channel"]  # per_channel reaches the quantizer
    # the path form of the API is the same conversion
    assert fusegen.convert(d / "m.keras") == files["float32"]


def test_api_verify_report(saved):
    d, model = saved
    x = np.load(d / "x.npy")
    report = fusegen.verify(fusegen.convert(model), model, inputs=x)
    assert report.dtype == "float32" and report.passed and report.verdict == "PASS"
    assert [row.op_name for row in report.layers] == ["FUSEGEN_GRU"]
    assert 0 < report.layers[0].max_abs < 1e-5
    assert str(report).splitlines()[-1].startswith("PASS: error against float64")
    strict = fusegen.verify(fusegen.convert(model), model, inputs=x, tolerance=1e-12)
    assert strict.verdict == "FAIL"
    int8 = fusegen.convert(model, quantize="int8", calibration=d / "cal.npy")
    labels = np.arange(len(x)) % 3
    r8 = fusegen.verify(int8, model, inputs=d / "x.npy", labels=labels)
    assert r8.dtype == "int8" and r8.passed and r8.int8.samples == 3
    assert r8.int8.max_abs / r8.int8.output_step < 16 and r8.int8.int8_accuracy is not None


def test_api_errors_are_user_errors(saved, tmp_path):
    d, model = saved
    with pytest.raises(fusegen.UserError, match="no_such.keras"):
        fusegen.convert(tmp_path / "no_such.keras")
    with pytest.raises(fusegen.UserError, match="calibration"):
        fusegen.convert(model, quantize="int8")
    with pytest.raises(fusegen.UserError, match="per_channel"):
        fusegen.convert(model, per_channel=True)
    with pytest.raises(fusegen.UserError, match="shape"):
        fusegen.verify(fusegen.convert(model), model, inputs=np.zeros((2, 4, 3), np.float32))


def _quiet_stderr(done: subprocess.CompletedProcess, what: str) -> None:
    assert done.returncode == 0, f"{what}\n{done.stdout}\n{done.stderr}"
    assert not TF_NOISE.search(done.stderr), f"{what} stderr:\n{done.stderr}"


def test_commands_are_quiet_and_verbose_is_not(saved, tmp_path):
    """int8 convert and verify (the converter's MLIR lines, tf.lite.Interpreter's deprecation)
    print nothing on stderr; --verbose shows the converter's lines. (build, float32 convert and
    verify: tests/test_readme.py's usage block.)"""
    d, _ = saved
    fusegen_cli = [str(Path(sys.executable).parent / "fusegen")]
    convert = ["convert", str(d / "m.keras"), "-o", "q.tflite", "--quantize", "int8",
               "--calibration", str(d / "cal.npy")]
    done = subprocess.run(fusegen_cli + convert, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    _quiet_stderr(done, "convert --quantize int8")
    done = subprocess.run(fusegen_cli + ["verify", "q.tflite", "--keras", str(d / "m.keras"),
                                         "--inputs", str(d / "x.npy")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    _quiet_stderr(done, "verify (int8)")
    loud = subprocess.run(fusegen_cli + ["--verbose"] + convert, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert loud.returncode == 0 and "fully_quantize" in loud.stderr, loud.stderr


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="needs qemu-system-arm")
def test_bench_on_a_converted_file_imports_no_tensorflow(saved, tmp_path):
    d, model = saved
    fusegen.convert(model, quantize="int8", calibration=d / "cal.npy", kernels=tmp_path / "k",
                    out=tmp_path / "q.tflite")
    probe = textwrap.dedent(f"""
        import sys
        from fusegen.cli import main
        status = main(["bench", "q.tflite", "--kernels", "k", "--inputs", {str(d / 'x.npy')!r},
                       "--json", "r.json", "--build-root", "build"])
        heavy = sorted(m for m in ("tensorflow", "keras", "matplotlib") if m in sys.modules)
        print("HEAVY", heavy)
        sys.exit(status)
    """)
    done = _run(["-c", probe], tmp_path)
    _quiet_stderr(done, "bench")
    assert "HEAVY []" in done.stdout, done.stdout
    cli = json.loads((tmp_path / "r.json").read_text())
    # the API: bytes and an array in, the --json numbers out (-icount: counts repeat exactly)
    api = fusegen.bench((tmp_path / "q.tflite").read_bytes(), kernels=tmp_path / "k",
                        inputs=np.load(d / "x.npy"), build_root=tmp_path / "build")
    assert api["count_mean"] == cli["count_mean"] > 0
    assert api["inferences"] == cli["inferences"] == 3
    with pytest.raises(fusegen.UserError, match="kernels"):
        fusegen.bench(tmp_path / "q.tflite", kernels=tmp_path / "none", inputs=d / "x.npy")


def test_api_build_writes_the_cli_kernels(tmp_path):
    # the same directory name: it is the default C++ namespace of the registration
    built = fusegen.build(keras.layers.GRUCell, out=tmp_path / "api" / "k")
    assert [(b.class_name, b.op_name) for b in built] == [("GRUCell", "FUSEGEN_GRU")]
    assert cli_main(["build", "gru", "-o", str(tmp_path / "cli" / "k")]) == 0
    files = sorted(p.relative_to(tmp_path / "api" / "k")
                   for p in (tmp_path / "api" / "k").rglob("*") if p.is_file())
    assert Path("fusegen_gru.cc") in files
    assert files == sorted(p.relative_to(tmp_path / "cli" / "k")
                           for p in (tmp_path / "cli" / "k").rglob("*") if p.is_file())
    for rel in files:
        assert ((tmp_path / "api" / "k" / rel).read_bytes()
                == (tmp_path / "cli" / "k" / rel).read_bytes())
    with pytest.raises(fusegen.UserError):
        fusegen.build(tmp_path / "nothing.txt", out=tmp_path / "x")


def test_api_compare_names_only_failed_fusegen_cells(tmp_path, monkeypatch):
    """CompareFailed names the cells compare's exit status counts (report.failed_cells): a
    fusegen row with an error; not a baseline row's error, not a row still pending (int8 time
    on a host target)."""
    import csv

    import fusegen.compare.cli as compare_cli
    from fusegen.api import CompareFailed

    rows = [("lstm", "fusegen", "verify int8: max error 22.3 steps > --max-steps 16.0"),
            ("gru", "fusegen", "pending: int8 time is measured on the qemu-* targets only"),
            ("simple_rnn", "unroll=True", "unroll=True int8 through TFLM: arena too small"),
            ("simple_rnn", "fusegen", "")]

    def fake_run(args) -> int:
        with open(Path(args.out) / "summary.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["cell", "model", "error"])
            writer.writerows(rows)
        return 1

    monkeypatch.setattr(compare_cli, "run", fake_run)
    with pytest.raises(CompareFailed) as err:
        fusegen.compare(out=tmp_path, cells="lstm,gru,simple_rnn")
    assert str(err.value) == f"cells failed: lstm (see {tmp_path}/summary.md)"
