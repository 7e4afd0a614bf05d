"""Fused elementwise tails: which consecutive elementwise statements of a step run as one loop.

After a step's matmuls, a cell is a chain of elementwise ops and lookup tables (LSTM: three
sigmoids, two tanh, three products and a sum). Run op by op, every op reads its operands from
memory and writes its result back, one pass over the units per op. Grouped, the chain is one loop
over the units: each operand is read once, values consumed inside the group stay in registers,
and only the values read after the group (by a later statement, or as the step's outputs and new
states) are stored.

This is a schedule decision, not a rewrite: the IR (and so the op's name and digest) is the same;
codegen asks `elementwise_groups` how to emit a step. Running every op of a group for unit i
before unit i + 1 computes the same values in the same order per unit, so the float32 results are
the same bits and the integer ones too (the numpy twins stay the specification).

A group is a maximal run of consecutive fusable statements of one width in which no member reads
another member's value through a slice other than the value itself (a group computes unit i of
each of its values, and a shifted view of a value would need another unit). Operands of width 1
are broadcast. Memory reads from the slots of values computed before the group are safe even
where the memory plan reuses a slot inside the group: a slot is reused only after its value's
last use, and a value read through a slice starting at s >= 0 is read at unit i + s no earlier
than the member that reuses the slot writes unit i + s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fusegen.ir import Dim, Graph, Op

SCALAR = Dim(0, 0, 1)


@dataclass(frozen=True)
class FusedGroup:
    """Positions (into the statement list) of one fused loop, its width and what it stores."""

    positions: tuple[int, ...]
    nodes: tuple[int, ...]  # the graph nodes computed, in order
    width: Dim
    stored: frozenset[int]  # members whose values are read after the group (or are outputs)


def root(graph: Graph, index: int) -> int:
    """The node whose storage `index` views (itself unless it is a slice)."""
    node = graph.nodes[index]
    return root(graph, node.inputs[0]) if node.op is Op.SLICE else index


def elementwise_groups(graph: Graph, statements: Sequence[int | None],
                       operands: Callable[[int], Sequence[int]] | None = None
                       ) -> list[FusedGroup]:
    """The fused groups of a step. `statements` lists the step in order: the graph node an
    elementwise statement computes, or None for any other statement (a matmul, a concat, an
    int8 narrowing), which ends a group. `operands(node)` gives the values a statement reads
    (default: the node's IR inputs; the int8 program reads a lookup table's source). Every node
    given must be elementwise: its operands of its own width or of width 1."""
    operands = operands or (lambda j: graph.nodes[j].inputs)
    groups: list[list[int]] = []
    members: set[int] = set()
    width: Dim | None = None
    for pos, node in enumerate(statements):
        if node is None:
            width = None
            continue
        w = graph.nodes[node].width
        joins = width == w and groups and all(
            j == root(graph, j) or root(graph, j) not in members for j in operands(node))
        if not joins:
            groups.append([])
            members = set()
            width = w
        groups[-1].append(pos)
        members.add(node)
    readers = _readers(graph, statements, operands)
    out = []
    for positions in groups:
        nodes = tuple(statements[p] for p in positions)
        first, last = positions[0], positions[-1]
        stored = frozenset(n for n in nodes
                           if any(r is None or not first <= r <= last for r in readers.get(n, ())))
        out.append(FusedGroup(tuple(positions), nodes, graph.nodes[nodes[0]].width, stored))
    return out


def _readers(graph: Graph, statements: Sequence[int | None],
             operands: Callable[[int], Sequence[int]]) -> dict[int, list[int | None]]:
    """Value -> the statement positions that read it (None: read outside the statements, by a
    graph output or a statement that is not elementwise)."""
    position = {node: p for p, node in enumerate(statements) if node is not None}
    readers: dict[int, list[int | None]] = {}
    for index, node in enumerate(graph.nodes):
        if node.op is Op.SLICE:
            continue
        inputs = operands(index) if index in position else node.inputs
        for j in inputs:
            readers.setdefault(root(graph, j), []).append(position.get(index))
    for j in graph.outputs:
        readers.setdefault(root(graph, j), []).append(None)
    return readers
