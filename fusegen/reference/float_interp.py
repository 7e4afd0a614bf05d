"""The float32 numpy twin: the specification of every generated float kernel.

Arithmetic is float32 throughout, in the order the C runtime uses (matmul: bias, then the dot
product; an accumulated matmul adds the dot product to the accumulator input). The same
interpreter runs on TensorFlow ops (`TF_OPS`) as the body of the converter's composite function,
so the one IR walk serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusegen.ir import Graph, Op
from fusegen.ir.bound import BoundGraph
from fusegen.reference import float_activations
from fusegen.reference.masking import run_steps

F32 = np.float32


@dataclass(frozen=True)
class ArrayOps:
    unary: dict[Op, Callable[[Any], Any]]
    binary: dict[Op, Callable[[Any, Any], Any]]
    matmul: Callable[[Any, Any], Any]  # (x [K], weight as stored) -> [N]
    const: Callable[[float], Any]
    concat: Callable[[list[Any]], Any]
    clip: Callable[[Any, float, float], Any]
    power: Callable[[Any, float], Any]  # x ** exponent, exponent a constant
    where: Callable[[str, Any, Any, Any, Any], Any]  # (cmp, a, b, x, y): (a cmp b) ? x : y
    reduce: Callable[[str, Any], Any] = None  # (kind, x [..., n]) -> [..., 1]


def libm_sigmoid(x: np.ndarray) -> np.ndarray:
    """sigmoid through libm's exp (calibration's; the twin's is float_activations.sigmoid)."""
    return (F32(1) / (F32(1) + np.exp(-x))).astype(F32)


_NP_CMP = {"gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal,
           "eq": np.equal, "ne": np.not_equal}


def _np_reduce(kind: str, x: np.ndarray) -> np.ndarray:
    """Sum in index order in float32, as fg_reduce_f32 does (mean = sum / n)."""
    x = np.asarray(x, F32)
    if kind == "max":
        return np.max(x, axis=-1, keepdims=True)
    total = np.zeros(x.shape[:-1] + (1,), F32)
    for k in range(x.shape[-1]):
        total = (total + x[..., k:k + 1]).astype(F32)
    return total if kind == "sum" else (total / F32(x.shape[-1])).astype(F32)


NUMPY = ArrayOps(
    unary={
        Op.NEG: np.negative,
        Op.SIGMOID: float_activations.sigmoid,  # the runtime's arithmetic, bit for bit
        Op.HARD_SIGMOID: lambda x: np.minimum(np.maximum(x + F32(3), F32(0)), F32(6)) / F32(6),
        Op.TANH: float_activations.tanh,
        Op.RELU: lambda x: np.maximum(x, F32(0)),
        Op.RELU6: lambda x: np.minimum(np.maximum(x, F32(0)), F32(6)),
        Op.SOFTSIGN: lambda x: x / (F32(1) + np.abs(x)),
        Op.SILU: float_activations.silu,
        Op.EXP: np.exp,
        Op.ABS: np.abs,
        Op.SQUARE: lambda x: x * x,
        Op.SQRT: np.sqrt,
        Op.RSQRT: lambda x: F32(1) / np.sqrt(x),
        Op.LOG: np.log,
    },
    binary={Op.ADD: np.add, Op.SUB: np.subtract, Op.MUL: np.multiply, Op.DIV: np.divide,
            Op.MAXIMUM: np.maximum, Op.MINIMUM: np.minimum},
    matmul=lambda x, w: (x @ w).astype(F32),  # weights in Keras layout [K, N]
    const=lambda v: np.array([v], F32),
    concat=np.concatenate,
    clip=lambda x, lo, hi: np.minimum(np.maximum(x, F32(lo)), F32(hi)),
    power=lambda x, e: np.power(x, F32(e)),
    where=lambda cmp, a, b, x, y: np.where(_NP_CMP[cmp](a, b), x, y),
    reduce=_np_reduce,
)


def _f64_reduce(kind: str, x: np.ndarray) -> np.ndarray:
    """The reduction in float64 (no float32 rounding of the running sum)."""
    x = np.asarray(x, np.float64)
    if kind == "max":
        return np.max(x, axis=-1, keepdims=True)
    total = np.sum(x, axis=-1, keepdims=True)
    return total if kind == "sum" else total / x.shape[-1]


