"""quantize_cell: a lowered cell + calibration data -> the int8 op's inputs and its integer twin.

All float work happens here, once: value scales from the calibrated ranges, weight scales (one
per matrix, or one per output channel), biases with the operand zero point folded in, every
(multiplier, shift) pair, every lookup table. The kernel and the twin only read the integers this
produces.

Per-tensor weights are the default, as TFLM's int8 LSTM: one (multiplier, shift) pair per matmul
instead of two int32 per output channel (LSTM at 32 units: 8 bytes instead of 1 KiB per matmul).
Measured on every catalog cell at (input 12, units 32, 29 steps; random weights scaled by
1/sqrt(fan-in)): per-tensor weights add at most 0.01 output steps to the mean error over all
steps (0.06 on ExoticCell) and 0.05 on the last step alone. Trained weights whose output channels
differ a lot in magnitude may want `per_channel=True`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fusegen.abi import clamp_row, pack_s8_matrix, unpack_s8_matrix
from fusegen.ir import Op
from fusegen.ir.bound import BoundGraph
from fusegen.quantize.calibrate import Ranges, calibrate
from fusegen.quantize.lut import LUT_SIZE, make_lut
from fusegen.schedule.program import (CHANNEL_FLAG, CONST_MAGNITUDE, PARAM_BIAS, PARAM_MATRIX,
                                      PARAM_VECTOR, Binary, Concat, Div, IntProgram, Lut, MatMul,
                                      Mul, Narrow, QuantizeError, Reduce, Rescale, Rsqrt, Where,
                                      Widen, build_program)
from fusegen.quantize.scales import (INT16_MAX, MIN_RANGE, asymmetric_int8, check_int8_qparams,
                                     dequantize_int8, pow2_scale, q_format, quantize_int8,
                                     quantize_multiplier, round_half_away)
from fusegen.reference import int_interp
from fusegen.reference.float_interp import NUMPY
from fusegen.reference.int_interp import OpInputs

MAX_DEPTH = 2 ** 14  # int8 x int8 dot products of this length stay far inside int32
BIAS_LIMIT = 2 ** 29  # |quantized bias|; weight scales grow if a bias would not fit


@dataclass(frozen=True)
class QuantizedCell:
    bound: BoundGraph  # the float cell it was made from
    program: IntProgram
    input_qparams: tuple[float, int]  # (scale, zero_point) of x
    output_qparams: tuple[float, int]  # of y
    scales: dict[int, float]  # node -> int16 scale, for every int16 value
    operand_qparams: dict[int, tuple[float, int]]  # matmul operand node -> its int8 (s, zp)
    ranges: Ranges
    inputs: OpInputs
    # Per param, the real value of one step of its op input: per output channel for matrices
    # and biases (arrays; all equal with per-tensor weights), one float for int16 vectors; all
    # symmetric. What a .tflite writer records as the tensors' quantization (a bias also holds
    # -zero_point * row sums, folded in).
    param_scales: tuple[np.ndarray | float, ...]

    @property
    def sizes(self) -> tuple[int, int]:
        return self.bound.units, self.bound.input_size

    @property
    def per_channel(self) -> bool:
        """Weight scales per output channel (qparams carries the channel arrays)?"""
        return bool(self.inputs.qparams[self.program.offset(CHANNEL_FLAG)(*self.sizes)])

    def op_inputs(self) -> list[np.ndarray]:
        """The op's constant inputs after x, in order: params (int8 matrices [N, K] in
        abi.WEIGHT_LAYOUT_S8_BLOCKS byte order, int32
        biases [N], int16 vectors [N]), qparams int32 [Q], luts int16 [L, LUT_SIZE]."""
        return [*self.inputs.params, self.inputs.qparams, self.inputs.luts]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        return quantize_int8(x, self.input_qparams)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        return dequantize_int8(y, self.output_qparams)

    @property
    def state_scales(self) -> tuple[float, ...]:
        """The int16 scale of each state, in Keras order: what a state tensor of the int8 op
        (initial state input, variable, final state output) holds, symmetric (zero point 0).
        The op's states are its own int16 values, so streaming loses nothing between calls."""
        graph = self.bound.graph
        nodes = {n.attr("index"): j for j, n in enumerate(graph.nodes) if n.op is Op.STATE}
        return tuple(self.scales[nodes[k]] for k in range(len(graph.state_widths)))

    def quantize_states(self, states) -> list[np.ndarray]:
        """Float states (one array per state, [..., width]) -> the op's int16 states."""
        return [np.clip(round_half_away(np.asarray(s, np.float64) / scale), -INT16_MAX - 1,
                        INT16_MAX).astype(np.int16)
                for s, scale in zip(states, self.state_scales, strict=True)]

    def dequantize_states(self, states) -> list[np.ndarray]:
        return [(np.asarray(s, np.float64) * scale).astype(np.float32)
                for s, scale in zip(states, self.state_scales, strict=True)]

    def run(self, x: np.ndarray, return_sequences: bool = False, go_backwards: bool = False,
            valid: np.ndarray | None = None, zero_output: bool = False) -> np.ndarray:
        """The integer twin on x int8 [T, I] (or [N, T, I]): y int8. `valid` bool [T] (or
        [N, T]): the steps that run (a Keras mask, reference/masking.py)."""
        if x.ndim == 3:
            return np.stack([self.run(s, return_sequences, go_backwards,
                                      None if valid is None else valid[k], zero_output)
                             for k, s in enumerate(x)])
        return int_interp.run(self.program, self.inputs, self.sizes, x, return_sequences,
                              go_backwards, None, valid, zero_output)[0]

    def run_states(self, x: np.ndarray, states: list[np.ndarray] | None = None,
                   return_sequences: bool = False, go_backwards: bool = False,
                   valid: np.ndarray | None = None, zero_output: bool = False
                   ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The integer twin on one sequence x int8 [T, I] from int16 `states` (zero if None):
        (y int8, the final int16 states); `valid` bool [T] as in run()."""
        return int_interp.run(self.program, self.inputs, self.sizes, x, return_sequences,
                              go_backwards, states, valid, zero_output)

    def dequantized(self) -> BoundGraph:
        """The float cell with every weight replaced by its quantized value (fake quantization):
        what the integer kernel approximates, apart from its int16 arithmetic."""
        weights = dict(self.bound.weights)
        roles = self.program.param_roles
        for k, (param, q) in enumerate(zip(self.bound.graph.params, self.inputs.params)):
            if roles[k] == PARAM_BIAS:
                continue  # int32 at the product scale: exact to ~2^-30 of the matmul's range
            value = unpack_s8_matrix(q).T if roles[k] == PARAM_MATRIX else q
            weights[param.name] = (value.astype(np.float64) * self.param_scales[k]).astype(
                np.float32)
        return replace(self.bound, weights=weights)

    def describe(self) -> str:
        """One line per int16 value: its format and calibrated range."""
        lines = []
        for index, scale in sorted(self.scales.items()):
            node = self.bound.graph.nodes[index]
            lines.append(f"%{index} {node.op.value}: {q_format(scale)} "
                         f"[{self.ranges.lo[index]:.4g}, {self.ranges.hi[index]:.4g}]")
        return "\n".join(lines)


def quantize_cell(bound: BoundGraph, calibration_x: np.ndarray,
                  input_qparams: tuple[float, int],
                  output_qparams: tuple[float, int] | None = None, *,
                  per_channel: bool = False,
                  calibration_states: list[np.ndarray] | None = None) -> QuantizedCell:
    """Quantizes a lowered cell (after the passes) for int8 x and y.

    calibration_x: float [N, T, I] sequences like the deployment data (N * T >= 32 steps).
    input_qparams / output_qparams: (scale, zero_point) of the neighbouring int8 tensors; the
    output's defaults to the calibrated range of the cell output.
    per_channel: one weight scale per output channel of each matrix (two more int32 qparams per
    channel) instead of one per matrix. The generated C is the same either way.
    calibration_states: for layers called with initial_state, the float initial states of the
    calibration sequences (one [N, width] array per state): the state scales cover them too.
    """
    program = build_program(bound.graph)
    ranges = calibrate(bound, calibration_x, calibration_states)
    x_q = check_int8_qparams(input_qparams, "input")
    out = bound.graph.outputs[0]
    y_q = (asymmetric_int8(ranges.lo[out], ranges.hi[out]) if output_qparams is None
           else check_int8_qparams(output_qparams, "output"))
    return _Quantizer(bound, program, ranges, x_q, y_q, bool(per_channel)).run()


class _Quantizer:
    def __init__(self, bound: BoundGraph, program: IntProgram, ranges: Ranges,
                 x_q: tuple[float, int], y_q: tuple[float, int], per_channel: bool):
        self.bound, self.program, self.ranges = bound, program, ranges
        self.graph = bound.graph
        self.sizes = (bound.units, bound.input_size)
        self.x_q, self.y_q = x_q, y_q
        self.per_channel = per_channel
        self.params = bound.param_values()
        self.values: dict[str, int | np.ndarray] = {CHANNEL_FLAG: int(per_channel)}
        self.luts: dict[int, np.ndarray] = {}  # row -> table
        self.scales = self._value_scales()
        self.operands = self._operand_qparams()
        self.weight_scales = self._weight_scales()
        self.q_params: list[np.ndarray | None] = [None] * len(self.params)
        self.param_scales: list[np.ndarray | float | None] = [None] * len(self.params)

    def run(self) -> QuantizedCell:
        for k, role in enumerate(self.program.param_roles):
            if role == PARAM_VECTOR:
                self.param_scales[k] = scale = self._scale_of_param(k)
                self.q_params[k] = np.clip(round_half_away(self.params[k] / scale),
                                           -INT16_MAX, INT16_MAX).astype(np.int16)
            elif role == PARAM_MATRIX:
                self.param_scales[k] = self.weight_scales[k]
                self.q_params[k] = self._int8_matrix(k)
        steps = self.program.pre + self.program.step
        for s in steps:
            self._fill(s)
        out = self.program.output
        self._rescale(out.scale, self.scales[out.node] / self.y_q[0])
        self.values[out.zero_point] = self.y_q[1]
        if self.program.widen_input:
            self.values["input.zero_point"] = self.x_q[1]
        luts = np.zeros((self.program.lut_count, LUT_SIZE), np.int16)
        for row, table in self.luts.items():
            luts[row] = table
        # Matrices in the byte order the kernel's matmul reads (abi.WEIGHT_LAYOUT_S8_BLOCKS).
        stored = tuple(pack_s8_matrix(p) if role == PARAM_MATRIX else p
                       for p, role in zip(self.q_params, self.program.param_roles, strict=True))
        inputs = OpInputs(stored, self._pack(), luts)
        used = {j for j in self.scales if self._is_value(j)}
        return QuantizedCell(self.bound, self.program, self.x_q, self.y_q,
                             {j: self.scales[j] for j in sorted(used)}, self.operands,
                             self.ranges, inputs, tuple(self.param_scales))

    # ---- scales ------------------------------------------------------------------------------

    def _value_scales(self) -> dict[int, float]:
        """One int16 scale per scale group, from what the group holds."""
        by_root: dict[int, list[int]] = {}
        for j, root in self.program.group.items():
            by_root.setdefault(root, []).append(j)
        scales = {}
        for members in by_root.values():
            scale = self._group_scale(members)
            scales.update({j: scale for j in members})
        return scales

    def _group_scale(self, members: list[int]) -> float:
        nodes = {self.graph.nodes[j].op: j for j in members}
        if Op.CONST in nodes:
            value = abs(float(self.graph.nodes[nodes[Op.CONST]].attr("value")))
            return value / CONST_MAGNITUDE if value else 1.0
        if Op.PARAM in nodes:
            k = self.graph.nodes[nodes[Op.PARAM]].attr("index")
            return max(float(np.max(np.abs(self.params[k]))), MIN_RANGE) / INT16_MAX
        if Op.INPUT in nodes:
            scale, zp = self.x_q
            return pow2_scale(max(abs(scale * (-128 - zp)), abs(scale * (127 - zp))))
        return pow2_scale(max(self.ranges.max_abs(j) for j in members))

    def _scale_of_param(self, k: int) -> float:
        node = next(j for j, n in enumerate(self.graph.nodes)
                    if n.op is Op.PARAM and n.attr("index") == k)
        return self.scales[node]

    def _is_value(self, index: int) -> bool:
        node = self.graph.nodes[index]
        if node.op is Op.PARAM:
            return self.program.param_roles[node.attr("index")] == PARAM_VECTOR
        return node.op is not Op.INPUT or self.program.widen_input

    def _operand_qparams(self) -> dict[int, tuple[float, int]]:
        """The int8 (scale, zero point) of every matmul operand."""
        result = {}
        for s in self.program.pre + self.program.step:
            if isinstance(s, MatMul):
                root = self.program.plan.root(s.operand)
                if self.graph.nodes[root].op is Op.INPUT:
                    result[s.operand] = self.x_q
                else:
                    result[s.operand] = asymmetric_int8(self.ranges.lo[s.operand],
                                                        self.ranges.hi[s.operand])
        return result

    def _weight_scales(self) -> dict[int, np.ndarray]:
        """Per output channel: max |w| / 127, raised where a bias would not fit in BIAS_LIMIT;
        per tensor: the largest of these for every channel."""
        scales = {}
        for k, role in enumerate(self.program.param_roles):
            if role == PARAM_MATRIX:
                w = self.params[k].astype(np.float64)  # Keras layout [K, N]
                if w.shape[0] >= MAX_DEPTH:
                    raise QuantizeError(f"param {self.graph.params[k].name}: matmul depth "
                                        f"{w.shape[0]} >= {MAX_DEPTH} is too deep for int32 sums")
                scales[k] = np.maximum(np.max(np.abs(w), axis=0) / 127.0, 1e-30)
        for s in self.program.pre + self.program.step:
            if isinstance(s, MatMul) and s.bias_param is not None:
                bias = np.abs(self.params[s.bias_param].astype(np.float64))
                need = bias / (self.operands[s.operand][0] * BIAS_LIMIT)
                scales[s.weight] = np.maximum(scales[s.weight], need)
        if not self.per_channel:
            scales = {k: np.full_like(v, np.max(v)) for k, v in scales.items()}
        return scales

    def _int8_matrix(self, k: int) -> np.ndarray:
        w = self.params[k].astype(np.float64) / self.weight_scales[k]
        return np.ascontiguousarray(np.clip(round_half_away(w), -127, 127).T.astype(np.int8))

    # ---- qparams -----------------------------------------------------------------------------

    def _rescale(self, r: Rescale, real: float) -> None:
        self.values[r.multiplier], self.values[r.shift] = quantize_multiplier(real)

    def _fill(self, s) -> None:
        sc = self.scales
        if isinstance(s, Widen):
            self._rescale(s.scale, self.x_q[0] / sc[s.node])
        elif isinstance(s, Narrow):
            scale, zp = self.operands[s.operand]
            self._rescale(s.scale, sc[s.operand] / scale)
            self.values[s.zero_point] = zp
        elif isinstance(s, MatMul):
            self._matmul(s)
        elif isinstance(s, Lut):
            table = make_lut(self._function(s.node), sc[s.source], sc[s.node])
            if s.clamp:
                bounds = exact_clamp(self._function(s.node), sc[s.source], sc[s.node])
                if bounds is not None:
                    table = clamp_row(*bounds)
            shared = self.luts.setdefault(s.table, table)
            if not np.array_equal(shared, table):
                raise QuantizeError(f"%{s.node}: lut row {s.table} is shared with a different "
                                    "table (the scale groups are wrong)")
        elif isinstance(s, Binary):
            self._rescale(s.a_scale, sc[s.a] / sc[s.node])
            self._rescale(s.b_scale, sc[s.b] / sc[s.node])
        elif isinstance(s, Mul):
            b_scale = 1.0 / (sc[s.b] * CONST_MAGNITUDE ** 2) if s.reciprocal else sc[s.b]
            self._rescale(s.scale, sc[s.a] * b_scale / sc[s.node])
        elif isinstance(s, Reduce):
            # sum and max keep the source's scale; a mean divides by the (known) width.
            count = self.graph.nodes[s.source].width(*self.sizes) if s.fn == "mean" else 1
            self._rescale(s.scale, sc[s.source] / (count * sc[s.node]))
        elif isinstance(s, Rsqrt):
            # q ~ 2^31 / sqrt(x_q) and 1/sqrt(x_q * s_in) = q / (2^31 sqrt(s_in)).
            self._rescale(s.scale, 1.0 / (2.0 ** 31 * np.sqrt(sc[s.source]) * sc[s.node]))
        elif isinstance(s, Div):
            # fg_div_s16's quotient carries 15 more bits than its operands.
            self._rescale(s.scale, sc[s.a] / (sc[s.b] * sc[s.node] * 32768.0))
        elif isinstance(s, Where):
            # a and b are compared at 1/256 of the coarser of their scales: both exact in
            # int32 (|int16| * 256 * ratio), neither loses a bit to the other's rounding.
            common = max(sc[s.a], sc[s.b]) / 256.0
            reals = (sc[s.a] / common, sc[s.b] / common, sc[s.x] / sc[s.node],
                     sc[s.y] / sc[s.node])
            for r, real in zip(s.scales, reals):
                self._rescale(r, real)
        elif isinstance(s, Concat):
            for j, r in s.parts:
                self._rescale(r, sc[j] / sc[s.node])
        else:
            raise QuantizeError(f"no quantization rule for {type(s).__name__}")

    def _matmul(self, s: MatMul) -> None:
        op_scale, op_zp = self.operands[s.operand]
        w_scale = self.weight_scales[s.weight]
        wq = self.q_params[s.weight].astype(np.int64)  # [N, K]
        folded = -op_zp * wq.sum(axis=1)
        if s.bias_param is not None:
            bias = self.params[s.bias_param].astype(np.float64) / (op_scale * w_scale)
            folded = folded + round_half_away(bias).astype(np.int64)
            self.q_params[s.bias_param] = folded.astype(np.int32)
            self.param_scales[s.bias_param] = op_scale * w_scale
        else:
            self.values[s.bias_field] = folded.astype(np.int32)
        reals = op_scale * w_scale / self.scales[s.node]
        if self.per_channel:
            pairs = [quantize_multiplier(m) for m in reals]
            self.values[s.channel_multiplier] = np.array([m for m, _ in pairs], np.int32)
            self.values[s.channel_shift] = np.array([e for _, e in pairs], np.int32)
            self.values[s.scale.multiplier] = self.values[s.scale.shift] = 0  # unused
        else:
            self._rescale(s.scale, float(reals[0]))
        if s.acc is not None:
            self._rescale(s.acc_scale, self.scales[s.acc] / self.scales[s.node])

    def _function(self, index: int):
        node = self.graph.nodes[index]
        if node.op is Op.CLIP:
            lo, hi = float(node.attr("lo")), float(node.attr("hi"))
            return lambda x: NUMPY.clip(x, lo, hi)
        if node.op is Op.POW:
            exponent = float(node.attr("exponent"))
            return lambda x: np.power(x, exponent)
        return NUMPY.unary[node.op]

    def _pack(self) -> np.ndarray:
        """The qparams input: scalars in program order, the arrays, the channel arrays if any."""
        program = self.program
        parts = [np.array([self.values[name] for name in program.scalars], np.int64)]
        for name, width in program.arrays + (program.channel_arrays if self.per_channel else []):
            value = np.asarray(self.values[name], np.int64)
            assert value.shape == (width(*self.sizes),), name
            parts.append(value)
        packed = np.concatenate(parts)
        if np.any(np.abs(packed) > 2 ** 31 - 1):
            raise QuantizeError("a quantization parameter does not fit in int32")
        return packed.astype(np.int32)


INT16_MIN = -32768
_INT16_INPUTS = np.arange(INT16_MIN, 32768, dtype=np.int64)


def exact_clamp(fn, in_scale: float, out_scale: float) -> tuple[int, int] | None:
    """(lo, hi) if the exact integer function of a lookup, fn(x * in_scale) / out_scale rounded
    and saturated to int16 for every int16 x, is clamp(x, lo, hi); None otherwise."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        real = np.asarray(fn(_INT16_INPUTS * in_scale), np.float64) / out_scale
    if not np.all(np.isfinite(real)):
        return None
    exact = np.clip(round_half_away(real), INT16_MIN, INT16_MAX).astype(np.int64)
    lo, hi = int(exact.min()), int(exact.max())
    return (lo, hi) if np.array_equal(exact, np.clip(_INT16_INPUTS, lo, hi)) else None
