"""SIGINT, SIGTERM and SIGKILL to a real `fusegen bench` process while QEMU runs its inferences:
QEMU must not survive it (no qemu-system-arm left under PID 1) and no output file, whole or
partial, may appear."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fusegen.bench.firmware.build import REPO_ROOT, missing_tools

pytestmark = [
    pytest.mark.skipif(
        bool(missing_tools()), reason=f"firmware toolchain missing: {', '.join(missing_tools())}"
    ),
    pytest.mark.skipif(
        shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed"
    ),
]

QEMU = "qemu-system-arm"


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of pid's child processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid:
            found.append((int(entry.name), name))
    return found


def alive(pid: int) -> bool:
    """True while pid runs (a zombie waiting to be reaped does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_for_qemu(bench: subprocess.Popen, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert bench.poll() is None, bench.communicate()
        qemu = [pid for pid, name in children(bench.pid) if name.startswith(QEMU[:15])]
        if qemu:
            return qemu[0]
        time.sleep(0.1)
    bench.kill()
    raise AssertionError(f"no {QEMU} child within {timeout} s: {bench.communicate()}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=lambda s: signal.Signals(s).name)  # fmt: skip
def test_signal_ends_qemu_and_writes_nothing(tmp_path: Path, signum: int) -> None:
    # The echo model, with enough inferences to be still running when the signal comes.
    np.save(tmp_path / "x.npy", np.ones((20000, 64), np.float32))
    out = tmp_path / "out"
    out.mkdir()
    bench = subprocess.Popen(
        [sys.executable, "-m", "fusegen.bench", "--inputs", str(tmp_path / "x.npy"),
         "--output", str(out / "y.npy"), "--json", str(out / "r.json")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        qemu = wait_for_qemu(bench, timeout=300)  # includes building the firmware once
        time.sleep(2.0)  # connected and running inferences
        assert alive(qemu) and bench.poll() is None
        bench.send_signal(signum)
        _, stderr = bench.communicate(timeout=30)
    finally:
        if bench.poll() is None:
            bench.kill()
    deadline = time.monotonic() + 10
    while alive(qemu) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(qemu), f"{QEMU} {qemu} outlived fusegen bench ({signal.Signals(signum).name})"
    assert list(out.iterdir()) == []  # no output, no temporary file
    if signum == signal.SIGKILL:
        assert bench.returncode == -signal.SIGKILL
    else:
        assert bench.returncode == 1
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fusegen: error: interrupted by "), stderr
        assert "Traceback" not in stderr