def _f64_sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# The same ops in float64: the layer's value without float32 rounding, the yardstick `fusegen
# verify` measures both the kernel and Keras against (fusegen/verdict.py). Every op of NUMPY
# that rounds to float32 on its own is replaced; the others keep float64 inputs float64.
NUMPY64 = ArrayOps(
    unary={**NUMPY.unary, Op.SIGMOID: _f64_sigmoid, Op.SILU: lambda x: x * _f64_sigmoid(x),
           Op.TANH: np.tanh, Op.RSQRT: lambda x: 1.0 / np.sqrt(x)},
    binary=NUMPY.binary,
    matmul=lambda x, w: x @ w,
    const=lambda v: np.array([v], np.float64),
    concat=np.concatenate,
    clip=NUMPY.clip,
    power=lambda x, e: np.power(x, np.float64(e)),
    where=NUMPY.where,
    reduce=_f64_reduce,
)


def run64(bound: BoundGraph, x: np.ndarray, return_sequences: bool = False,
          go_backwards: bool = False, valid: np.ndarray | None = None,
          zero_output: bool = False) -> np.ndarray:
    """The layer in float64 on x [T, I] from zero states: outputs [T, W] or [W]. `valid` bool
    [T]: the steps that run (Keras' mask, as run())."""
    sizes = (bound.units, bound.input_size)
    params = [np.asarray(v, np.float64) for v in bound.param_values()]
    states = [np.zeros(w(*sizes)) for w in bound.graph.state_widths]
    zero_y = np.zeros(bound.width(bound.graph.outputs[0]))

    def step64(t, s):
        out, *new = _step(bound.graph, sizes, params, np.asarray(x[t], np.float64), s, NUMPY64)
        return out, new

    outputs, _ = run_steps(x.shape[0], go_backwards, step64, states, zero_y, valid, zero_output)
    return np.stack(outputs) if return_sequences else outputs[-1]


def _step(graph: Graph, sizes: tuple[int, int], params: list[Any], x: Any, states: list[Any],
          ops: ArrayOps) -> list[Any]:
    """One cell step; returns [output, *new_states]."""
    values: list[Any] = []
    for node in graph.nodes:
        values.append(_eval(node, [values[j] for j in node.inputs], sizes, params, x, states, ops))
    return [values[j] for j in graph.outputs]


def _eval(node, args, sizes, params, x, states, ops: ArrayOps):
    op = node.op
    if op is Op.INPUT:
        return x
    if op is Op.STATE:
        return states[node.attr("index")]
    if op is Op.PARAM:
        return params[node.attr("index")]
    if op is Op.CONST:
        return ops.const(node.attr("value"))
    if op is Op.MATMUL:
        out = ops.matmul(args[0], args[1])
        for extra in args[2:]:  # bias first, then the accumulator: the C order
            out = extra + out
        return out
    if op is Op.CLIP:
        return ops.clip(args[0], node.attr("lo"), node.attr("hi"))
    if op is Op.POW:
        return ops.power(args[0], node.attr("exponent"))
    if op is Op.WHERE:
        return ops.where(node.attr("cmp"), *args)
    if op is Op.REDUCE:
        return ops.reduce(node.attr("fn"), args[0])
    if op in ops.unary:
        return ops.unary[op](args[0])
    if op in ops.binary:
        return ops.binary[op](args[0], args[1])
    if op is Op.SLICE:
        start = node.attr("start")(*sizes)
        return args[0][start:start + node.width(*sizes)]
    if op is Op.CONCAT:
        return ops.concat(args)
    raise NotImplementedError(f"no float reference for {op.value}")


def step(bound: BoundGraph, x: np.ndarray, states: list[np.ndarray]
         ) -> tuple[np.ndarray, list[np.ndarray]]:
    """One cell step on float32 vectors; returns (output, new_states)."""
    sizes = (bound.units, bound.input_size)
    outs = _step(bound.graph, sizes, bound.param_values(), x.astype(F32), states, NUMPY)
    return outs[0], outs[1:]


