"""What `fusegen build` and `fusegen convert` do, as functions (the CLI only parses and prints)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from fusegen.codegen import write_package
from fusegen.codegen.render import write
from fusegen.frontend.keras_model import (ModelError, cell_classes, check_batch, import_file,
                                          load_model, recurrent_layers)
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


def build_cells(classes: list[type], kwargs: dict, out: Path,
                dump_dir: str | None = None, prefix: str | None = None) -> list[BuiltKernel]:
    ops: dict[str, Graph] = {}
    built = []
    for cls in classes:
        lowered = lower_cell(class_factory(cls, kwargs), dump=_dumper(dump_dir, cls.__name__))
        ops[lowered.op_name] = lowered.graph
        built.append(BuiltKernel(cls.__name__, lowered.op_name, len(lowered.graph.params),
                                 len(lowered.graph.state_widths)))
    write_package(ops, out, prefix=prefix)
    return built


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


def convert_model(model_path: Path, imports: list[str], out: Path, kernels: Path | None,
                  calibration: Path | None = None, prefix: str | None = None) -> Converted:
    """Float32, or full int8 when calibration data (an .npy of input samples) is given."""
    from fusegen.converter.model import convert, float_weight_bytes

    modules = [import_file(path) for path in imports]
    model = load_model(model_path, modules)
    check_batch(model)
    recurrent_layers(model)  # fails early, with a clear message, on what cannot be fused
    if calibration is None:
        lowering = ModelLowering()
        data, ops, dtypes = convert(model, lowering.lower_layer), lowering.ops, ("f32",)
        layers = [(name, " + ".join(low.op_name for low in lows))
                  for name, lows in lowering.layers.items()]
    else:
        data, ops, layers = _convert_int8(model, calibration)
        dtypes = ("s8",)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    if kernels is not None:
        write_package(ops, kernels, dtypes, prefix)
    return Converted(layers, dict(ops), len(data), float_weight_bytes(model))


def _convert_int8(model, calibration: Path):
    from fusegen.converter.int8 import convert_int8
    from fusegen.converter.int8.chain import FusedPart

    if not calibration.is_file():
        raise ModelError(f"--calibration {calibration}: no such file")
    try:
        x = np.load(calibration, allow_pickle=False)
    except ValueError as err:
        raise ModelError(f"--calibration {calibration}: not a .npy array ({err})") from None
    data, pipeline = convert_int8(model, x)
    layers = [(p.layer.name, " + ".join(c.lowered.op_name for c in p.calls))
              for p in pipeline.parts if isinstance(p, FusedPart)]
    return data, pipeline.ops, layers
