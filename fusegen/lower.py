"""The pipeline in one place: Keras cell -> traced IR -> passes -> named, bound op.

    frontend.trace  ->  passes.run_pipeline  ->  abi.op_name

`lower_cell` is what `fusegen build` runs for a cell class; converter.lowering.ModelLowering
calls it for every recurrent layer of a model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import keras

from fusegen.abi import class_token, op_name
from fusegen.frontend.trace import CellFactory, TraceError, random_weights, trace, trace_symbolic
from fusegen.ir import Graph
from fusegen.ir.bound import BoundGraph
from fusegen.ir.dims import TRACE_SIZES
from fusegen.passes import run_pipeline

Dump = Callable[[str, BoundGraph], None]


@dataclass(frozen=True)
class LoweredCell:
    op_name: str
    bound: BoundGraph  # after the passes, with the cell's own weights

    @property
    def graph(self) -> Graph:
        return self.bound.graph


def cell_factory(cell: keras.layers.Layer) -> CellFactory:
    """Fresh cells with `cell`'s configuration and another number of units."""
    config = cell.get_config()
    if "units" not in config:
        raise TraceError(f"cell {type(cell).__name__}: its get_config() has no 'units'; fusegen "
                         "needs cells constructed with a `units` argument")
    return lambda units: type(cell).from_config({**config, "units": units})


def class_factory(cls: type, kwargs: dict) -> CellFactory:
    """`cls(units=..., **kwargs)`; a class that cannot be made that way is a TraceError."""
    def make(units: int):
        try:
            return cls(units=units, **kwargs)
        except (TypeError, ValueError) as err:
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TraceError(f"cell {cls.__name__}({', '.join(['units', *kwargs])}) cannot be "
                             f"constructed ({text}); fusegen makes cells as "
                             "Cell(units=N, ...): give the class a `units` argument, other "
                             "arguments with --arg NAME=VALUE") from None
    return make


def lower_cell(make_cell: CellFactory, cell: keras.layers.Layer | None = None,
               input_size: int | None = None, dump: Dump | None = None) -> LoweredCell:
    """Lowers `cell` (or, for a kernel only, a fresh one with random weights)."""
    if cell is None:
        units, input_size = TRACE_SIZES[0]
        cell = make_cell(units)
    if not isinstance(getattr(cell, "units", None), int):
        raise TraceError(f"cell {type(cell).__name__} has no integer `units` attribute")
    graph, weights = trace(cell, input_size, make_cell)
    bound = run_pipeline(BoundGraph(graph, weights, cell.units, input_size), dump)
    return LoweredCell(op_name(type(cell).__name__, bound.graph, _name_owner_graph(type(cell))),
                       bound)


def _name_owner_graph(cls: type) -> Graph | None:
    """The graph that owns the digest-free op name of `cls`: its own defaults' math, unless a
    Keras built-in cell has the same name token (a user `GRUCell`): then the built-in's math, so
    a user class never takes (and overwrites) the built-in's kernel name."""
    for builtin in (keras.layers.LSTMCell, keras.layers.GRUCell, keras.layers.SimpleRNNCell):
        if cls is not builtin and class_token(cls.__name__) == class_token(builtin.__name__):
            return _default_graph(builtin)
    return _default_graph(cls)


@functools.lru_cache(maxsize=None)
def _default_graph(cls: type) -> Graph | None:
    """The post-pass graph of `cls(units=...)` with every other argument at its default."""
    try:
        graph = trace_symbolic(lambda units: cls(units=units))
    except (TypeError, ValueError):
        return None
    units, input_size = TRACE_SIZES[0]
    weights = random_weights(graph, units, input_size)
    return run_pipeline(BoundGraph(graph, weights, units, input_size)).graph


