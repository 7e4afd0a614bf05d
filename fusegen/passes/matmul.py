"""Matmul passes: the shapes that make a recurrent step cheap.

split_concat_matmuls   concat(x, h) @ W  ->  x @ W[:I] + h @ W[I:]   (so x @ W[:I] can be hoisted)
merge_shared_matmuls   x @ A, x @ B      ->  slices of x @ [A | B]   (one pass over x)
fuse_matmul_sums       x @ W + h @ U + b ->  matmul(h, U, acc=matmul(x, W, bias=b))
hoist_input_projection marks every matmul of the input: computed for a block of timesteps at
                       once, before the recurrent steps that read it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np

from fusegen.ir import Dim, Node, Op
from fusegen.ir.bound import BoundGraph
from fusegen.passes.rewrite import Builder, rewrite


def _plain_matmul(node: Node) -> bool:
    return node.op is Op.MATMUL and not node.attr("has_bias") and not node.attr("has_acc")


def split_concat_matmuls(bound: BoundGraph) -> BoundGraph:
    def rule(b: Builder, node: Node, _: int) -> int | None:
        concat = b.node(node.inputs[0]) if node.op is Op.MATMUL else None
        if concat is None or concat.op is not Op.CONCAT or not _plain_matmul(node):
            return None
        param, weight = b.param_of(node.inputs[1])
        total, row = None, 0
        for part in concat.inputs:
            depth = b.node(part).width
            rows = b.size(depth)
            w = b.new_param(param.name, (depth, param.shape[1]), weight[row:row + rows], node.loc)
            mm = b.emit(Op.MATMUL, (part, w), node.width, node.loc, has_bias=False, has_acc=False)
            total = mm if total is None else b.emit(Op.ADD, (total, mm), node.width, node.loc)
            row += rows
        return total

    return rewrite(bound, rule)


def merge_shared_matmuls(bound: BoundGraph) -> BoundGraph:
    groups: dict[int, list[int]] = defaultdict(list)
    for index, node in enumerate(bound.graph.nodes):
        if _plain_matmul(node):
            groups[node.inputs[0]].append(index)
    member_of = {i: tuple(g) for g in groups.values() if len(g) > 1 for i in g}
    merged: dict[tuple[int, ...], int] = {}
    offsets: dict[int, Dim] = {}

    def rule(b: Builder, node: Node, old: int) -> int | None:
        group = member_of.get(old)
        if group is None:
            return None
        if group not in merged:
            merged[group] = _merge(b, bound, group, node, offsets)
        return b.emit(Op.SLICE, (merged[group],), node.width, node.loc, start=offsets[old])

    return rewrite(bound, rule)


def _merge(b: Builder, bound: BoundGraph, group: tuple[int, ...], first: Node,
           offsets: dict[int, Dim]) -> int:
    """One matmul over the column-concatenation of the group's weights (weights are leaves,
    so every member's weight already exists in the builder)."""
    old_nodes = bound.graph.nodes
    params = [bound.graph.params[old_nodes[old_nodes[i].inputs[1]].attr("index")] for i in group]
    width = Dim()
    for i in group:
        offsets[i] = width
        width = width + old_nodes[i].width
    value = np.concatenate([bound.weights[p.name] for p in params], axis=1)
    name = "_".join(dict.fromkeys(p.name for p in params))
    w = b.new_param(name, (params[0].shape[0], width), value, first.loc)
    return b.emit(Op.MATMUL, (first.inputs[0], w), width, first.loc, has_bias=False, has_acc=False)


def fuse_matmul_sums(bound: BoundGraph) -> BoundGraph:
    users = bound.graph.users()

    def rule(b: Builder, node: Node, old: int) -> int | None:
        if node.op is not Op.ADD or _inner_add(bound, users, old):
            return None
        rest = _sum_leaves(b, node)
        mats = [j for j in rest if _plain_matmul(b.node(j)) and b.node(j).width == node.width]
        if not mats:
            return None
        for j in mats:
            rest.remove(j)
        bias = next((j for j in rest if _is_bias(b, j, node.width)), None)
        if bias is not None:
            rest.remove(bias)
        mats.sort(key=lambda j: b.node(b.node(j).inputs[0]).op is not Op.INPUT)
        total = None
        for j in mats:
            mm = b.node(j)
            with_bias = total is None and bias is not None
            extra = ((bias,) if with_bias else ()) + ((total,) if total is not None else ())
            total = b.emit(Op.MATMUL, mm.inputs + extra, mm.width, mm.loc,
                           has_bias=with_bias, has_acc=total is not None)
        for j in rest:
            total = b.emit(Op.ADD, (total, j), node.width, node.loc)
        return total

    return rewrite(bound, rule)


def _inner_add(bound: BoundGraph, users: dict[int, list[int]], index: int) -> bool:
    """An ADD whose only user is an ADD of the same width: its root handles it."""
    node = bound.graph.nodes[index]
    use = users[index]
    if len(use) != 1 or index in bound.graph.outputs:
        return False
    user = bound.graph.nodes[use[0]]
    return user.op is Op.ADD and user.width == node.width


def _sum_leaves(b: Builder, node: Node) -> list[int]:
    leaves: list[int] = []
    for j in node.inputs:
        child = b.node(j)
        if child.op is Op.ADD and child.width == node.width and j not in leaves:
            leaves += _sum_leaves(b, child)
        else:
            leaves.append(j)
    return leaves


def _is_bias(b: Builder, index: int, width: Dim) -> bool:
    node = b.node(index)
    return node.op is Op.PARAM and node.width == width and len(b.param_of(index)[0].shape) == 1


def hoist_input_projection(bound: BoundGraph) -> BoundGraph:
    nodes = bound.graph.nodes
    hoisted = frozenset(i for i, n in enumerate(nodes) if n.op is Op.MATMUL
                        and nodes[n.inputs[0]].op is Op.INPUT and not n.attr("has_acc"))
    return replace(bound, graph=replace(bound.graph, hoisted=hoisted))
