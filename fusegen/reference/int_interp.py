"""The integer numpy twin: the specification of every generated int8 kernel.

The first half restates each function of tflm_kernels/runtime/fg_runtime_q.c on numpy arrays
(int64 throughout, so nothing wraps where C does not); the second half walks a cell's integer
program (fusegen/quantize/program.py) exactly as the generated `_eval_s8` does, reading the same
op inputs (quantized weights, the qparams layout, the tables). The generated C must equal this
bit for bit; tests compare them with np.array_equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusegen.ir import Op
from fusegen.abi import SEGMENT_BITS, row_clamp, unpack_s8_matrix
from fusegen.reference.masking import run_steps
from fusegen.schedule.program import (CHANNEL_FLAG, Binary, Concat, Div, IntProgram, Lut,
                                      MatMul, Mul, Narrow, Reduce, Rescale, Rsqrt, Where, Widen,
                                      const_value)

I64 = np.int64
INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1

# ---- fg_runtime_q.c ---------------------------------------------------------------------------


def saturate(v: np.ndarray, dtype: type) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(v, info.min, info.max).astype(dtype)


def rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values held in int64."""
    a, b = np.asarray(a, I64), np.asarray(b, I64)
    ab = a * b
    nudge = np.where(ab >= 0, I64(1 << 30), I64(1 - (1 << 30)))
    v = ab + nudge
    out = np.where(v >= 0, v >> 31, -((-v) >> 31))  # C's truncating division by 2^31
    return np.where((a == INT32_MIN) & (b == INT32_MIN), I64(INT32_MAX), out)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: ties away from zero; 0 <= exponent <= 31."""
    x, exponent = np.asarray(x, I64), np.asarray(exponent, I64)
    mask = (I64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """fg_multiply_by_quantized_multiplier, elementwise (arrays broadcast)."""
    x, shift = np.asarray(x, I64), np.asarray(shift, I64)
    left = np.minimum(np.maximum(shift, 0), 31)
    right = np.minimum(np.maximum(-shift, 0), 31)
    shifted = np.clip(x * (I64(1) << left), INT32_MIN, INT32_MAX)
    return rounding_divide_by_pot(rounding_doubling_high_mul(shifted, multiplier), right)


MBQM = multiply_by_quantized_multiplier


def lut_lookup(x: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """fg_lut_lookup_s16: segment by the top bits of x + 32768, interpolate by the low ones."""
    biased = np.asarray(x, I64) + 32768
    index, offset = biased >> SEGMENT_BITS, biased & ((1 << SEGMENT_BITS) - 1)
    lut = np.asarray(lut, I64)
    base = lut[index]
    slope = lut[index + 1] - base
    half = 1 << (SEGMENT_BITS - 1)
    return (base + ((slope * offset + half) >> SEGMENT_BITS)).astype(np.int16)


def matmul_s8(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, multiplier: np.ndarray,
              shift: np.ndarray, channel_step: int, acc: np.ndarray | None = None,
              acc_multiplier: int = 0, acc_shift: int = 0) -> np.ndarray:
    """fg_matmul_s8 on x [rows, K] int8, w [N, K] int8 -> int16 [rows, N]; column n is rescaled
    by multiplier[n * channel_step], shift[n * channel_step]."""
    dot = np.asarray(x, I64) @ np.asarray(w, I64).T
    if bias is not None:
        dot = dot + np.asarray(bias, I64)
    channel = np.arange(dot.shape[-1]) * channel_step
    out = MBQM(dot, np.asarray(multiplier, I64)[channel], np.asarray(shift, I64)[channel])
    if acc is not None:
        out = out + MBQM(acc, acc_multiplier, acc_shift)
    return saturate(out, np.int16)


def binary_s16(op: Op, a, b, a_multiplier, a_shift, b_multiplier, b_shift) -> np.ndarray:
    """fg_binary_s16 (add, sub, maximum, minimum)."""
    va, vb = MBQM(a, a_multiplier, a_shift), MBQM(b, b_multiplier, b_shift)
    combine = {Op.ADD: np.add, Op.SUB: np.subtract, Op.MAXIMUM: np.maximum,
               Op.MINIMUM: np.minimum}[op]
    return saturate(combine(va, vb), np.int16)


def mul_s16(a, b, multiplier, shift) -> np.ndarray:
    return saturate(MBQM(np.asarray(a, I64) * np.asarray(b, I64), multiplier, shift), np.int16)


def rescale_s16(x, multiplier, shift) -> np.ndarray:
    return saturate(MBQM(x, multiplier, shift), np.int16)


def requantize_s16_s8(x, multiplier, shift, zero_point) -> np.ndarray:
    return saturate(MBQM(x, multiplier, shift) + zero_point, np.int8)


def requantize_s8_s16(x, zero_point, multiplier, shift) -> np.ndarray:
    return saturate(MBQM(np.asarray(x, I64) - zero_point, multiplier, shift), np.int16)


def reduce_s16(fn: str, x, multiplier, shift) -> np.ndarray:
    """fg_reduce_s16: the int64 sum clamped to int32 (sum, mean) or the max, rescaled."""
    x = np.asarray(x, I64)
    acc = np.max(x) if fn == "max" else np.clip(np.sum(x), INT32_MIN, INT32_MAX)
    return saturate(MBQM(np.array([acc], I64), multiplier, shift), np.int16)


def div_s16(a, b, multiplier, shift) -> np.ndarray:
    """fg_div_s16: q = a*2^15 / b rounded half away from zero (C's truncating division of
    2q, then halved away from zero), clamped to int32; then rescaled."""
    a, b = np.broadcast_arrays(np.asarray(a, I64), np.asarray(b, I64))
    num = a * 65536
    safe = np.where(b == 0, 1, b)
    twice = np.sign(num) * np.sign(safe) * (np.abs(num) // np.abs(safe))
    q = np.sign(twice) * ((np.abs(twice) + 1) // 2)
    q = np.where(b == 0, np.sign(num) * INT32_MAX, np.clip(q, INT32_MIN, INT32_MAX))
    return saturate(MBQM(q, multiplier, shift), np.int16)


def rsqrt_s16(x, multiplier, shift) -> np.ndarray:
    """fg_rsqrt_s16: q = 2^46 // isqrt(x * 2^30) for x > 0 (isqrt: the floor square root),
    INT32_MAX for x <= 0; then rescaled."""
    import math

    x = np.asarray(x, I64).reshape(-1)
    q = np.array([(1 << 46) // math.isqrt(int(v) << 30) if v > 0 else INT32_MAX for v in x], I64)
    return saturate(MBQM(np.minimum(q, INT32_MAX), multiplier, shift), np.int16)


_INT_CMP = {"gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal,
            "eq": np.equal, "ne": np.not_equal}


def where_s16(cmp: str, a, b, x, y, rq) -> np.ndarray:
    """fg_where_s16 with rq the four (multiplier, shift) pairs of a, b, x, y."""
    va, vb, vx, vy = (MBQM(v, rq[2 * k], rq[2 * k + 1]) for k, v in enumerate((a, b, x, y)))
    return saturate(np.where(_INT_CMP[cmp](va, vb), vx, vy), np.int16)


# ---- the cell ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpInputs:
    """The int8 op's constant inputs, as the kernel reads them (see abi.py)."""

    # int8 [N, K] in abi.WEIGHT_LAYOUT_S8_BLOCKS byte order / int32 [N] / int16 [N], graph
    # param order
    params: tuple[np.ndarray, ...]
    qparams: np.ndarray  # int32 [qparam_count(per_channel)]
    luts: np.ndarray  # int16 [lut_count, LUT_SIZE]


