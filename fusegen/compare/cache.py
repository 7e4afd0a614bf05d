"""Finished work of `fusegen compare`, kept by content hash so a rerun skips it.

Two levels: a trained model (key: cell, data, training options) and a cell's results (key: the
trained model's key, the dtypes, the target and the fusegen sources). Changing only the target
re-measures without retraining; editing fusegen re-runs conversion but not training.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

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
        """The directory holding model.keras and history.json, if both are there."""
        d = self.root / f"train-{train_key}"
        if self.read and (d / "model.keras").is_file() and (d / "history.json").is_file():
            return d
        return None

    def store_trained(self, train_key: str, model_file: Path, history: dict) -> Path:
        d = self.root / f"train-{train_key}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_file, d / "model.keras")
        (d / "history.json").write_text(json.dumps(history))
        return d

    def result(self, result_key: str) -> dict | None:
        path = self.root / f"result-{result_key}.json"
        return json.loads(path.read_text()) if self.read and path.is_file() else None

    def store_result(self, result_key: str, value: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / f"result-{result_key}.json").write_text(json.dumps(value, indent=1))
