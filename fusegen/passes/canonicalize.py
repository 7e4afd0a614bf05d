"""Canonical forms: fold identities, name activation patterns, simplify slices and concats.

Each rule returns the replacement node's index or None. The patterns are the exact forms Keras 3
traces to, so the fused op computes the same float32 arithmetic:
  hard_sigmoid(x) = relu6(x + 3) / 6;  silu(x) = x * sigmoid(1 * x);
  clip(x, lo, hi) = maximum(minimum(x, hi), lo).
"""

from __future__ import annotations

from fusegen.ir import Dim, Node, Op
from fusegen.ir.bound import BoundGraph
from fusegen.passes.rewrite import Builder, rewrite


def canonicalize(bound: BoundGraph) -> BoundGraph:
    return rewrite(bound, _rule)


def _rule(b: Builder, node: Node, _: int) -> int | None:
    for rule in (_identity, _hard_sigmoid, _silu, _clip, _slice, _concat_of_slices):
        new = rule(b, node)
        if new is not None:
            return new
    return None


def _const(b: Builder, index: int) -> float | None:
    node = b.node(index)
    return node.attr("value") if node.op is Op.CONST else None


def _identity(b: Builder, node: Node) -> int | None:
    """x * 1, 1 * x, x + 0, 0 + x, x - 0, x / 1 -> x (when x keeps the result's width)."""
    neutral = {Op.MUL: 1.0, Op.DIV: 1.0, Op.ADD: 0.0, Op.SUB: 0.0}.get(node.op)
    if neutral is None:
        return None
    a, c = node.inputs
    if _const(b, c) == neutral and b.node(a).width == node.width:
        return a
    if node.op in (Op.MUL, Op.ADD) and _const(b, a) == neutral and b.node(c).width == node.width:
        return c
    return None


def _hard_sigmoid(b: Builder, node: Node) -> int | None:
    if node.op is not Op.DIV or _const(b, node.inputs[1]) != 6.0:
        return None
    relu6 = b.node(node.inputs[0])
    if relu6.op is not Op.RELU6:
        return None
    add = b.node(relu6.inputs[0])
    if add.op is not Op.ADD or _const(b, add.inputs[1]) != 3.0:
        return None
    return b.emit(Op.HARD_SIGMOID, (add.inputs[0],), node.width, node.loc)


def _silu(b: Builder, node: Node) -> int | None:
    if node.op is not Op.MUL:
        return None
    for x, s in (node.inputs, node.inputs[::-1]):
        sig = b.node(s)
        if sig.op is Op.SIGMOID and sig.inputs[0] == x:
            return b.emit(Op.SILU, (x,), node.width, node.loc)
    return None


def _clip(b: Builder, node: Node) -> int | None:
    outer = {Op.MAXIMUM: Op.MINIMUM, Op.MINIMUM: Op.MAXIMUM}.get(node.op)
    if outer is None or _const(b, node.inputs[1]) is None:
        return None
    inner = b.node(node.inputs[0])
    if inner.op is not outer or _const(b, inner.inputs[1]) is None:
        return None
    bounds = (_const(b, node.inputs[1]), _const(b, inner.inputs[1]))
    lo, hi = bounds if node.op is Op.MAXIMUM else bounds[::-1]
    if lo > hi or inner.width != node.width:
        return None
    return b.emit(Op.CLIP, (inner.inputs[0],), node.width, node.loc, lo=lo, hi=hi)


def _slice(b: Builder, node: Node) -> int | None:
    if node.op is not Op.SLICE:
        return None
    start: Dim = node.attr("start")
    source = b.node(node.inputs[0])
    if start == Dim() and source.width == node.width:
        return node.inputs[0]
    if source.op is Op.SLICE:
        return b.emit(Op.SLICE, source.inputs, node.width, node.loc,
                      start=source.attr("start") + start)
    if source.op is Op.CONCAT:
        return _slice_of_concat(b, node, source, start)
    return None


def _slice_of_concat(b: Builder, node: Node, concat: Node, start: Dim) -> int | None:
    offset = Dim()
    for part in concat.inputs:
        width = b.node(part).width
        rel = start - offset
        inside = all(v >= 0 for v in (rel.u, rel.i, rel.c))
        if inside and _nonneg(width - rel - node.width):
            return b.emit(Op.SLICE, (part,), node.width, node.loc, start=rel)
        offset = offset + width
    return None


def _concat_of_slices(b: Builder, node: Node) -> int | None:
    """concat(slice(x, s, w1), slice(x, s + w1, w2), ...) -> slice(x, s, w1 + w2 + ...)."""
    if node.op is not Op.CONCAT:
        return None
    parts = [b.node(j) for j in node.inputs]
    if any(p.op is not Op.SLICE or p.inputs != parts[0].inputs for p in parts):
        return None
    start = parts[0].attr("start")
    expected = start
    for p in parts:
        if p.attr("start") != expected:
            return None
        expected = expected + p.width
    return b.emit(Op.SLICE, parts[0].inputs, node.width, node.loc, start=start)


def _nonneg(d: Dim) -> bool:
    return d.u >= 0 and d.i >= 0 and d.c >= 0
