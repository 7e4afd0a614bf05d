"""A benchmark script whose firmware build, QEMU or serial link fails says so in one line on
stderr and exits 1 (benchmarks/device_bench.py's run_main, which every device benchmark's
__main__ calls), as `fusegen bench` does; a bug in the script keeps its traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fusegen.bench.firmware.build import REPO_ROOT

SCRIPT = """\
import sys
from pathlib import Path

sys.path.insert(0, {benchmarks!r})
import device_bench
from fusegen.bench.link.qemu import QemuError
from fusegen.bench.link.serial_link import LinkError


def main():
    raise {error}


device_bench.run_main(main, Path({build!r}))
"""


def run_bench(tmp_path: Path, error: str) -> subprocess.CompletedProcess:
    script = tmp_path / "fake_bench.py"
    script.write_text(SCRIPT.format(benchmarks=str(REPO_ROOT / "benchmarks"), error=error,
                                    build=str(tmp_path / "build")))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.parametrize("error,line", [
    ('LinkError("LOAD_INPUT: no valid response after 4 attempts (last: no response in time)")',
     ("fake_bench.py: error: LOAD_INPUT: no valid response after 4 attempts (last: no response "
      "in time)")),
    ('QemuError("QEMU exited with status 1 during the session:\\nHardFault\\nPC 0x1234")',
     "fake_bench.py: error: QEMU exited with status 1 during the session (log: {log})"),
], ids=["link", "qemu-multiline"])
def test_device_failure_is_one_line_and_exit_1(tmp_path: Path, error: str, line: str) -> None:
    done = run_bench(tmp_path, error)
    log = tmp_path / "build" / "fusegen-bench-error.log"
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [line.format(log=log)]
    if "{log}" in line:
        assert "HardFault" in log.read_text()  # the rest of the message is kept there


def test_a_bug_in_the_script_keeps_its_traceback(tmp_path: Path) -> None:
    done = run_bench(tmp_path, 'ValueError("a bug")')
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ValueError: a bug" in done.stderr
