"""A graph together with concrete weights at one size: what passes rewrite and kernels run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusegen.ir.graph import Graph, Weights


@dataclass(frozen=True)
class BoundGraph:
    graph: Graph
    weights: Weights
    units: int
    input_size: int

    def param_values(self) -> list[np.ndarray]:
        """The weights in param order, each checked against its symbolic shape."""
        values = []
        for p in self.graph.params:
            value = self.weights[p.name]
            expected = tuple(d(self.units, self.input_size) for d in p.shape)
            if value.shape != expected:
                raise ValueError(f"weight {p.name} has shape {value.shape}, expected {expected}")
            values.append(value)
        return values

    def width(self, index: int) -> int:
        return self.graph.nodes[index].width(self.units, self.input_size)