class _Step:
    """One timestep of the program over int arrays, values by node index."""

    def __init__(self, program: IntProgram, inputs: OpInputs, sizes: tuple[int, int]):
        self.program, self.inputs, self.sizes = program, inputs, sizes
        self.graph = program.graph
        # The matrices row-major again (stored in abi.WEIGHT_LAYOUT_S8_BLOCKS byte order).
        self.matrices = {s.weight: unpack_s8_matrix(inputs.params[s.weight])
                         for s in program.pre + program.step if isinstance(s, MatMul)}

    def q(self, name: str) -> int:
        return int(self.inputs.qparams[self.program.offset(name)(*self.sizes)])

    def qa(self, name: str, width: int) -> np.ndarray:
        start = self.program.offset(name)(*self.sizes)
        return self.inputs.qparams[start:start + width]

    def pair(self, r: Rescale) -> tuple[int, int]:
        return self.q(r.multiplier), self.q(r.shift)

    def width(self, index: int) -> int:
        return self.graph.nodes[index].width(*self.sizes)

    def value(self, values: dict[int, np.ndarray], index: int) -> np.ndarray:
        """The int16 value of a node (leaves and slices resolved)."""
        node = self.graph.nodes[index]
        if node.op is Op.SLICE:
            start = node.attr("start")(*self.sizes)
            return self.value(values, node.inputs[0])[start:start + self.width(index)]
        if node.op is Op.PARAM:
            return self.inputs.params[node.attr("index")]
        if node.op is Op.CONST:
            return np.array([const_value(self.graph, index)], np.int16)
        return values[index]

    def int8_operand(self, values: dict[int, np.ndarray], x8: np.ndarray, index: int,
                     narrowed: dict[int, np.ndarray]) -> np.ndarray:
        """The int8 operand of a matmul: a view of x_t, or the operand's requantized copy."""
        if index in narrowed:  # requantized for this matmul (a slice too: the slice's values)
            return narrowed[index]
        node = self.graph.nodes[index]
        if node.op is Op.SLICE:  # a view of x
            start = node.attr("start")(*self.sizes)
            base = self.int8_operand(values, x8, node.inputs[0], narrowed)
            return base[start:start + self.width(index)]
        if node.op is Op.INPUT:
            return x8
        raise KeyError(f"%{index} has no int8 form")

    def matmul(self, s: MatMul, values, x8, narrowed) -> np.ndarray:
        n = self.width(s.node)
        bias = (self.inputs.params[s.bias_param] if s.bias_param is not None
                else self.qa(s.bias_field, n))
        acc, acc_m, acc_s = None, 0, 0
        if s.acc is not None:
            acc, (acc_m, acc_s) = self.value(values, s.acc), self.pair(s.acc_scale)
        operand = self.int8_operand(values, x8, s.operand, narrowed)
        channel_step = int(self.q(CHANNEL_FLAG) != 0)
        if channel_step:
            multiplier, shift = self.qa(s.channel_multiplier, n), self.qa(s.channel_shift, n)
        else:
            multiplier, shift = self.qa(s.scale.multiplier, 1), self.qa(s.scale.shift, 1)
        out = matmul_s8(operand[None], self.matrices[s.weight], bias, multiplier, shift,
                        channel_step, None if acc is None else acc[None], acc_m, acc_s)
        return out[0]

    def run(self, x8: np.ndarray, states: list[np.ndarray]) -> dict[int, np.ndarray]:
        values: dict[int, np.ndarray] = {}
        narrowed: dict[int, np.ndarray] = {}
        for index, node in enumerate(self.graph.nodes):
            if node.op is Op.STATE:
                values[index] = states[node.attr("index")]
        for s in self.program.pre + self.program.step:
            if isinstance(s, Widen):
                values[s.node] = requantize_s8_s16(x8, self.q(s.zero_point), *self.pair(s.scale))
            elif isinstance(s, Narrow):
                narrowed[s.operand] = requantize_s16_s8(self.value(values, s.operand),
                                                        *self.pair(s.scale), self.q(s.zero_point))
            elif isinstance(s, MatMul):
                values[s.node] = self.matmul(s, values, x8, narrowed)
            elif isinstance(s, Lut):
                source = self.value(values, s.source)
                row = self.inputs.luts[s.table]
                bounds = row_clamp(row) if s.clamp else None
                if bounds is not None:
                    values[s.node] = np.clip(np.asarray(source, np.int16), *bounds)
                else:
                    values[s.node] = lut_lookup(source, row)
            elif isinstance(s, Binary):
                values[s.node] = binary_s16(s.op, self.value(values, s.a), self.value(values, s.b),
                                            *self.pair(s.a_scale), *self.pair(s.b_scale))
            elif isinstance(s, Mul):
                values[s.node] = mul_s16(self.value(values, s.a), self.value(values, s.b),
                                         *self.pair(s.scale))
            elif isinstance(s, Reduce):
                values[s.node] = reduce_s16(s.fn, self.value(values, s.source), *self.pair(s.scale))
            elif isinstance(s, Rsqrt):
                values[s.node] = rsqrt_s16(self.value(values, s.source), *self.pair(s.scale))
            elif isinstance(s, Div):
                values[s.node] = div_s16(self.value(values, s.a), self.value(values, s.b),
                                         *self.pair(s.scale))
            elif isinstance(s, Where):
                rq = [v for r in s.scales for v in self.pair(r)]
                operands = [self.value(values, j) for j in (s.a, s.b, s.x, s.y)]
                width = self.width(s.node)
                operands = [np.broadcast_to(v, (width,)) for v in operands]
                values[s.node] = where_s16(s.cmp, *operands, rq)
            elif isinstance(s, Concat):
                values[s.node] = np.concatenate([rescale_s16(self.value(values, j), *self.pair(r))
                                                 for j, r in s.parts])
            else:
                raise NotImplementedError(f"int twin: no rule for {type(s).__name__}")
        return values


