"""The IR of one recurrent cell step: a frozen SSA list of vector ops.

A `Graph` describes `output, new_states = cell(x_t, states)` for batch 1. Nodes refer to earlier
nodes by index. Weights are `Param`s with symbolic shapes; their values live beside the graph in
a `Weights` mapping (one concrete size), so passes can rewrite both together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fusegen.ir.dims import Dim
from fusegen.ir.ops import Op


@dataclass(frozen=True)
class Node:
    op: Op
    inputs: tuple[int, ...]
    width: Dim
    attrs: tuple[tuple[str, Any], ...] = ()
    loc: str = ""  # "file.py:line" in the user's cell, for error messages

    def attr(self, key: str) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        raise KeyError(f"{self.op.value} node has no attribute {key!r}")

    def with_attrs(self, **changes: Any) -> Node:
        merged = dict(self.attrs) | changes
        return replace(self, attrs=tuple(sorted(merged.items())))


@dataclass(frozen=True)
class Param:
    name: str  # C-identifier-friendly
    shape: tuple[Dim, ...]  # (K, N) for a matmul weight, (N,) for a vector


@dataclass(frozen=True)
class Graph:
    name: str  # the cell class name
    nodes: tuple[Node, ...]
    params: tuple[Param, ...]
    state_widths: tuple[Dim, ...]
    outputs: tuple[int, ...]  # (cell output, new state 0, new state 1, ...)
    hoisted: frozenset[int] = field(default_factory=frozenset)  # computed before the time loop

    @property
    def output_width(self) -> Dim:
        return self.nodes[self.outputs[0]].width

    def users(self) -> dict[int, list[int]]:
        table: dict[int, list[int]] = {i: [] for i in range(len(self.nodes))}
        for i, node in enumerate(self.nodes):
            for j in node.inputs:
                table[j].append(i)
        return table

    def text(self) -> str:
        """A readable dump, stable across runs: what the passes are diffed and digested by."""
        lines = [f"cell {self.name}"]
        lines += [f"  param {i} {p.name}: ({', '.join(map(str, p.shape))})"
                  for i, p in enumerate(self.params)]
        lines += [f"  state {i}: {w}" for i, w in enumerate(self.state_widths)]
        for i, n in enumerate(self.nodes):
            args = ", ".join(f"%{j}" for j in n.inputs)
            attrs = "".join(f" {k}={v}" for k, v in n.attrs)
            pre = " [hoisted]" if i in self.hoisted else ""
            lines.append(f"  %{i} = {n.op.value}({args}){attrs} : {n.width}{pre}")
        lines.append("  return " + ", ".join(f"%{j}" for j in self.outputs))
        return "\n".join(lines)

    def digest(self) -> str:
        """A short stable hash of the math (not the weights, not the source locations)."""
        return hashlib.sha256(self.text().encode()).hexdigest()[:8]


Weights = dict[str, np.ndarray]  # Param.name -> float32 value at one concrete size
