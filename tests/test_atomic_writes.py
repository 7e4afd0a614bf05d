"""Atomic writes, nothing written by a failed command, compare's lock, cache and children.

- A process killed (SIGKILL) between writing a file's new contents and renaming it leaves the
  old file intact, for fileio.write_bytes and for a whole `fusegen convert`.
- A convert that fails (--kernels names a file) leaves the existing model untouched.
- A damaged compare cache entry (truncated result-*.json, history.json or model.keras) is a
  miss, recomputed, not an error; a second run on a locked output directory is refused.
- SIGTERM and SIGINT to a compare process end its stock-converter child; so does SIGKILL
  (the child is made to die with its parent).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from fusegen import cli, fileio
from fusegen.compare.cache import Cache
from fusegen.errors import UserError

KILL_BEFORE_REPLACE = """
import os, signal, sys
from fusegen import fileio
fileio._before_replace = lambda tmp: os.kill(os.getpid(), signal.SIGKILL)
"""


def _python(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_killed_mid_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old contents")
    big = 50 * 1024 * 1024  # written and fsynced before the kill
    proc = _python(KILL_BEFORE_REPLACE + f"fileio.write_bytes({str(target)!r}, b'n' * {big})\n")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert target.read_bytes() == b"old contents"
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert all(name.startswith(".model.tflite.") for name in leftovers), leftovers
    # And without the kill, the new contents replace the old at once.
    fileio.write_bytes(target, b"new")
    assert target.read_bytes() == b"new"


def test_failed_write_cleans_up_and_is_one_line(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fail(tmp: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio, "_before_replace", fail)
    with pytest.raises(UserError, match="cannot write .*No space left"):
        fileio.write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("atomic")
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.GRU(4)])
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    model.save(root / "m.keras")
    return root / "m.keras"


def test_convert_killed_mid_write_leaves_the_old_model(keras_model, tmp_path):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"the user's good model")
    proc = _python(KILL_BEFORE_REPLACE + f"""
from fusegen.cli import main
main(["convert", {str(keras_model)!r}, "-o", {str(out)!r}])
""")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert out.read_bytes() == b"the user's good model"


def test_failed_convert_leaves_the_existing_model(keras_model, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    assert cli.main(["convert", str(keras_model), "-o", str(out)]) == 0
    good = out.read_bytes()
    (tmp_path / "kernels_file").write_text("not a directory")
    code = cli.main(["convert", str(keras_model), "-o", str(out), "--kernels",
                     str(tmp_path / "kernels_file")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("fusegen: error: ") and err.count("\n") == 1, err
    assert out.read_bytes() == good


def test_kernel_files_are_written_only_when_changed(tmp_path):
    from fusegen.commands.build import BUILTIN_CELLS, build_cells

    build_cells([BUILTIN_CELLS["gru"]], {}, tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    time.sleep(0.01)
    build_cells([BUILTIN_CELLS["gru"]], {}, tmp_path)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamps
    assert not [p for p in tmp_path.rglob(".*.tmp")]


# --- compare's cache and lock ---------------------------------------------------------------

def test_damaged_cache_entries_are_misses(tmp_path, keras_model):
    cache = Cache(tmp_path)
    cache.store_result("k", {"rows": [1, 2]})
    assert cache.result("k") == {"rows": [1, 2]}
    path = tmp_path / "result-k.json"
    path.write_text(path.read_text()[:7])
    assert cache.result("k") is None
    path.write_text("[1, 2]")  # valid JSON, not an entry
    assert cache.result("k") is None

    d = cache.store_trained("t", keras_model, {"loss": [1.0]})
    assert cache.trained("t") == d
    model_bytes = (d / "model.keras").read_bytes()
    (d / "model.keras").write_bytes(model_bytes[:len(model_bytes) // 2])
    assert cache.trained("t") is None
    cache.store_trained("t", keras_model, {"loss": [1.0]})  # recomputed, replaced
    assert cache.trained("t") == d
    (d / "history.json").write_text('{"loss": [1.')
    assert cache.trained("t") is None


def test_output_directory_lock(tmp_path):
    with fileio.locked_dir(tmp_path, "compare output directory"), \
            pytest.raises(UserError, match="in use by another fusegen run"), \
            fileio.locked_dir(tmp_path, "compare output directory"):
        pass
    with fileio.locked_dir(tmp_path):  # released
        pass


# --- compare's children ---------------------------------------------------------------------

CHILD_RUN = """
import sys, time
from pathlib import Path
from fusegen.compare import stock
from fusegen.compare.cli import _terminate_on_signals

out = Path(sys.argv[1])
with _terminate_on_signals():
    try:
        # A stock-converter child as compare starts it (its arguments do not matter: it is
        # ended long before it would read them).
        run = stock.start(out / "none.keras", [], out / "none.npz", out, ("float32",))
        print(run.process.pid, flush=True)
        time.sleep(120)
    finally:
        stock.stop_children()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_signals_end_the_stock_converter_child(tmp_path, sig):
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD_RUN), str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(sig)
    parent.wait(timeout=60)
    deadline = time.monotonic() + 20
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), f"the converter child {child} outlived its parent ({sig.name})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (ended, not yet reaped by init) counts as ended.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_compare_refuses_a_locked_output_directory(tmp_path, capsys):
    with fileio.locked_dir(tmp_path / "report"):
        code = cli.main(["compare", "--cells", "gru", "--dataset", "digits", "--subset", "40",
                         "--epochs", "1", "--target", "host", "-o", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert code == 1 and "in use by another fusegen run" in err, err
