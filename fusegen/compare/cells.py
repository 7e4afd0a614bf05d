"""What `--cells` and `--models` name, resolved and checked before anything is trained.

A cell is a Keras built-in (lstm, gru, simple_rnn) or `FILE.py:Class` (a bare `FILE.py` means
every cell class in the file). A model is a trained `.keras` file of the shape compare expects.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import keras

from fusegen.errors import CompareError
from fusegen.frontend.keras_model import cell_classes, import_file
from fusegen.paths import ROOT

BUILTIN = {"lstm": ("LSTM", keras.layers.LSTMCell), "gru": ("GRU", keras.layers.GRUCell),
           "simple_rnn": ("SimpleRNN", keras.layers.SimpleRNNCell),
           "simplernn": ("SimpleRNN", keras.layers.SimpleRNNCell)}
DEFAULT_CELLS = ("lstm", "gru", "simple_rnn",
                 f"{ROOT / 'examples' / 'minimal_gated.py'}:MinimalGatedCell")


class SpecError(CompareError):
    """A --cells / --models entry that names nothing usable."""


@dataclass(frozen=True)
class CellSpec:
    label: str  # row name in the report: LSTM, GRU, SimpleRNN, MinimalGatedCell
    cls: type
    source: Path | None  # the file defining a custom cell; None for Keras built-ins

    def make(self, units: int) -> keras.layers.Layer:
        return self.cls(units=units)

    @property
    def imports(self) -> list[str]:
        return [str(self.source)] if self.source else []

    def identity(self) -> str:
        """What a trained model depends on: the class and, for a custom cell, its file's text."""
        text = self.source.read_bytes() if self.source else keras.__version__.encode()
        return f"{self.cls.__module__}.{self.cls.__name__}:{hashlib.sha256(text).hexdigest()}"


@dataclass(frozen=True)
class ModelSpec:
    label: str  # the file's stem
    path: Path
    imports: list[str]

    def identity(self) -> str:
        texts = [self.path.read_bytes()] + [Path(p).read_bytes() for p in self.imports]
        return hashlib.sha256(b"\0".join(texts)).hexdigest()


def parse_cells(text: str) -> list[CellSpec]:
    """`lstm,gru,examples/minimal_gated.py:MinimalGatedCell` -> specs, in order, no duplicates."""
    specs = [spec for item in text.split(",") if item.strip() for spec in _parse_one(item.strip())]
    if not specs:
        raise SpecError("--cells is empty; name at least one cell (lstm, gru, simple_rnn or "
                        "FILE.py:Class)")
    _check_unique([s.label for s in specs], "--cells")
    return specs


def parse_models(paths: list[str], imports: list[str]) -> list[ModelSpec]:
    for path in [*paths, *imports]:
        if not Path(path).is_file():
            raise SpecError(f"{path}: no such file")
    specs = [ModelSpec(Path(p).stem, Path(p), list(imports)) for p in paths]
    _check_unique([s.label for s in specs], "--models")
    return specs


def _parse_one(item: str) -> list[CellSpec]:
    if item.lower() in BUILTIN:
        label, cls = BUILTIN[item.lower()]
        return [CellSpec(label, cls, None)]
    path, _, class_name = item.partition(":")
    if not path.endswith(".py"):
        raise SpecError(f"unknown cell {item!r}: use lstm, gru, simple_rnn or FILE.py:Class")
    source = Path(path)
    if not source.is_file():
        raise SpecError(f"cell file {path}: no such file")
    try:
        module = import_file(source)
    except Exception as err:  # noqa: BLE001 - the user's file failed to import
        raise SpecError(f"cell file {path} does not import: {type(err).__name__}: {err}") from None
    chosen = _select(cell_classes(module), class_name, path)
    return [CellSpec(cls.__name__, cls, source.resolve()) for cls in chosen]


def _select(classes: list[type], class_name: str, path: str) -> list[type]:
    names = ", ".join(c.__name__ for c in classes) or "none"
    if not class_name:
        if not classes:
            raise SpecError(f"cell file {path} defines no cell class (a keras Layer whose "
                            "call(inputs, states) takes `states`)")
        return classes
    found = [c for c in classes if c.__name__ == class_name]
    if not found:
        raise SpecError(f"cell file {path} has no cell class {class_name}; it has: {names}")
    return found


def _check_unique(labels: list[str], option: str) -> None:
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise SpecError(f"{option} names {', '.join(repeated)} more than once")
