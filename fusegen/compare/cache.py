"""Finished work of `fusegen compare`, kept by content hash so a rerun skips it.

Two levels: a trained model (key: cell, data, training options) and a cell's results (key: the
trained model's key, the dtypes, the target and the fusegen sources). Changing only the target
re-measures without retraining; editing fusegen re-runs conversion but not training.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from fusegen.fileio import write_bytes, write_text
from fusegen.paths import ROOT, RUNTIME, TEMPLATES

_SOURCES = ((ROOT / "fusegen", "**/*.py"), (ROOT / "fusegen" / "compare", "c/*.c"),
            (ROOT / "fusegen" / "compare", "templates/*.j2"), (TEMPLATES, "*.j2"),
            (RUNTIME / "runtime", "*"))


def key(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def code_digest() -> str:
    """Hash of the sources that decide conversion and measurement results."""
    h = hashlib.sha256()
    for root, pattern in _SOURCES:
        for path in sorted(root.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class Cache:
    """read=False (--no-cache) recomputes everything but still stores the fresh results."""

    def __init__(self, root: Path, read: bool = True):
        self.root, self.read = root, read

    def trained(self, train_key: str) -> Path | None:
        """The directory holding model.keras and history.json, if both are there and whole
        (a damaged entry is a miss: the model is trained again and the entry replaced)."""
        d = self.root / f"train-{train_key}"
        if not self.read or _json_dict(d / "history.json") is None:
            return None
        return d if _whole_zip(d / "model.keras") else None

    def store_trained(self, train_key: str, model_file: Path, history: dict) -> Path:
        """Each file written atomically, history.json last: it marks the entry complete."""
        d = self.root / f"train-{train_key}"
        d.mkdir(parents=True, exist_ok=True)
        write_bytes(d / "model.keras", Path(model_file).read_bytes())
        write_text(d / "history.json", json.dumps(history))
        return d

    def result(self, result_key: str) -> dict | None:
        """A stored result, or None when missing or damaged (recomputed then)."""
        return _json_dict(self.root / f"result-{result_key}.json") if self.read else None

    def store_result(self, result_key: str, value: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_text(self.root / f"result-{result_key}.json", json.dumps(value, indent=1))


def _json_dict(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _whole_zip(path: Path) -> bool:
    """A .keras archive whose every member reads back with a matching CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False