def run(bound: BoundGraph, x: np.ndarray, init_states: list[np.ndarray] | None = None,
        return_sequences: bool = False, go_backwards: bool = False,
        valid: np.ndarray | None = None, zero_output: bool = False
        ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The whole layer on one sequence x [T, I]: outputs [T, W] or [W], and the final states.
    `valid` bool [T]: the steps that run (Keras' mask; see reference/masking.py)."""
    u, i = bound.units, bound.input_size
    states = [np.zeros(w(u, i), F32) if init_states is None else init_states[k].astype(F32)
              for k, w in enumerate(bound.graph.state_widths)]
    zero_y = np.zeros(bound.width(bound.graph.outputs[0]), F32)
    outputs, states = run_steps(x.shape[0], go_backwards, lambda t, s: step(bound, x[t], s),
                                states, zero_y, valid, zero_output)
    return (np.stack(outputs) if return_sequences else outputs[-1]), states


def tf_ops() -> ArrayOps:
    """The same ops in TensorFlow, on weights as the fused op stores them ([N, K] matrices)."""
    import tensorflow as tf

    unary = {
        Op.NEG: tf.negative, Op.SIGMOID: tf.sigmoid, Op.TANH: tf.tanh, Op.RELU: tf.nn.relu,
        Op.RELU6: tf.nn.relu6, Op.SOFTSIGN: tf.nn.softsign, Op.EXP: tf.exp,
        Op.HARD_SIGMOID: lambda x: tf.nn.relu6(x + 3.0) / 6.0,
        Op.SILU: lambda x: x * tf.sigmoid(x),
        Op.ABS: tf.abs, Op.SQUARE: tf.square, Op.SQRT: tf.sqrt, Op.RSQRT: tf.math.rsqrt,
        Op.LOG: tf.math.log,
    }
    binary = {Op.ADD: tf.add, Op.SUB: tf.subtract, Op.MUL: tf.multiply, Op.DIV: tf.divide,
              Op.MAXIMUM: tf.maximum, Op.MINIMUM: tf.minimum}
    return ArrayOps(unary, binary, matmul=lambda x, w: tf.linalg.matvec(w, x),
                    const=lambda v: tf.constant([v], tf.float32),
                    concat=lambda parts: tf.concat(parts, 0),
                    clip=lambda x, lo, hi: tf.clip_by_value(x, lo, hi),
                    power=lambda x, e: tf.pow(x, e),
                    where=lambda cmp, a, b, x, y: _tf_where(tf, cmp, a, b, x, y),
                    reduce=lambda kind, x: {"sum": tf.reduce_sum, "mean": tf.reduce_mean,
                                            "max": tf.reduce_max}[kind](x, -1, keepdims=True))


def _tf_where(tf, cmp: str, a, b, x, y):
    compare = {"gt": tf.greater, "ge": tf.greater_equal, "lt": tf.less, "le": tf.less_equal,
               "eq": tf.equal, "ne": tf.not_equal}[cmp]
    cond = compare(a, b)
    # The broadcast shape of all four operands (a bool condition cannot be added to).
    shape = tf.shape(tf.zeros_like(a) + tf.zeros_like(b) + tf.zeros_like(x) + tf.zeros_like(y))
    return tf.where(tf.broadcast_to(cond, shape), tf.broadcast_to(x, shape),
                    tf.broadcast_to(y, shape))


def tf_sequence(graph: Graph, sizes: tuple[int, int], x, params: list[Any],
                return_sequences: bool, go_backwards: bool, initial_states: list | None = None,
                return_state: bool = False):
    """The layer as TF ops over x [1, T, I] (the composite function's body); initial states
    [1, width] each; with return_state, (y, *final states [1, width])."""
    import tensorflow as tf

    ops = tf_ops()
    units, input_size = sizes
    states = ([tf.zeros([w(units, input_size)], tf.float32) for w in graph.state_widths]
              if initial_states is None else [s[0] for s in initial_states])
    steps = range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])
    outputs = []
    for t in steps:
        out, *states = _step(graph, sizes, params, x[0, t], states, ops)
        outputs.append(out)
    y = tf.stack(outputs)[None] if return_sequences else outputs[-1][None]
    return (y, *(s[None] for s in states)) if return_state else y
