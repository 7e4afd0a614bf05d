"""Memory plan of a fused cell: which scratch slot holds each value during a step.

Widths are symbolic, so slots are too: a slot is reused only by a value of the same `Dim`,
after the previous value's last use (views made by SLICE keep their base alive). Hoisted
matmuls get a buffer of `chunk` rows each. States live in two banks (read one, write the other,
swap), so a cell may compute new states in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fusegen.ir import LEAVES, Dim, Graph, Op


@dataclass
class Plan:
    graph: Graph
    slot_widths: list[Dim] = field(default_factory=list)
    slot_of: dict[int, int] = field(default_factory=dict)  # computed node -> slot
    hoisted: list[int] = field(default_factory=list)  # hoisted nodes, in order
    step_nodes: list[int] = field(default_factory=list)  # nodes computed inside the time loop
    in_place: set[int] = field(default_factory=set)  # matmuls accumulating into their acc slot

    def root(self, index: int) -> int:
        """The node whose storage `index` views (itself unless it is a slice)."""
        node = self.graph.nodes[index]
        return self.root(node.inputs[0]) if node.op is Op.SLICE else index

    def state_offsets(self) -> list[Dim]:
        offsets, total = [], Dim()
        for width in self.graph.state_widths:
            offsets.append(total)
            total = total + width
        return offsets

    def state_total(self) -> Dim:
        total = Dim()
        for width in self.graph.state_widths:
            total = total + width
        return total


def make_plan(graph: Graph) -> Plan:
    plan = Plan(graph)
    plan.hoisted = sorted(graph.hoisted)
    plan.step_nodes = [i for i, n in enumerate(graph.nodes) if n.op not in LEAVES
                       and n.op is not Op.SLICE and i not in graph.hoisted]
    end = len(graph.nodes)
    last_use = _last_uses(plan, end)
    free: dict[Dim, list[int]] = {}
    for index in plan.step_nodes:
        _allocate(plan, index, last_use, free)
        for root in _roots_dying_at(plan, index, last_use):
            if root in plan.slot_of and plan.slot_of[root] != plan.slot_of[index]:
                free.setdefault(graph.nodes[root].width, []).append(plan.slot_of[root])
    return plan


def _last_uses(plan: Plan, end: int) -> dict[int, int]:
    last: dict[int, int] = {}
    for index, node in enumerate(plan.graph.nodes):
        for j in node.inputs:
            last[plan.root(j)] = index
    for j in plan.graph.outputs:
        last[plan.root(j)] = end
    return last


def _roots_dying_at(plan: Plan, index: int, last_use: dict[int, int]) -> list[int]:
    node = plan.graph.nodes[index]
    roots = dict.fromkeys(plan.root(j) for j in node.inputs)
    return [r for r in roots if last_use.get(r) == index]


def _allocate(plan: Plan, index: int, last_use: dict[int, int], free: dict[Dim, list[int]]) -> None:
    node = plan.graph.nodes[index]
    if node.op is Op.MATMUL and node.attr("has_acc"):
        acc = node.inputs[-1]
        if (acc in plan.slot_of and plan.root(acc) == acc and last_use.get(acc) == index
                and plan.graph.nodes[acc].width == node.width
                and all(plan.root(j) != acc for j in node.inputs[:-1])):
            plan.slot_of[index] = plan.slot_of[acc]  # accumulate in place: no copy
            plan.in_place.add(index)
            return
    pool = free.get(node.width)
    if pool:
        plan.slot_of[index] = pool.pop()
    else:
        plan.slot_widths.append(node.width)
        plan.slot_of[index] = len(plan.slot_widths) - 1
