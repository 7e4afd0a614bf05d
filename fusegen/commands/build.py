"""What `fusegen build` and `fusegen convert` do, as functions (the CLI only parses and prints)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from fusegen.codegen import kernel_files, package_contents, write_package
from fusegen.codegen.render import write
from fusegen.errors import UserError
from fusegen.fileio import Staged, check_writable, load_npy
from fusegen.frontend.keras_model import (
    ModelError,
    cell_classes,
    check_batch,
    check_io,
    import_file,
    load_model,
    recurrent_layers,
)
from fusegen.ir import Graph
from fusegen.ir.bound import BoundGraph
from fusegen.lower import class_factory, lower_cell
from fusegen.converter.lowering import ModelLowering

BUILTIN_CELLS = {"lstm": keras.layers.LSTMCell, "gru": keras.layers.GRUCell,
                 "simple_rnn": keras.layers.SimpleRNNCell, "simplernn": keras.layers.SimpleRNNCell}


@dataclass(frozen=True)
class BuiltKernel:
    class_name: str
    op_name: str
    params: int
    states: int


def cell_classes_from(source: str, only: list[str]) -> list[type]:
    """Cell classes of a file (or one built-in cell by name), filtered by class name."""
    if source.lower() in BUILTIN_CELLS:
        return [BUILTIN_CELLS[source.lower()]]
    if not source.endswith(".py"):
        raise ModelError(f"{source}: expected a .py file or one of {', '.join(BUILTIN_CELLS)}")
    module = import_file(source)
    classes = cell_classes(module)
    if not classes:
        raise ModelError(f"{source} defines no cell class (a keras.layers.Layer subclass whose "
                         "call(inputs, states) takes `states`)")
    if only:
        unknown = set(only) - {c.__name__ for c in classes}
        if unknown:
            raise ModelError(f"{source} has no cell class {', '.join(sorted(unknown))}; it has "
                             f"{', '.join(c.__name__ for c in classes)}")
        classes = [c for c in classes if c.__name__ in only]
    return classes


@dataclass(frozen=True)
class FailedCell:
    class_name: str
    error: str  # one line


def build_cells(classes: list[type], kwargs: dict, out: Path, dump_dir: str | None = None,
                prefix: str | None = None) -> tuple[list[BuiltKernel], list[FailedCell]]:
    """Builds every cell it can, adding them to `out`; the ones it cannot come back with their
    one-line error (the good ones are still written)."""
    ops: dict[str, Graph] = {}
    built, failed = [], []
    for cls in classes:
        try:
            lowered = lower_cell(class_factory(cls, kwargs), dump=_dumper(dump_dir, cls.__name__))
        except UserError as err:
            failed.append(FailedCell(cls.__name__, str(err)))
            continue
        ops[lowered.op_name] = lowered.graph
        built.append(BuiltKernel(cls.__name__, lowered.op_name, len(lowered.graph.params),
                                 len(lowered.graph.state_widths)))
    if ops:
        write_package(ops, out, prefix=prefix)
    return built, failed


def _dumper(dump_dir: str | None, name: str):
    if dump_dir is None:
        return None

    def dump(stage: str, bound: BoundGraph) -> None:
        write({f"{name}.{stage}.txt": bound.graph.text() + "\n"}, Path(dump_dir))

    return dump


@dataclass(frozen=True)
class Converted:
    layers: list[tuple[str, str]]  # (layer name, op name)
    ops: dict[str, Graph]
    size: int
    weight_bytes: int
    data: bytes = b""  # the .tflite


def convert_model(model_path: Path, imports: list[str], out: Path, kernels: Path | None,
                  calibration: Path | None = None, per_channel: bool = False,
                  prefix: str | None = None, length_input: bool = False) -> Converted:
    """Float32, or full int8 when calibration data (an .npy of input samples) is given."""
    check_writable(out, "-o")
    modules = [import_file(path) for path in imports]
    model = load_model(model_path, modules)
    x = None if calibration is None else load_npy(calibration, "--calibration")
    return convert_keras(model, out, kernels, x, per_channel, prefix, length_input)


def convert_keras(model: keras.Model, out: Path | None, kernels: Path | None,
                  calibration: np.ndarray | None = None, per_channel: bool = False,
                  prefix: str | None = None, length_input: bool = False) -> Converted:
    """A model object: float32, or full int8 when calibration samples are given; the .tflite
    is written to `out` (None: only returned, in Converted.data) and the kernels are added to
    `kernels` (its C++ namespace `prefix`, default the directory's). length_input: the file
    takes a scalar int32 "length" as its last input (converter/length_input.py)."""
    from fusegen.converter.model import convert, float_weight_bytes

    if kernels is not None and kernels.exists() and not kernels.is_dir():
        raise UserError(f"--kernels {kernels} is a file; give a directory")
    check_io(model)
    check_batch(model)
    recurrent_layers(model)  # fails early, with a clear message, on what cannot be fused
    if calibration is None:
        lowering = ModelLowering()
        data, ops, dtypes = convert(model, lowering.lower_layer), lowering.ops, ("f32",)
        layers = [(name, " + ".join(low.op_name for low in lows))
                  for name, lows in lowering.layers.items()]
    else:
        data, ops, layers = _convert_int8(model, calibration, per_channel)
        dtypes = ("s8",)
    from fusegen.converter.tflm_ops import check_mask_sources, select_for_tflm
    data = select_for_tflm(data)  # TFLM has SELECT_V2 only (Embedding's id wrap is a SELECT)
    if length_input:
        from fusegen.converter.length_input import add_length_input
        data = add_length_input(data)
    check_mask_sources(data, layers)  # after --length-input, which replaces the mask sources
    # Everything is computed before anything is written: a failure leaves the user's files as
    # they were, and each file is replaced atomically.
    staged = Staged()
    if kernels is not None:
        for path, content in _kernels_or_error(lambda: package_contents(ops, kernels, dtypes,
                                                                        prefix), ops).items():
            staged.add(path, content)
    else:  # no file a kernel cannot run: the kernels are made (in memory) even when not kept
        for name, graph in ops.items():
            _kernels_or_error(lambda: kernel_files(graph, name, dtypes), {name: graph})
    if out is not None:
        staged.add(out, data)
    staged.commit()
    return Converted(layers, dict(ops), len(data), float_weight_bytes(model), data)


class KernelError(UserError):
    """A cell that converts but for which codegen cannot make a kernel."""


def _kernels_or_error(make, ops: dict[str, Graph]):
    try:
        return make()
    except (ValueError, NotImplementedError) as err:
        if isinstance(err, UserError):
            raise
        cells = ", ".join(f"{g.name} ({name})" for name, g in ops.items())
        raise KernelError(f"no kernel can be made for {cells}: {err}; nothing was written")\
            from None


def _convert_int8(model, x: np.ndarray, per_channel: bool):
    from fusegen.converter.int8 import convert_int8
    from fusegen.converter.int8.chain import FusedPart
    from fusegen.converter.validate import check_calibrated_ranges

    data, pipeline = convert_int8(model, x, per_channel)
    check_calibrated_ranges(data)
    layers = [(p.layer.name, " + ".join(c.lowered.op_name for c in p.calls))
              for p in pipeline.parts if isinstance(p, FusedPart)]
    return data, pipeline.ops, layers
