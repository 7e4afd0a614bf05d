"""Trace one step of a Keras cell into the symbolic IR.

A cell is traced at the real size (for its weights) and at the sizes in `dims.TRACE_SIZES` (fresh
cells with random weights, for the shape formulas). All traces must give the same graph; every
width is then solved as `u*units + i*input_size + c`.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from dataclasses import replace

import keras
import numpy as np
import tensorflow as tf

from fusegen.errors import FrontendError
from fusegen.frontend.tf_graph import GraphReader
from fusegen.ir import Dim, Graph, Node, Param, Weights, verify
from fusegen.ir.dims import TRACE_SIZES, solve

CellFactory = Callable[[int], keras.layers.Layer]  # units -> an unbuilt cell


class TraceError(FrontendError):
    pass


def state_sizes(cell) -> list[int]:
    size = getattr(cell, "state_size", None)
    if size is None:
        raise TraceError(f"cell {type(cell).__name__} has no state_size attribute")
    sizes = [size] if isinstance(size, int) else list(size)
    if not all(isinstance(s, int) for s in sizes):
        raise TraceError(f"cell {type(cell).__name__}: nested state_size {size} is not supported")
    return sizes


def trace_concrete(cell, input_size: int) -> tuple[Graph, Weights]:
    """The IR of `cell` (built for `input_size` if needed) with concrete widths and its weights."""
    if not cell.built:
        cell.build((1, input_size))
    if cell.compute_dtype != "float32":
        raise TraceError(f"cell {type(cell).__name__} computes in {cell.compute_dtype}; "
                         "fusegen needs float32 cells (no mixed precision)")
    widths = state_sizes(cell)
    kwargs = {"training": False} if "training" in inspect.signature(cell.call).parameters else {}
    outputs: list[tf.Tensor] = []

    def step(x, *states):
        out, new_states = cell(x, list(states), **kwargs)
        new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
        outputs[:] = [out, *new_states]
        return outputs

    specs = [tf.TensorSpec([1, input_size], tf.float32)]
    specs += [tf.TensorSpec([1, w], tf.float32) for w in widths]
    try:
        wrapped = tf.compat.v1.wrap_function(step, specs)
    except TypeError as err:
        if "as a Python `bool`" not in str(err) and "OperatorNotAllowed" not in type(err).__name__:
            raise
        where = _user_frame(err, _source_file(cell))
        raise TraceError(f"{where}cell {type(cell).__name__} uses a tensor as a Python bool "
                         "(an `if`, `while`, `and`/`or` on a tensor): a fused kernel runs one "
                         "fixed graph; use ops.where(condition, a, b) instead") from None
    graph_outputs = [wrapped.graph.get_tensor_by_name(t.name) for t in outputs]
    reader = GraphReader(wrapped, type(cell).__name__, _source_file(cell), len(widths),
                         _variable_names(cell, wrapped))
    graph, weights = reader.read(graph_outputs, widths)
    return graph, weights  # widths are concrete here; the symbolic graph is verified


def _user_frame(err: BaseException, source: str | None) -> str:
    """"file.py:line: " of the innermost frame of the user's cell file in err's traceback."""
    import traceback

    if not source:
        return ""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if os.path.abspath(f.filename) == os.path.abspath(source)]
    return f"{os.path.basename(source)}:{frames[-1].lineno}: " if frames else ""


def trace_symbolic(make_cell: CellFactory) -> Graph:
    """The symbolic IR of the cells `make_cell` makes, from traces at TRACE_SIZES."""
    graphs = [trace_concrete(make_cell(units), input_size)[0] for units, input_size in TRACE_SIZES]
    return verify(_symbolize(graphs))


def trace(cell, input_size: int, make_cell: CellFactory) -> tuple[Graph, Weights]:
    """The symbolic IR of `cell` with its own weights; `make_cell` makes same-math cells."""
    concrete, weights = trace_concrete(cell, input_size)
    symbolic = trace_symbolic(make_cell)
    _check_same(symbolic, concrete, cell.units if hasattr(cell, "units") else None, input_size)
    # The same graph, so the same params in the same order: take the symbolic trace's names.
    return symbolic, {s.name: weights[c.name] for s, c in zip(symbolic.params, concrete.params,
                                                                strict=True)}


def _symbolize(graphs: list[Graph]) -> Graph:
    first = graphs[0]
    for g in graphs[1:]:
        if [(n.op, n.inputs) for n in g.nodes] != [(n.op, n.inputs) for n in first.nodes]:
            raise TraceError(f"cell {first.name}: its graph changes with units or input size; "
                             "fusegen needs the same ops at every size")
    nodes = tuple(_zip_node([g.nodes[k] for g in graphs], first.name)
                  for k in range(len(first.nodes)))
    params = tuple(Param(p.name, tuple(_solve([g.params[k].shape[d] for g in graphs], first.name)
                                       for d in range(len(p.shape))))
                   for k, p in enumerate(first.params))
    states = tuple(_solve([g.state_widths[k] for g in graphs], first.name)
                   for k in range(len(first.state_widths)))
    return Graph(first.name, nodes, params, states, first.outputs)


def _zip_node(versions: list[Node], cell_name: str) -> Node:
    first = versions[0]
    attrs = []
    for key, value in first.attrs:
        if isinstance(value, Dim):
            value = _solve([dict(v.attrs)[key] for v in versions], cell_name)
        elif any(dict(v.attrs)[key] != value for v in versions):
            raise TraceError(f"{first.loc}: cell {cell_name}: {first.op.value} {key} changes "
                             "with the size; fusegen needs it fixed")
        attrs.append((key, value))
    width = _solve([v.width for v in versions], cell_name)
    return replace(first, width=width, attrs=tuple(attrs))


def _solve(dims: list[Dim], cell_name: str) -> Dim:
    dim = solve(tuple(d.c for d in dims))
    if dim is None:
        raise TraceError(f"cell {cell_name}: a width {[d.c for d in dims]} at sizes "
                         f"{TRACE_SIZES} is not linear in units and input size")
    return dim


def _check_same(symbolic: Graph, concrete: Graph, units: int | None, input_size: int) -> None:
    same = [(n.op, n.inputs) for n in symbolic.nodes] == [(n.op, n.inputs) for n in concrete.nodes]
    if units is not None and same:
        same = all(s.width(units, input_size) == c.width.c
                   for s, c in zip(symbolic.nodes, concrete.nodes))
    if not same:
        raise TraceError(f"cell {symbolic.name}: the model's cell traces to a different graph "
                         "than fresh cells of the same configuration")


def _source_file(cell) -> str:
    try:
        return inspect.getsourcefile(type(cell)) or ""
    except TypeError:
        return ""


def _variable_names(cell, wrapped) -> dict[str, str]:
    """Resource placeholder op name -> the Keras variable's short name (for a weight made
    without a name, the cell attribute holding it: Keras numbers unnamed variables per session,
    which would make the op's name depend on what else the process built)."""
    by_handle = {id(v.value.handle): _weight_name(cell, k, v) for k, v in enumerate(cell.weights)
                 if hasattr(v.value, "handle")}
    names = {}
    for external, internal in wrapped.graph.captures:
        name = by_handle.get(id(external))
        if name is not None:
            names[internal.op.name] = name
    return names


_AUTO_NAME = re.compile(r"variable(_\d+)?")


def _weight_name(cell, index: int, variable) -> str:
    if not _AUTO_NAME.fullmatch(variable.name):
        return variable.name
    for attr, value in vars(cell).items():
        if value is variable and not attr.startswith("_"):
            return attr
    return f"weight{index}"


def random_weights(graph: Graph, units: int, input_size: int, seed: int = 0) -> Weights:
    """Non-zero random weights for every param at one size (tests and `fusegen build`)."""
    rng = np.random.default_rng(seed)
    return {p.name: rng.uniform(-0.5, 0.5, [d(units, input_size) for d in p.shape])
            .astype(np.float32) for p in graph.params}
