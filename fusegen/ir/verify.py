"""The IR verifier, run after the frontend and after every pass."""

from __future__ import annotations

from fusegen.ir.dims import Dim
from fusegen.ir.graph import Graph, Node
from fusegen.ir.ops import BINARY, CMP, REDUCE_KINDS, UNARY, Op

SCALAR = Dim(0, 0, 1)


class IRError(ValueError):
    pass


def verify(graph: Graph) -> Graph:
    """Checks every structural invariant; returns the graph so calls can be chained."""
    for index, node in enumerate(graph.nodes):
        try:
            _check_node(graph, index, node)
        except IRError as err:
            raise IRError(f"%{index} {node.op.value} ({node.loc or 'no location'}): {err}") from None
    _check_outputs(graph)
    return graph


def _check_node(graph: Graph, index: int, node: Node) -> None:
    if any(not 0 <= j < index for j in node.inputs):
        raise IRError(f"inputs {node.inputs} are not earlier nodes")
    widths = [graph.nodes[j].width for j in node.inputs]
    check = _CHECKS.get(node.op)
    if check is None:
        raise IRError("no verifier rule for this op")
    check(graph, node, widths)


def _leaf(graph: Graph, node: Node, widths: list[Dim]) -> None:
    _expect(not widths, "a leaf takes no inputs")
    if node.op is Op.INPUT:
        _expect(node.width == Dim(0, 1, 0), "input width must be I")
    elif node.op is Op.STATE:
        _expect(node.width == graph.state_widths[node.attr("index")], "state width mismatch")
    elif node.op is Op.PARAM:
        param = graph.params[node.attr("index")]
        _expect(param.shape[-1] == node.width, f"param {param.name} does not end in {node.width}")
    else:
        _expect(node.width == SCALAR, "constants are scalars")
        float(node.attr("value"))


def _matmul(graph: Graph, node: Node, widths: list[Dim]) -> None:
    has_bias, has_acc = node.attr("has_bias"), node.attr("has_acc")
    _expect(len(widths) == 2 + has_bias + has_acc, "wrong number of matmul inputs")
    weight = graph.nodes[node.inputs[1]]
    _expect(weight.op is Op.PARAM, "matmul weight must be a param")
    depth, cols = graph.params[weight.attr("index")].shape
    _expect(widths[0] == depth, f"x width {widths[0]} != weight rows {depth}")
    _expect(node.width == cols, f"matmul width {node.width} != weight cols {cols}")
    _expect(all(w == cols for w in widths[2:]), "bias/acc width must equal matmul width")
    if has_bias:
        _expect(graph.nodes[node.inputs[2]].op is Op.PARAM, "matmul bias must be a param")


def _binary(graph: Graph, node: Node, widths: list[Dim]) -> None:
    _expect(len(widths) == 2, "binary ops take two inputs")
    _expect(not any(_is_matrix(graph, j) for j in node.inputs), "a matrix used elementwise")
    _expect(all(w in (node.width, SCALAR) for w in widths), f"operand widths {widths}")
    _expect(node.width in widths, "result width must be an operand width")


def _unary(graph: Graph, node: Node, widths: list[Dim]) -> None:
    _expect(widths == [node.width], "unary ops keep the width")
    if node.op is Op.CLIP:
        _expect(float(node.attr("lo")) <= float(node.attr("hi")), "clip needs lo <= hi")
    if node.op is Op.POW:
        _expect(isinstance(node.attr("exponent"), float), "pow needs a float exponent")


def _where(graph: Graph, node: Node, widths: list[Dim]) -> None:
    _expect(len(widths) == 4, "where takes (a, b, x, y)")
    _expect(not any(_is_matrix(graph, j) for j in node.inputs), "a matrix used elementwise")
    _expect(all(w in (node.width, SCALAR) for w in widths), f"operand widths {widths}")
    _expect(node.width in widths, "result width must be an operand width")
    _expect(node.attr("cmp") in CMP, f"unknown comparison {node.attr('cmp')!r}")


def _reduce(graph: Graph, node: Node, widths: list[Dim]) -> None:
    _expect(len(widths) == 1, "reduce takes one input")
    _expect(not _is_matrix(graph, node.inputs[0]), "a matrix reduced")
    _expect(node.width == SCALAR, "a reduction has width 1")
    _expect(node.attr("fn") in REDUCE_KINDS, f"unknown reduction {node.attr('fn')!r}")


def _slice(graph: Graph, node: Node, widths: list[Dim]) -> None:
    _expect(len(widths) == 1, "slice takes one input")
    start: Dim = node.attr("start")
    end = start + node.width
    ok = all(v >= 0 for v in (start.u, start.i, start.c)) and _fits(end, widths[0])
    _expect(ok, f"slice [{start}, {end}) outside width {widths[0]}")


def _concat(graph: Graph, node: Node, widths: list[Dim]) -> None:
    _expect(len(widths) >= 2, "concat takes at least two inputs")
    total = widths[0]
    for w in widths[1:]:
        total = total + w
    _expect(total == node.width, f"concat width {node.width} != sum {total}")


def _is_matrix(graph: Graph, index: int) -> bool:
    node = graph.nodes[index]
    return node.op is Op.PARAM and len(graph.params[node.attr("index")].shape) == 2


def _fits(end: Dim, width: Dim) -> bool:
    rest = width - end  # non-negative for every size >= 1
    return rest.u >= 0 and rest.i >= 0 and rest.u + rest.i + rest.c >= 0


def _check_outputs(graph: Graph) -> None:
    if len(graph.outputs) != 1 + len(graph.state_widths):
        raise IRError("outputs must be the cell output followed by one value per state")
    for k, (j, width) in enumerate(zip(graph.outputs[1:], graph.state_widths)):
        if graph.nodes[j].width != width:
            raise IRError(f"new state {k} has width {graph.nodes[j].width}, expected {width}")
    for j in graph.hoisted:
        if graph.nodes[j].op is not Op.MATMUL or graph.nodes[graph.nodes[j].inputs[0]].op is not Op.INPUT:
            raise IRError(f"%{j}: only matmuls of the input are hoisted")


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise IRError(message)


_CHECKS = {op: _leaf for op in (Op.INPUT, Op.STATE, Op.PARAM, Op.CONST)}
_CHECKS |= {op: _binary for op in BINARY} | {op: _unary for op in UNARY}
_CHECKS |= {Op.MATMUL: _matmul, Op.SLICE: _slice, Op.CONCAT: _concat, Op.WHERE: _where,
            Op.REDUCE: _reduce}
