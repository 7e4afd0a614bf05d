"""fusegen installed as a normal (non-editable) package works from any directory.

A copy of the package sources is installed with pip into a fresh venv (its dependencies are the
test venv's, reached through a .pth path entry, so nothing is downloaded); `fusegen build` and
`fusegen convert --kernels` then run from another directory and write the same kernels as the
checkout's fusegen. The installed package must find its runtime, templates and firmware.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "fusegen", "firmware")

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    # FUSEGEN_CACHE too: tests/conftest.py sets one per pytest-xdist worker, and the installed
    # package's own default is what is checked here.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "FUSEGEN_CACHE")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The venv's bin directory, fusegen installed into it from a copy of the sources (run as
    `python -m fusegen.cli`: the console script's interpreter would be pip's)."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.so", "build"))
        else:
            shutil.copy2(REPO / name, src / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    bin_dir = venv / "bin"
    purelib = Path(subprocess.run(
        [str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip())
    # The test venv's packages (TensorFlow, numpy, ...) after the venv's own: a plain path
    # entry, so the test venv's editable-install hook (.pth) is not run.
    paths = [*site.getsitepackages(), sysconfig.get_path("purelib")]
    (purelib / "zz_test_deps.pth").write_text("\n".join(dict.fromkeys(paths)) + "\n")
    # --target: pip writes only there (it would otherwise see, and replace, the editable
    # install of the environment it runs in).
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(purelib), str(src)],
                   check=True, env=_env(), cwd=root)
    shutil.rmtree(src)  # nothing may point back at the sources
    return bin_dir


def _run(argv: list[str], cwd: Path, **env: str) -> None:
    result = subprocess.run(argv, cwd=cwd, env=_env(**env), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and files_a
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(p) for p in files_a], shallow=False)
    assert not mismatch and not errors, mismatch + errors


def test_installed_package_is_the_copy_and_finds_its_data(installed, tmp_path):
    code = ("import fusegen, fusegen.paths as p; "
            "print(fusegen.__file__); print(p.FIRMWARE); print(p.RUNTIME); print(p.CACHE)")
    out = subprocess.run([str(installed / "python"), "-c", code], cwd=tmp_path, env=_env(),
                         check=True, capture_output=True, text=True).stdout.split("\n")
    module, firmware, runtime, cache = (Path(line) for line in out[:4])
    assert installed.parent in module.parents
    assert (firmware / "CMakeLists.txt").is_file() and (firmware / "app" / "main.c").is_file()
    assert (runtime / "runtime" / "fg_runtime_q.c").is_file()
    assert installed.parent not in cache.parents  # caches are not written into site-packages


def test_installed_build_and_convert_write_the_checkouts_kernels(installed, tmp_path):
    import keras

    model = keras.Sequential([keras.Input((5, 3), batch_size=1), keras.layers.GRU(4),
                              keras.layers.Dense(2)])
    model.save(tmp_path / "model.keras")
    work = tmp_path / "elsewhere"
    work.mkdir()
    checkout = [sys.executable, "-m", "fusegen.cli"]
    runs = {"installed": [str(installed / "python"), "-m", "fusegen.cli"], "checkout": checkout}
    for name, fusegen in runs.items():
        # one directory each, same output names: a kernel directory's name is its namespace
        here = work / name
        here.mkdir()
        pythonpath = {} if name == "installed" else {"PYTHONPATH": str(REPO)}
        _run([*fusegen, "build", "simple_rnn", "-o", "build"], here,
             FUSEGEN_CACHE=str(tmp_path / f"cache_{name}"), **pythonpath)
        _run([*fusegen, "convert", str(tmp_path / "model.keras"), "-o", "model.tflite",
              "--kernels", "kernels"], here,
             FUSEGEN_CACHE=str(tmp_path / f"cache_{name}"), **pythonpath)
    _same_tree(work / "installed" / "build", work / "checkout" / "build")
    _same_tree(work / "installed" / "kernels", work / "checkout" / "kernels")
    assert ((work / "installed" / "model.tflite").read_bytes()
            == (work / "checkout" / "model.tflite").read_bytes())
