"""The float32 numpy twin: the specification of every generated float kernel.

Arithmetic is float32 throughout, in the order the C runtime uses (matmul: bias, then the dot
product; an accumulated matmul adds the dot product to the accumulator input).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fusegen.ir import Op
from fusegen.ir.bound import BoundGraph

F32 = np.float32


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (F32(1) / (F32(1) + np.exp(-x))).astype(F32)


UNARY: dict[Op, Callable[[np.ndarray], np.ndarray]] = {
    Op.NEG: np.negative,
    Op.SIGMOID: _sigmoid,
    Op.HARD_SIGMOID: lambda x: np.minimum(np.maximum(x + F32(3), F32(0)), F32(6)) / F32(6),
    Op.TANH: np.tanh,
    Op.RELU: lambda x: np.maximum(x, F32(0)),
    Op.RELU6: lambda x: np.minimum(np.maximum(x, F32(0)), F32(6)),
    Op.SOFTSIGN: lambda x: x / (F32(1) + np.abs(x)),
    Op.SILU: lambda x: x * _sigmoid(x),
    Op.EXP: np.exp,
}
BINARY: dict[Op, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    Op.ADD: np.add, Op.SUB: np.subtract, Op.MUL: np.multiply, Op.DIV: np.divide,
    Op.MAXIMUM: np.maximum, Op.MINIMUM: np.minimum,
}


def step(bound: BoundGraph, x: np.ndarray, states: list[np.ndarray],
         hoisted: dict[int, np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """One cell step on vectors; returns (output, new_states)."""
    graph, params = bound.graph, bound.param_values()
    values: list[np.ndarray] = []
    for index, node in enumerate(graph.nodes):
        if hoisted is not None and index in hoisted:
            values.append(hoisted[index])
            continue
        args = [values[j] for j in node.inputs]
        values.append(_eval(bound, node, args, x, states, params).astype(F32, copy=False))
    outs = [values[j] for j in graph.outputs]
    return outs[0], outs[1:]


def _eval(bound, node, args, x, states, params) -> np.ndarray:
    op = node.op
    if op is Op.INPUT:
        return x
    if op is Op.STATE:
        return states[node.attr("index")]
    if op is Op.PARAM:
        return params[node.attr("index")]
    if op is Op.CONST:
        return np.array([node.attr("value")], F32)
    if op is Op.MATMUL:
        return _matmul(node, args)
    if op in UNARY:
        return UNARY[op](args[0])
    if op is Op.CLIP:
        return np.minimum(np.maximum(args[0], F32(node.attr("lo"))), F32(node.attr("hi")))
    if op in BINARY:
        return BINARY[op](args[0], args[1])
    if op is Op.SLICE:
        start = node.attr("start")(bound.units, bound.input_size)
        return args[0][start:start + node.width(bound.units, bound.input_size)]
    if op is Op.CONCAT:
        return np.concatenate(args)
    raise NotImplementedError(f"no float reference for {op.value}")


def _matmul(node, args) -> np.ndarray:
    x, w, *rest = args
    out = (x @ w).astype(F32)
    if node.attr("has_bias"):
        out = (rest.pop(0) + out).astype(F32)
    if node.attr("has_acc"):
        out = (rest.pop(0) + out).astype(F32)
    return out


def run(bound: BoundGraph, x: np.ndarray, init_states: list[np.ndarray] | None = None,
        return_sequences: bool = False, go_backwards: bool = False
        ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The whole layer on one sequence x [T, I]: outputs [T, W] or [W], and the final states."""
    u, i = bound.units, bound.input_size
    states = [np.zeros(w(u, i), F32) if init_states is None else init_states[k].astype(F32)
              for k, w in enumerate(bound.graph.state_widths)]
    order = range(x.shape[0] - 1, -1, -1) if go_backwards else range(x.shape[0])
    outputs = []
    for t in order:
        out, states = step(bound, x[t].astype(F32), states)
        outputs.append(out)
    return (np.stack(outputs) if return_sequences else outputs[-1]), states
