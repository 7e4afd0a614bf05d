"""Jinja2 rendering of op_templates/: strict, no logic beyond loops and substitutions."""

from __future__ import annotations

from pathlib import Path

import jinja2

from fusegen.fileio import write_text
from fusegen.paths import TEMPLATES

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)


def render(template: str, **context) -> str:
    return _ENV.get_template(template).render(**context)


def guard(path: str) -> str:
    """A path-based include guard, as TFLM writes them."""
    return "".join(c if c.isalnum() else "_" for c in path).upper() + "_"


def write(files: dict[str, str], out_dir: Path) -> list[Path]:
    """Writes files that changed (so builds that include them stay incremental), each
    atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists() or path.read_text() != text:
            write_text(path, text)
        written.append(path)
    return written
