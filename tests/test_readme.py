"""The README's usage example and its Python blocks run as written (STYLE.md item 13)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# TensorFlow's C++ log lines (absl format: "I0000 00:00:...", "E0000 ..."), the converter's MLIR
# lines, absl's preamble, Python warnings: hidden unless --verbose (fusegen/quiet.py).
TF_NOISE = re.compile(r"^[IWEF]\d{4} |fully_quantize|absl::InitializeLog|Warning|WARNING|"
                      r"deprecated|cpu_feature_guard|oneDNN", re.M)


def python_blocks() -> list[str]:
    """Every ```python block of the README (the Python API section)."""
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def test_readme_python_blocks_run(tmp_path):
    """Each block runs as a script in an empty directory, with nothing on stderr."""
    blocks = python_blocks()
    assert blocks, "the README has no ```python block"
    for k, block in enumerate(blocks):
        script = tmp_path / f"readme_{k}.py"
        script.write_text(block)
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"block {k}:\n{block}\n{done.stdout}\n{done.stderr}"
        assert not TF_NOISE.search(done.stderr), f"block {k} stderr:\n{done.stderr}"
    assert "PASS" in done.stdout and "error: " in done.stdout
    assert (tmp_path / "generated" / "fusegen_ops.h").is_file()


def _usage_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Use\n\n```sh\n(.*?)```", text, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_usage_block_runs(tmp_path):
    commands = _usage_commands()
    assert [c.split()[0] for c in commands] == ["python", "fusegen", "fusegen", "fusegen"]
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for command in commands:
        argv = shlex.split(command)
        argv = [str(REPO / a) if a.startswith("examples/") else a for a in argv]
        argv[0] = sys.executable if argv[0] == "python" else str(bin_dir / argv[0])
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        if argv[0] != sys.executable:  # fusegen's commands (not the example's own script)
            assert not TF_NOISE.search(done.stderr), f"{command} printed TensorFlow's log " \
                f"lines:\n{done.stderr}"
    assert (tmp_path / "generated" / "fusegen_ops.h").exists()
    assert "PASS" in done.stdout


def test_how_it_works_table_matches_the_tree():
    """Every path in the README's "How it works" table exists, and every package and top-level
    module of fusegen/ (and the layering contract's layers) is in the table."""
    text = (REPO / "README.md").read_text()
    table = re.search(r"## How it works\n(.*?)\n\n`fusegen build", text, re.S).group(1)
    named = set(re.findall(r"`((?:fusegen|firmware)/[\w/.]*)`", table))
    missing = [p for p in named if not (REPO / p).exists()]
    assert not missing, f"the table names {missing}, which do not exist"
    package = REPO / "fusegen"
    parts = {f"fusegen/{p.name}/" for p in package.iterdir()
             if p.is_dir() and (p / "__init__.py").is_file()}
    parts |= {f"fusegen/{p.name}" for p in package.glob("*.py") if p.name != "__init__.py"}
    parts |= {"fusegen/templates/", "fusegen/tflm_kernels/", "firmware/"}
    assert parts - named == set(), f"not in the README's table: {sorted(parts - named)}"
