"""The Python API: the CLI's commands as functions (`fusegen.convert`, `fusegen.build`,
`fusegen.verify`, `fusegen.bench`, `fusegen.compare`), reached lazily through
`fusegen.__getattr__` so that `import fusegen` imports no TensorFlow.

Arguments mirror the command-line options (`--quantize int8` is `quantize="int8"`), and a
model, an array or a .tflite may be given as an object or as a path. Failures the user can fix
raise the CLI's errors (`fusegen.UserError` and its subclasses) with the CLI's one-line message.
TensorFlow's log lines and the libraries' warnings are hidden unless `verbose=True`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusegen import quiet
from fusegen.errors import UserError

PathLike = str | os.PathLike


class BenchError(UserError):
    """`fusegen.bench` failed: a build, the device or the outputs (the CLI's one line)."""


class CompareFailed(UserError):
    """`fusegen.compare` could not run, or some cells failed (the report lists them)."""


def _quietly(verbose: bool):
    return quiet.scoped(verbose)


def _array(value, name: str):
    import numpy as np

    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.is_file():
            raise UserError(f"{name} {path}: no such file")
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as err:
            raise UserError(f"{name} {path}: not a .npy array ({err})") from None
    return np.asarray(value)


def _model(model, imports: Sequence[PathLike]):
    """A keras.Model as given, or loaded from a .keras path with the `imports` files."""
    if isinstance(model, (str, os.PathLike)):
        from fusegen.frontend.keras_model import import_file, load_model

        return load_model(Path(model), [import_file(str(p)) for p in imports])
    import keras

    if not isinstance(model, keras.Model):
        raise UserError(f"expected a keras.Model or a .keras path, got {type(model).__name__}")
    for path in imports:  # the model's classes exist already; the files may register more
        from fusegen.frontend.keras_model import import_file

        import_file(str(path))
    return model


def _tflite(value) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    path = Path(value)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    return path.read_bytes()


# -- convert -----------------------------------------------------------------------------------
def convert(model, *, quantize: str = "float32", calibration=None, per_channel: bool = False,
            kernels: PathLike | None = None, prefix: str | None = None,
            imports: Sequence[PathLike] = (), out: PathLike | None = None,
            verbose: bool = False, length_input: bool = False) -> bytes:
    """`fusegen convert`: a keras.Model (or a .keras path) as a .tflite, returned as bytes.

    quantize: "float32" or "int8" (full integer: int8 input and output). calibration: with
    int8, N input samples like the deployment data (an array or a .npy path). per_channel: int8
    weights with one scale per output channel. kernels: also add the kernels the model needs
    to this directory (prefix: its C++ namespace, `--prefix`). imports: .py files defining the model's custom cells (for a path).
    out: also write the .tflite there. length_input: the file takes a scalar int32 input
    "length" after its data (`--length-input`): every fused op runs its first `length` steps.
    """
    from fusegen.commands.build import convert_keras

    if quantize not in ("float32", "int8"):
        raise UserError(f"quantize={quantize!r}: choose float32 or int8")
    if quantize == "int8" and calibration is None:
        raise UserError("quantize='int8' needs calibration= (input samples, an array or .npy)")
    if per_channel and quantize != "int8":
        raise UserError("per_channel is for quantize='int8'")
    with _quietly(verbose):
        keras_model = _model(model, imports)
        x = _array(calibration, "calibration") if quantize == "int8" else None
        result = convert_keras(keras_model, Path(out) if out is not None else None,
                               Path(kernels) if kernels is not None else None, x, per_channel,
                               prefix, length_input)
    return result.data


# -- build -------------------------------------------------------------------------------------
def build(cells, *, out: PathLike = "generated", cell: Sequence[str] = (),
          args: dict[str, Any] | None = None, dump_ir: PathLike | None = None,
          prefix: str | None = None, verbose: bool = False) -> list:
    """`fusegen build`: kernels for cells, written into `out`.

    cells: a cell class, a list of classes, a .py file (every cell class in it, or those named
    in `cell`), or "lstm" / "gru" / "simple_rnn". args: constructor arguments besides units
    (`--arg name=value`); prefix: the directory's C++ namespace (`--prefix`). Returns one
    BuiltKernel (class_name, op_name, params, states) per cell; if any cell fails, the good
    ones are still written and a UserError names every failed one.
    """
    from fusegen.commands.build import build_cells, cell_classes_from

    with _quietly(verbose):
        if isinstance(cells, type):
            classes = [cells]
        elif isinstance(cells, (str, os.PathLike)):
            classes = cell_classes_from(str(cells), list(cell))
        else:
            classes = list(cells)
            if not classes or not all(isinstance(c, type) for c in classes):
                raise UserError("cells: a cell class, a list of classes, a .py file or one of "
                                "lstm, gru, simple_rnn")
        built, failed = build_cells(classes, dict(args or {}), Path(out),
                                    str(dump_ir) if dump_ir is not None else None, prefix)
    if failed:
        raise UserError("; ".join(f"{f.class_name}: {f.error}" for f in failed))
    return built


# -- verify ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifyReport:
    """What `fusegen verify` prints, as data, judged by the same rule (fusegen/verdict.py).
    float32: one LayerCheck per fused layer (`layers`), each against Keras and, with Keras,
    against the layer in float64; passed when every layer is within its bound (or, with
    `tolerance`, every max_abs against Keras within it). int8: `int8` (errors against float
    Keras, in output steps of `int8.output_step`, and accuracies with labels), passed within
    `int8_bounds` (or, with `tolerance`, when the max abs error is within it)."""

    dtype: str  # "float32" or "int8"
    tolerance: float | None = None
    layers: list = field(default_factory=list)
    int8: Any = None
    bounds: Any = None  # verdict.FloatBounds (None: the defaults)
    int8_bounds: Any = None  # verdict.Int8Bounds (None: the defaults)

    def failures(self) -> list[str]:
        from fusegen.verdict import FloatBounds, Int8Bounds

        if self.dtype == "int8":
            r = self.int8
            if self.tolerance is not None:
                return [] if r.max_abs <= self.tolerance else [
                    f"max abs error {r.max_abs:.3e} > tolerance {self.tolerance:.1e}"]
            drop = None if r.keras_accuracy is None else r.keras_accuracy - r.int8_accuracy
            return (self.int8_bounds or Int8Bounds()).failures(
                r.mean_abs / r.output_step, r.max_abs / r.output_step, drop)
        bounds = self.bounds or FloatBounds()
        return [f"layer {row.layer}" for row in self.layers
                if not (row.max_abs <= self.tolerance if self.tolerance is not None
                        else row.passed(bounds))]

    @property
    def passed(self) -> bool:
        return not self.failures()

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def __str__(self) -> str:
        from fusegen.commands.verify import float_rule, float_table
        from fusegen.verdict import FloatBounds, Int8Bounds

        if self.dtype == "int8":
            r = self.int8
            lines = [f"int8 model against float Keras on {r.samples} samples: mean abs error "
                     f"{r.mean_abs:.3e} ({r.mean_abs / r.output_step:.2f} output steps), max "
                     f"{r.max_abs:.3e} ({r.max_abs / r.output_step:.1f} output steps of "
                     f"{r.output_step:.3e})"]
            if r.keras_accuracy is not None:
                lines.append(f"accuracy: Keras float {r.keras_accuracy:.4f}, int8 "
                             f"{r.int8_accuracy:.4f}")
            b = self.int8_bounds or Int8Bounds()
            rule = (f"tolerance {self.tolerance:.1e} (absolute, int8 against Keras)"
                    if self.tolerance is not None else
                    f"mean <= {b.mean_steps} and max <= {b.max_steps} output steps")
            failed = self.failures()
            return "\n".join(lines + [f"FAIL: {'; '.join(failed)}" if failed
                                      else f"PASS: {rule}"])
        b = self.bounds or FloatBounds()
        return "\n".join([float_table(self.layers, self.tolerance, b),
                          f"{self.verdict}: {float_rule(self.tolerance, b.factor, b.rel)}"])


def verify(tflite, model, *, inputs, lengths=None, imports: Sequence[PathLike] = (),
           tolerance: float | None = None, labels=None, verbose: bool = False) -> VerifyReport:
    """`fusegen verify`: a .tflite (bytes or path) against the Keras model (object or .keras
    path) it was converted from, on `inputs`: N samples (an array or a .npy path), or sequences
    of different lengths as `verify --inputs` takes them: a list (or object array, or a .npy of
    one) of N [L, F] arrays, or a padded [N, T, F] array with `lengths` (N ints, real steps
    first; an array or a .npy path). They are padded to the model's T with its own mask value
    (Masking, Embedding(mask_zero=True)); a --length-input file runs each sample's length.

    float32: every fused layer's C core with the weights stored in the file against the Keras
    layer and both against float64 (the rule: fusegen/verdict.py; `tolerance`: a plain max abs
    error against Keras instead); a --length-input file whole on the host against Keras on each
    sample's first `length` steps. int8: the whole file run on the host against float Keras,
    within verdict.Int8Bounds (or `tolerance`), with accuracies when `labels` are given.
    """
    import numpy as np

    from fusegen.commands.verify import (
        FloatVerifier,
        Int8Verifier,
        check_lengths_float,
        inputs_from_arrays,
    )
    from fusegen.converter.int8.chain import is_int8

    with _quietly(verbose):
        data = _tflite(tflite)
        source = "the .tflite" if isinstance(tflite, (bytes, bytearray)) else str(tflite)
        keras_model = _model(model, imports)
        raw = _sequences(inputs, "inputs")
        steps = None if lengths is None else np.asarray(_array(lengths, "lengths"))
        x, file_lengths = inputs_from_arrays(raw, steps, keras_model, data, source, "inputs",
                                             "lengths=")
        if is_int8(data, source):
            y = None if labels is None else np.asarray(_array(labels, "labels")).reshape(-1)
            if y is not None and len(y) != len(x):
                raise UserError(f"labels: {len(y)} labels for {len(x)} samples")
            check = Int8Verifier(keras_model, x, lengths=file_lengths).check(data, source, y)[0]
            return VerifyReport("int8", tolerance, int8=check)
        if file_lengths is not None:  # a --length-input file
            return VerifyReport("float32", tolerance, layers=[
                check_lengths_float(keras_model, data, x, file_lengths)])
        rows = FloatVerifier(keras_model, x).check(data, source)
        return VerifyReport("float32", tolerance, layers=rows)


def _sequences(value, name: str):
    """`inputs` as an array: a .npy path (object arrays through sequences.read_array, which
    rebuilds arrays and runs no code), a list of per-sample arrays (an object array when their
    lengths differ, or always when given as a list), or an array as given."""
    import numpy as np

    from fusegen.sequences import read_array

    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.is_file():
            raise UserError(f"{name} {path}: no such file")
        return read_array(path, name)
    if isinstance(value, (list, tuple)):
        seqs = np.empty(len(value), object)
        for k, s in enumerate(value):
            seqs[k] = np.asarray(s)
        return seqs
    return np.asarray(value)


# -- bench and compare: through their command lines ---------------------------------------------
def _options(values: dict[str, Any]) -> list[str]:
    """Keyword arguments as command-line options: tflm_include="a:b" -> --tflm-include a:b,
    flag=True -> --flag, a list -> the option repeated (nargs lists: values after it)."""
    argv = []
    for name, value in values.items():
        option = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(option)
        elif isinstance(value, (list, tuple)):
            argv += [option, *map(str, value)]
        else:
            argv += [option, str(value)]
    return argv


def _parse(add_arguments, argv: list[str], prog: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, exit_on_error=False)
    add_arguments(parser)
    try:
        return parser.parse_args(argv)
    except (argparse.ArgumentError, SystemExit) as err:
        raise UserError(f"{prog}: {err}") from None


def bench(tflite, *, kernels: PathLike | None = None, inputs, verbose: bool = False,
          **options) -> dict:
    """`fusegen bench` on a converted file: returns the numbers `--json` writes (flash, RAM,
    stack, instructions per inference...). tflite: bytes or a path; inputs: an array or a .npy
    path; options as the CLI's, by name (target="qemu-m4", port=..., opt="O2",
    tflm_include="a:b", tflm_lib=..., build_root=...). Progress is printed as the CLI prints it.
    """
    import numpy as np

    from fusegen.bench.cli import add_arguments, main

    with tempfile.TemporaryDirectory(prefix="fusegen_bench_") as tmp, _quietly(verbose):
        model = tflite if not isinstance(tflite, (bytes, bytearray)) else _write(
            Path(tmp) / "model.tflite", tflite)
        x = inputs if isinstance(inputs, (str, os.PathLike)) else _save(
            Path(tmp) / "inputs.npy", np.asarray(inputs))
        report = Path(tmp) / "report.json"
        argv = [str(model), "--inputs", str(x), "--json", str(report)]
        argv += ["--kernels", str(kernels)] if kernels is not None else []
        args = _parse(add_arguments, argv + _options(options), "fusegen bench")
        with _errors_on_stderr() as errors:
            status = main(args)
        if status != 0:
            raise BenchError(errors.text() or f"fusegen bench exited with status {status}")
        return json.loads(report.read_text())


def compare(*, out: PathLike = "report", verbose: bool = False, **options) -> list[dict]:
    """`fusegen compare`: trains, deploys and measures cells and writes the report into `out`
    (summary.md, summary.csv, the plots). Options as the CLI's, by name (cells="lstm,gru",
    dataset="japanese_vowels", units=32, epochs=30, quantize="float32,int8", target="host",
    subset=..., train=..., test=..., models=[...], imports=[...]). Returns summary.csv's rows
    as dicts; raises CompareFailed when cells failed (the report still lists every cell)."""
    import csv

    from fusegen.compare.cli import add_compare_parser
    from fusegen.compare.cli import run as run_compare

    imports = options.pop("imports", [])
    argv = ["compare", "--out", str(out)] + _options(options)
    for path in imports:
        argv += ["--import", str(path)]
    parser = argparse.ArgumentParser(prog="fusegen", exit_on_error=False)
    add_compare_parser(parser.add_subparsers())
    try:
        args = parser.parse_args(argv)
    except (argparse.ArgumentError, SystemExit) as err:
        raise UserError(f"fusegen compare: {err}") from None
    with _quietly(verbose):
        status = run_compare(args)
    with open(Path(out) / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if status != 0:
        # compare's own rule (compare/report.py, failed_cells): a fusegen row with an error
        # that is not "pending: ..." (a path not measured on this target)
        failed = sorted({r["cell"] for r in rows
                         if r.get("error") and not r["error"].startswith("pending")
                         and r.get("model", "fusegen") == "fusegen"})
        raise CompareFailed(f"cells failed: {', '.join(failed)} (see {out}/summary.md)")
    return rows


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(path: Path, x) -> Path:
    import numpy as np

    np.save(path, x)
    return path


class _Captured:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self.lines).strip().removeprefix("fusegen: error: ")


@contextlib.contextmanager
def _errors_on_stderr() -> Iterator[_Captured]:
    """bench's CLI prints its one-line error to sys.stderr; the API raises it instead."""
    import sys

    captured, saved = _Captured(), sys.stderr
    sys.stderr = captured
    try:
        yield captured
    finally:
        sys.stderr = saved