def run(program: IntProgram, inputs: OpInputs, sizes: tuple[int, int], x: np.ndarray,
        return_sequences: bool = False, go_backwards: bool = False,
        states: list[np.ndarray] | None = None, valid: np.ndarray | None = None,
        zero_output: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """The int8 layer on one sequence x [T, I] int8: y int8 [T, W] or [W], final int16 states.
    `valid` bool [T]: the steps that run (Keras' mask; a masked step's zero output is the
    output zero point; see reference/masking.py)."""
    if x.dtype != np.int8 or x.ndim != 2 or x.shape[1] != sizes[1]:
        raise ValueError(f"x must be int8 [T, {sizes[1]}], got {x.dtype} {x.shape}")
    graph = program.graph
    stepper = _Step(program, inputs, sizes)
    states = [np.zeros(w(*sizes), np.int16) if states is None else np.asarray(states[k], np.int16)
              for k, w in enumerate(graph.state_widths)]
    out = program.output
    out_params = (*stepper.pair(out.scale), stepper.q(out.zero_point))

    def step(t: int, states: list[np.ndarray]):
        values = stepper.run(x[t], states)
        y = requantize_s16_s8(stepper.value(values, out.node), *out_params)
        return y, [stepper.value(values, j).copy() for j in graph.outputs[1:]]

    zero_y = np.full(stepper.width(out.node), stepper.q(out.zero_point), np.int8)
    ys, states = run_steps(x.shape[0], go_backwards, step, states, zero_y, valid, zero_output)
    return (np.stack(ys) if return_sequences else ys[-1]), states
