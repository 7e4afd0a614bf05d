"""The one rewriting mechanism every pass uses.

`rewrite` walks the graph in order; a pass's rule sees each node with its inputs already
renumbered into the new graph and either returns None (keep the node) or the index of its
replacement, built with the `Builder`. Afterwards dead nodes and unused params are dropped and
identical nodes are shared (CSE), so rules never clean up after themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from fusegen.ir import Dim, Graph, Node, Op, Param, Weights
from fusegen.ir.bound import BoundGraph


class Builder:
    def __init__(self, bound: BoundGraph):
        self.source = bound
        self.nodes: list[Node] = []
        self.params: list[Param] = list(bound.graph.params)
        self.weights: Weights = dict(bound.weights)
        self._memo: dict[tuple, int] = {}

    def add(self, node: Node) -> int:
        key = (node.op, node.inputs, node.width, node.attrs)
        if key not in self._memo:
            self.nodes.append(node)
            self._memo[key] = len(self.nodes) - 1
        return self._memo[key]

    def node(self, index: int) -> Node:
        return self.nodes[index]

    def emit(self, op: Op, inputs: tuple[int, ...], width: Dim, loc: str = "", **attrs) -> int:
        return self.add(Node(op, inputs, width, tuple(sorted(attrs.items())), loc))

    def const(self, value: float, loc: str = "") -> int:
        return self.emit(Op.CONST, (), Dim(0, 0, 1), loc, value=float(value))

    def new_param(self, name: str, shape: tuple[Dim, ...], value: np.ndarray, loc: str = "") -> int:
        """Adds a param (a unique name) and returns a PARAM node reading it."""
        taken = {p.name for p in self.params}
        unique, k = name, 1
        while unique in taken:
            unique, k = f"{name}_{k}", k + 1
        self.params.append(Param(unique, shape))
        self.weights[unique] = np.ascontiguousarray(value, dtype=np.float32)
        return self.emit(Op.PARAM, (), shape[-1], loc, index=len(self.params) - 1)

    def param_of(self, index: int) -> tuple[Param, np.ndarray]:
        param = self.params[self.nodes[index].attr("index")]
        return param, self.weights[param.name]

    def size(self, dim: Dim) -> int:
        return dim(self.source.units, self.source.input_size)


Rule = Callable[[Builder, Node, int], int | None]


def rewrite(bound: BoundGraph, rule: Rule) -> BoundGraph:
    builder = Builder(bound)
    mapping: list[int] = []
    for old_index, node in enumerate(bound.graph.nodes):
        node = replace(node, inputs=tuple(mapping[j] for j in node.inputs))
        new = rule(builder, node, old_index)
        mapping.append(builder.add(node) if new is None else new)
    hoisted = frozenset(mapping[j] for j in bound.graph.hoisted)
    graph = Graph(bound.graph.name, tuple(builder.nodes), tuple(builder.params),
                  bound.graph.state_widths, tuple(mapping[j] for j in bound.graph.outputs), hoisted)
    return _drop_unused(BoundGraph(graph, builder.weights, bound.units, bound.input_size))


def _drop_unused(bound: BoundGraph) -> BoundGraph:
    graph = bound.graph
    live = set(graph.outputs)
    for index in range(len(graph.nodes) - 1, -1, -1):
        if index in live:
            live.update(graph.nodes[index].inputs)
    # Leaves keep their order at the top (readable dumps); params are renumbered by first use.
    order = [i for i in range(len(graph.nodes)) if i in live]
    used = [graph.nodes[i].attr("index") for i in order if graph.nodes[i].op is Op.PARAM]
    param_map = {old: new for new, old in enumerate(dict.fromkeys(used))}
    new_index = {old: new for new, old in enumerate(order)}
    nodes = []
    for i in order:
        node = graph.nodes[i]
        if node.op is Op.PARAM:
            node = node.with_attrs(index=param_map[node.attr("index")])
        nodes.append(replace(node, inputs=tuple(new_index[j] for j in node.inputs)))
    params = tuple(graph.params[old] for old in param_map)
    weights = {p.name: bound.weights[p.name] for p in params}
    graph = Graph(graph.name, tuple(nodes), params, graph.state_widths,
                  tuple(new_index[j] for j in graph.outputs),
                  frozenset(new_index[j] for j in graph.hoisted if j in new_index))
    return BoundGraph(graph, weights, bound.units, bound.input_size)
