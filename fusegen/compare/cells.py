"""What `--cells` and `--models` name, resolved and checked before anything is trained.

A cell is a Keras built-in (lstm, gru, simple_rnn) or `FILE.py:Class` (a bare `FILE.py` means
every cell class in the file), optionally named `SPEC@LABEL`. Constructor arguments come from
`--arg [LABEL:]NAME=VALUE` (without LABEL: every cell). A cell's row name is its label, else its
class name with its arguments (`GRU(reset_after=False)`), so variants of one class sit side by
side; `--tag TAG` appends `/TAG` to every name of a run. A model is a trained `.keras` file of
the shape compare expects.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass, replace
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
    kwargs: tuple[tuple[str, object], ...] = ()  # constructor arguments besides units (--arg)
    named: bool = False  # the label was given (SPEC@LABEL)

    def make(self, units: int) -> keras.layers.Layer:
        try:
            return self.cls(units=units, **dict(self.kwargs))
        except (TypeError, ValueError) as err:
            raise SpecError(f"cell {self.label}: {self.cls.__name__}(units={units}"
                            f"{_kwargs_text(self.kwargs, ', ')}) cannot be constructed: "
                            f"{err}") from None

    @property
    def imports(self) -> list[str]:
        return [str(self.source)] if self.source else []

    @property
    def directory(self) -> str:
        """The cell's folder under OUT/cells: its label with path-unsafe characters replaced."""
        return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", self.label)

    def identity(self) -> str:
        """What a trained model depends on: the class, its arguments and, for a custom cell, its
        file's text."""
        text = self.source.read_bytes() if self.source else keras.__version__.encode()
        return (f"{self.cls.__module__}.{self.cls.__name__}{_kwargs_text(self.kwargs)}:"
                f"{hashlib.sha256(text).hexdigest()}")


@dataclass(frozen=True)
class ModelSpec:
    label: str  # the file's stem
    path: Path
    imports: list[str]
    # Variable-length data: the model's own Masking value, which compare pads the data with
    mask_value: float | None = None

    @property
    def directory(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", self.label)

    def identity(self) -> str:
        texts = [self.path.read_bytes()] + [Path(p).read_bytes() for p in self.imports]
        return hashlib.sha256(b"\0".join(texts)).hexdigest()


def parse_cells(text: str, args: list[str] | tuple[str, ...] = (), tag: str = "") -> list[CellSpec]:
    """`lstm,gru@gru2,examples/minimal_gated.py:MinimalGatedCell` -> specs, in order, no
    duplicate names; `args` are --arg's `[LABEL:]NAME=VALUE`, `tag` --tag's TAG."""
    specs = [spec for item in text.split(",") if item.strip() for spec in _parse_one(item.strip())]
    if not specs:
        raise SpecError("--cells is empty; name at least one cell (lstm, gru, simple_rnn or "
                        "FILE.py:Class)")
    specs = _with_args(specs, [parse_arg(a) for a in args])
    if tag:
        if not re.fullmatch(r"[A-Za-z0-9_.=+-]+", tag):
            raise SpecError(f"--tag {tag!r}: use letters, digits and _ . = + -")
        specs = [replace(s, label=f"{s.label}/{tag}") for s in specs]
    _check_unique([s.label for s in specs], "--cells")
    return specs


def parse_arg(text: str) -> tuple[str, str, object]:
    """`[LABEL:]NAME=VALUE` -> (LABEL or "", NAME, VALUE as a Python literal or a bare word)."""
    head, sep, value = text.partition("=")
    target, _, name = head.rpartition(":")
    if not sep or not name.isidentifier():
        raise SpecError(f"--arg {text!r}: expected [CELL:]NAME=VALUE, e.g. --arg "
                        "GRU:reset_after=False")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value  # a bare word, e.g. an activation name
    return target, name, parsed


def _with_args(specs: list[CellSpec], args: list[tuple[str, str, object]]) -> list[CellSpec]:
    labels = {s.label for s in specs}
    unknown = sorted({t for t, _, _ in args if t and t not in labels})
    if unknown:
        raise SpecError(f"--arg names cell(s) {', '.join(unknown)} that --cells does not have "
                        f"(cells: {', '.join(s.label for s in specs)}; name one with "
                        "--cells SPEC@LABEL)")
    out = []
    for spec in specs:
        kwargs = dict(spec.kwargs)
        kwargs.update({name: value for target, name, value in args
                       if not target or target == spec.label})
        if "units" in kwargs:
            raise SpecError("--arg units=...: every cell has --units units")
        ordered = tuple(sorted(kwargs.items()))
        label = spec.label if spec.named or not ordered else \
            f"{spec.label}({_kwargs_text(ordered)[2:]})"
        out.append(replace(spec, kwargs=ordered, label=label))
    return out


def _kwargs_text(kwargs, lead: str = ", ") -> str:
    return "".join(f"{lead if k == 0 else ', '}{name}={value!r}"
                   for k, (name, value) in enumerate(kwargs))


def parse_models(paths: list[str], imports: list[str], tag: str = "") -> list[ModelSpec]:
    for path in [*paths, *imports]:
        if not Path(path).is_file():
            raise SpecError(f"{path}: no such file")
    suffix = f"/{tag}" if tag else ""
    specs = [ModelSpec(Path(p).stem + suffix, Path(p), list(imports)) for p in paths]
    _check_unique([s.label for s in specs], "--models")
    return specs


def _parse_one(item: str) -> list[CellSpec]:
    spec_text, at, label = item.rpartition("@") if "@" in item else (item, "", "")
    if at:
        if not re.fullmatch(r"[A-Za-z0-9_.=+-]+", label):
            raise SpecError(f"--cells {item!r}: a label after @ uses letters, digits and _ . = + -")
        found = _parse_spec(spec_text.strip())
        if len(found) != 1:
            raise SpecError(f"--cells {item!r}: a label names one cell; {spec_text} has "
                            f"{len(found)}")
        return [replace(found[0], label=label, named=True)]
    return _parse_spec(item)


def _parse_spec(item: str) -> list[CellSpec]:
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
        raise SpecError(f"{option} names {', '.join(repeated)} more than once (give variants "
                        "of one class their own names: SPEC@LABEL)")
