"""firmware/README.md's examples run: every ```sh block in bash, every ```python block."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from fusegen.bench.firmware.build import FIRMWARE_DIR, REPO_ROOT, missing_tools

README = FIRMWARE_DIR / "README.md"

pytestmark = pytest.mark.skipif(
    bool(missing_tools()), reason=f"firmware toolchain missing: {', '.join(missing_tools())}"
)


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("index", range(len(blocks("sh"))))
def test_shell_example(index: int) -> None:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", blocks("sh")[index]],
        cwd=REPO_ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_example(index: int) -> None:
    code = compile(blocks("python")[index], f"{README}:python[{index}]", "exec")
    exec(code, {})  # noqa: S102 - running the documented example is the point
