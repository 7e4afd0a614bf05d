"""Calibration: the range of every IR value over sample sequences, from the float twin.

The float twin's step is replayed over calibration data [N, T, I], all N sequences at once (a
batch axis in front of every value), recording each node's min and max over every sequence and
timestep, as NNoM does for its RNN cells. Elementwise ops are the float twin's own functions
(reference/float_interp.NUMPY); only the shape ops and the matmul are restated here for a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusegen.ir import Op
from fusegen.ir.bound import BoundGraph
from fusegen.reference.float_interp import NUMPY, libm_sigmoid

# Calibration measures ranges with libm's sigmoid and tanh (as it did before the float32
# runtime's own fast forms, fg_elementwise.h, became the float twin's): the int8 scales, and so
# every int8 model, do not depend on the float kernel's last bits.
_UNARY = {**NUMPY.unary, Op.SIGMOID: libm_sigmoid, Op.TANH: np.tanh,
          Op.SILU: lambda x: x * libm_sigmoid(x)}

F32 = np.float32
# Fewer cell steps (N * T) than this and the ranges say little about deployment: refused.
MIN_CALIBRATION_STEPS = 32


@dataclass(frozen=True)
class Ranges:
    lo: np.ndarray  # float64 [nodes]: min of each node's value
    hi: np.ndarray
    steps: int  # cell steps observed (N * T)

    def max_abs(self, index: int) -> float:
        return float(max(abs(self.lo[index]), abs(self.hi[index])))


def check_calibration_data(bound: BoundGraph, x: np.ndarray) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise ValueError(f"calibration data must be a numpy array, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"calibration data must be floating point, got {x.dtype}")
    if x.ndim != 3 or x.shape[2] != bound.input_size:
        raise ValueError(f"calibration data must be [N, T, {bound.input_size}] (sequences, "
                         f"timesteps, features), got shape {x.shape}")
    if x.shape[0] * x.shape[1] < MIN_CALIBRATION_STEPS:
        raise ValueError(f"calibration data has {x.shape[0] * x.shape[1]} cell steps (N * T); "
                         f"at least {MIN_CALIBRATION_STEPS} are needed")
    if not np.all(np.isfinite(x)):
        raise ValueError("calibration data contains NaN or infinity")
    return x.astype(F32)


def calibrate(bound: BoundGraph, x: np.ndarray,
              initial_states: list[np.ndarray] | None = None) -> Ranges:
    """Min and max of every node's value over x [N, T, I], from `initial_states` (one [N, width]
    array per state) or zero states."""
    x = check_calibration_data(bound, x)
    graph = bound.graph
    count = len(graph.nodes)
    lo, hi = np.full(count, np.inf), np.full(count, -np.inf)
    sizes = (bound.units, bound.input_size)
    params = bound.param_values()
    states = [np.zeros((x.shape[0], w(*sizes)), F32) for w in graph.state_widths]
    if initial_states is not None:
        states = _check_states(initial_states, states)
    for t in range(x.shape[1]):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked below
            values = _step(bound, params, x[:, t], states)
        for index, value in enumerate(values):
            if not np.all(np.isfinite(value)):
                node = graph.nodes[index]
                raise ValueError(f"calibration: %{index} {node.op.value} "
                                 f"({node.loc or 'no location'}) is not finite at timestep {t}")
            lo[index] = min(lo[index], float(value.min()))
            hi[index] = max(hi[index], float(value.max()))
        states = [values[j] for j in graph.outputs[1:]]
    return Ranges(lo, hi, x.shape[0] * x.shape[1])


def run_batch(bound: BoundGraph, x: np.ndarray, return_sequences: bool = False,
              go_backwards: bool = False) -> np.ndarray:
    """The float twin on a batch of sequences x [N, T, I] from zero states, all N at once:
    y [N, T, W] or [N, W] (the inputs of the next fused op when calibrating a stack)."""
    graph = bound.graph
    sizes = (bound.units, bound.input_size)
    params = bound.param_values()
    x = np.asarray(x, F32)
    states = [np.zeros((x.shape[0], w(*sizes)), F32) for w in graph.state_widths]
    order = range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])
    ys = []
    for t in order:
        values = _step(bound, params, x[:, t], states)
        ys.append(np.broadcast_to(values[graph.outputs[0]], (x.shape[0], bound.width(
            graph.outputs[0]))))
        states = [values[j] for j in graph.outputs[1:]]
    return np.stack(ys, axis=1) if return_sequences else ys[-1]


def _step(bound: BoundGraph, params: list[np.ndarray], x: np.ndarray,
          states: list[np.ndarray]) -> list[np.ndarray]:
    """Every node's value for a batch: [N, width] (params and constants broadcast)."""
    sizes = (bound.units, bound.input_size)
    values: list[np.ndarray] = []
    for node in bound.graph.nodes:
        args = [values[j] for j in node.inputs]
        op = node.op
        if op is Op.INPUT:
            out = x
        elif op is Op.STATE:
            out = states[node.attr("index")]
        elif op is Op.PARAM:
            out = params[node.attr("index")]
        elif op is Op.CONST:
            out = NUMPY.const(node.attr("value"))
        elif op is Op.MATMUL:
            out = (args[0] @ args[1]).astype(F32)
            for extra in args[2:]:
                out = extra + out
        elif op is Op.CLIP:
            out = NUMPY.clip(args[0], node.attr("lo"), node.attr("hi"))
        elif op is Op.POW:
            out = NUMPY.power(args[0], node.attr("exponent"))
        elif op is Op.WHERE:
            out = NUMPY.where(node.attr("cmp"), *args)
        elif op is Op.REDUCE:
            out = NUMPY.reduce(node.attr("fn"), args[0])
        elif op in _UNARY:
            out = _UNARY[op](args[0])
        elif op in NUMPY.binary:
            out = NUMPY.binary[op](args[0], args[1])
        elif op is Op.SLICE:
            start = node.attr("start")(*sizes)
            out = args[0][..., start:start + node.width(*sizes)]
        elif op is Op.CONCAT:
            batch = max(a.shape[0] for a in args if a.ndim == 2)
            out = np.concatenate([np.broadcast_to(a, (batch, a.shape[-1])) for a in args], -1)
        else:
            raise NotImplementedError(f"calibration: no rule for {op.value}")
        values.append(np.asarray(out, F32))
    return values


def _check_states(given: list[np.ndarray], zeros: list[np.ndarray]) -> list[np.ndarray]:
    if len(given) != len(zeros):
        raise ValueError(f"calibration states: the cell has {len(zeros)} states, got {len(given)}")
    states = []
    for k, (state, zero) in enumerate(zip(given, zeros)):
        state = np.asarray(state, F32)
        if state.shape != zero.shape:
            raise ValueError(f"calibration state {k} must be {list(zero.shape)} (sequences, "
                             f"width), got {list(state.shape)}")
        if not np.all(np.isfinite(state)):
            raise ValueError(f"calibration state {k} contains NaN or infinity")
        states.append(state)
    return states
