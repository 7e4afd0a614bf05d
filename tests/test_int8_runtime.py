"""The integer twin's primitives against fg_runtime_q.c, and the convert-time helpers.

Each function of tflm_kernels/runtime/fg_runtime_q.c is called through ctypes on many values and
compared with its numpy restatement in fusegen/reference/int_interp.py for exact equality; the
C library's semantics themselves are pinned by hand-derived cases in tests/cpp/fg_runtime_q_test.cc.
"""

from __future__ import annotations

import ctypes
import math
import re

import numpy as np
import pytest

from cbuild import REPO, build_shared_library
from fusegen.abi import pack_s8_matrix
from fusegen.ir import Op
from fusegen.quantize.lut import LUT_SIZE, SEGMENT, SEGMENT_BITS, make_lut
from fusegen.quantize.scales import (MIN_RANGE, asymmetric_int8, pow2_scale, q_format,
                                     quantize_multiplier)
from fusegen.reference import int_interp as ii
from fusegen.reference.float_interp import NUMPY

I32, I16, I8 = ctypes.c_int32, ctypes.c_int16, ctypes.c_int8
BINARY_ENUM = {Op.ADD: 0, Op.SUB: 1, Op.MAXIMUM: 4, Op.MINIMUM: 5}  # FgBinaryOp


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build_shared_library([REPO / "fusegen/tflm_kernels/runtime/fg_runtime_q.c"])))
    lib.fg_multiply_by_quantized_multiplier.restype = I32
    lib.fg_multiply_by_quantized_multiplier.argtypes = [I32, I32, I32]
    lib.fg_quantize_multiplier.argtypes = [ctypes.c_double, ctypes.POINTER(I32),
                                           ctypes.POINTER(I32)]
    lib.fg_lut_lookup_s16.restype = I16
    return lib


def ptr(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


def c_quantize_multiplier(lib, real: float) -> tuple[int, int]:
    m, s = I32(), I32()
    lib.fg_quantize_multiplier(real, ctypes.byref(m), ctypes.byref(s))
    return m.value, s.value


def multipliers(rng: np.random.Generator, n: int) -> np.ndarray:
    """Log-uniform over 2^-45 .. 2^40, plus the values where rounding or flushing changes."""
    edge = [0.0, 1.0, 0.5, 0.75, 3.0, 2.0 ** -31, 2.0 ** -32, 2.0 ** -31 * 0.9999999,
            1.0 - 2.0 ** -40, 1.0 - 2.0 ** -33, 1.0 - 2.0 ** -32, 1.0 + 2.0 ** -32, 1e-300,
            2.0 ** 30, 123456.789, math.pi, 1 / 3]
    return np.concatenate([edge, 2.0 ** rng.uniform(-45, 40, n)])


def test_python_quantize_multiplier_equals_c(lib):
    rng = np.random.default_rng(1)
    for real in multipliers(rng, 20000):
        assert quantize_multiplier(real) == c_quantize_multiplier(lib, float(real)), real


def test_c_quantize_multiplier_flushes_what_is_not_a_finite_nonnegative_real(lib):
    for bad in (-0.5, -0.0, math.inf, -math.inf, math.nan, 5e-324):
        assert c_quantize_multiplier(lib, bad) == (0, 0), bad


def test_quantize_multiplier_represents_the_real_factor():
    for real in multipliers(np.random.default_rng(2), 2000):
        m, shift = quantize_multiplier(real)
        if m == 0:
            assert real < 2.0 ** -31
        else:
            assert 2 ** 30 <= m < 2 ** 31
            assert abs(m * 2.0 ** (shift - 31) - real) <= real * 2.0 ** -31


def test_quantize_multiplier_rejects_bad_factors():
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="finite and >= 0"):
            quantize_multiplier(bad)


def test_multiply_by_quantized_multiplier_equals_c(lib):
    rng = np.random.default_rng(3)
    n = 20000
    x = np.concatenate([rng.integers(-2 ** 31, 2 ** 31, n), rng.integers(-70000, 70000, n),
                        [-2 ** 31, 2 ** 31 - 1, 0, 1, -1, 3, -3]])
    real = 2.0 ** rng.uniform(-34, 18, x.size)
    pairs = np.array([quantize_multiplier(r) for r in real])
    m, s = pairs[:, 0], pairs[:, 1]
    m[:4], s[:4] = [2 ** 31 - 1, 2 ** 30, 0, 2 ** 30], [31, -31, 5, 0]  # extremes too
    want = ii.multiply_by_quantized_multiplier(x, m, s)
    got = [lib.fg_multiply_by_quantized_multiplier(int(a), int(b), int(c))
           for a, b, c in zip(x, m, s)]
    assert np.array_equal(want, got)


def test_lut_lookup_equals_c_on_every_input(lib):
    rng = np.random.default_rng(4)
    lut = rng.integers(-32768, 32768, LUT_SIZE).astype(np.int16)
    x = np.arange(-32768, 32768).astype(np.int16)
    got = np.zeros_like(x)
    lib.fg_lut_s16(ptr(lut), ptr(x), ptr(got), I32(x.size))
    assert np.array_equal(ii.lut_lookup(x, lut), got)
    assert lib.fg_lut_lookup_s16(I16(-1), ptr(lut)) == ii.lut_lookup(np.int16(-1), lut)


def test_lut_geometry_matches_the_header():
    """abi.py defines the geometry; fg_abi.h (rendered from it, which the runtime includes)
    states the same numbers, and the runtime header does not define its own."""
    header = (REPO / "fusegen/tflm_kernels/shell/fg_abi.h").read_text()
    runtime = (REPO / "fusegen/tflm_kernels/runtime/fg_runtime.h").read_text()
    assert "#define FG_LUT_SIZE" not in runtime and '#include "tflm_kernels/shell/fg_abi.h"' in runtime
    assert int(re.search(r"#define FG_LUT_SIZE (\d+)", header).group(1)) == LUT_SIZE
    assert int(re.search(r"#define FG_LUT_SEGMENT_BITS (\d+)", header).group(1)) == SEGMENT_BITS
    assert LUT_SIZE == 129 and SEGMENT == 512


def test_lut_knots_are_the_function_at_segment_starts():
    """Knot i is f((i - 64) * 512 * s_in), up to the midpoint bias; for a linear function the
    bias is 0, so the identity table is exact at every knot and, interpolated, everywhere."""
    x = np.arange(-32768, 32768)
    table = make_lut(lambda v: v, 2.0 ** -12, 2.0 ** -12)
    want = np.clip((np.arange(LUT_SIZE) - 64) * 512, -32768, 32767)
    assert np.array_equal(table, want)
    assert np.array_equal(ii.lut_lookup(x[:-511], table), x[:-511])


@pytest.mark.parametrize("channel_step", [1, 0], ids=["per_channel", "per_tensor"])
@pytest.mark.parametrize("with_acc", [False, True], ids=["plain", "acc"])
def test_matmul_equals_c(lib, with_acc, channel_step):
    rng = np.random.default_rng(5)
    rows, depth, cols = 3, 37, 11
    x = rng.integers(-128, 128, (rows, depth)).astype(np.int8)
    w = rng.integers(-127, 128, (cols, depth)).astype(np.int8)
    bias = rng.integers(-2 ** 20, 2 ** 20, cols).astype(np.int32)
    pairs = np.array([quantize_multiplier(r) for r in 2.0 ** rng.uniform(-16, -4, cols)])
    mult, shift = (np.ascontiguousarray(pairs[:, k], np.int32) for k in (0, 1))
    acc = rng.integers(-32768, 32768, (rows, cols)).astype(np.int16) if with_acc else None
    am, ash = quantize_multiplier(0.7)
    y = acc.copy() if with_acc else np.zeros((rows, cols), np.int16)
    lib.fg_matmul_s8(ptr(x), I32(depth), I32(rows), I32(depth), ptr(pack_s8_matrix(w)),
                     ptr(bias), ptr(mult), ptr(shift), I32(channel_step), I32(cols),
                     ptr(y) if with_acc else None,
                     I32(am), I32(ash), ptr(y), I32(cols))
    want = ii.matmul_s8(x, w, bias, mult, shift, channel_step, acc, am, ash)
    assert np.array_equal(want, y)
    if channel_step == 0:  # every column at the first pair
        assert np.array_equal(want, ii.matmul_s8(x, w, bias, np.full(cols, mult[0]),
                                                 np.full(cols, shift[0]), 1, acc, am, ash))


def _scaled_pairs(rng, lo, hi, count):
    return [quantize_multiplier(r) for r in 2.0 ** rng.uniform(lo, hi, count)]


@pytest.mark.parametrize("op", list(BINARY_ENUM), ids=lambda op: op.value)
@pytest.mark.parametrize("b_step", [0, 1], ids=["broadcast", "vector"])
def test_binary_equals_c(lib, op, b_step):
    rng = np.random.default_rng(6)
    n = 4000
    a = rng.integers(-32768, 32768, n).astype(np.int16)
    b = rng.integers(-32768, 32768, n if b_step else 1).astype(np.int16)
    (ma, sa), (mb, sb) = _scaled_pairs(rng, -3, 2, 2)
    y = np.zeros(n, np.int16)
    lib.fg_binary_s16(BINARY_ENUM[op], ptr(a), I32(1), ptr(b), I32(b_step), I32(ma), I32(sa),
                      I32(mb), I32(sb), ptr(y), I32(n))
    assert np.array_equal(ii.binary_s16(op, a, b, ma, sa, mb, sb), y)


def test_mul_rescale_and_requantize_equal_c(lib):
    rng = np.random.default_rng(7)
    n = 4000
    a = rng.integers(-32768, 32768, n).astype(np.int16)
    b = rng.integers(-32768, 32768, n).astype(np.int16)
    x8 = rng.integers(-128, 128, n).astype(np.int8)
    (m1, s1), (m2, s2), (m3, s3), (m4, s4) = _scaled_pairs(rng, -20, 4, 4)
    out16, out8 = np.zeros(n, np.int16), np.zeros(n, np.int8)
    lib.fg_mul_s16(ptr(a), I32(1), ptr(b), I32(1), I32(m1), I32(s1), ptr(out16), I32(n))
    assert np.array_equal(ii.mul_s16(a, b, m1, s1), out16)
    lib.fg_rescale_s16(ptr(a), I32(m2), I32(s2), ptr(out16), I32(n))
    assert np.array_equal(ii.rescale_s16(a, m2, s2), out16)
    lib.fg_requantize_s16_s8(ptr(a), I32(m3), I32(s3), I32(-7), ptr(out8), I32(n))
    assert np.array_equal(ii.requantize_s16_s8(a, m3, s3, -7), out8)
    lib.fg_requantize_s8_s16(ptr(x8), I32(5), I32(m4), I32(s4), ptr(out16), I32(n))
    assert np.array_equal(ii.requantize_s8_s16(x8, 5, m4, s4), out16)


# ---- convert-time helpers ----------------------------------------------------------------------


# max |f''| of each function (exp: f'' = f, so its bound is relative); 0 for piecewise-linear
# functions whose kinks (+-3 for hard_sigmoid, 0 and 6 for relu6) fall on table knots.
CURVATURE = {Op.SIGMOID: 0.0963, Op.TANH: 0.770, Op.SILU: 0.5, Op.SOFTSIGN: 2.0,
             Op.HARD_SIGMOID: 0.0, Op.RELU6: 0.0, Op.EXP: None}


@pytest.mark.parametrize("op", list(CURVATURE), ids=lambda op: op.value)
def test_lut_error_is_within_interpolation_bounds(op):
    """Tables for Q3.12 inputs (the format TFLM gives LSTM gate pre-activations), checked on every
    int16 input: the looked-up value is within 2 output steps (knot rounding and the
    interpolation's rounding) plus the linear-interpolation error h^2/8 * max|f''| of a segment of
    h = 512 input steps = 2^-3.

    Measured worst errors, in int16 output steps, with 129 / 513 knots: sigmoid (Q0.15) 4.1 / 1.8,
    tanh (Q1.14) 13.1 / 1.8, silu (Q3.12) 2.9 / 1.3, softsign (Q0.15) 116 / 8.6, hard_sigmoid 1.0
    / 1.0, relu6 0 / 0: about half the bound (the midpoint bias), softsign 0.9 of it (its f''
    jumps from 2 to -2 at the knot at 0). In int8 output steps of a +-1 range (2^-7) that is at
    most 0.10 for tanh and 0.45 for softsign, the worst single input."""
    in_scale = 2.0 ** -12
    fn = NUMPY.unary[op]
    x = np.arange(-32768, 32768)
    exact = fn(x * in_scale).astype(np.float64)
    out_scale = pow2_scale(np.max(np.abs(exact)))
    got = ii.lut_lookup(x, make_lut(fn, in_scale, out_scale)).astype(np.float64) * out_scale
    h = SEGMENT * in_scale
    curvature = np.abs(exact) if CURVATURE[op] is None else CURVATURE[op]
    error = np.abs(got - exact)
    bound = 2 * out_scale + h * h / 8 * curvature
    assert np.all(error <= bound)
    if CURVATURE[op]:  # the bound is not loose: the worst input uses a good part of it
        assert np.max(error / bound) > 0.4


def test_degenerate_ranges_fall_back_to_the_minimum_range():
    """A value that is zero throughout calibration still gets a usable format (MIN_RANGE)."""
    assert pow2_scale(0.0) == pow2_scale(MIN_RANGE) == 2.0 ** -22  # 2^-8 / 32767, rounded up
    assert q_format(pow2_scale(0.0)) == "Q-7.22"
    scale, zero_point = asymmetric_int8(0.0, 0.0)
    assert scale == pytest.approx(MIN_RANGE / 255) and zero_point == -128


def test_scales_cover_their_ranges():
    assert pow2_scale(1.0) == 2.0 ** -14  # Q1.14 holds +-1 (32767 * 2^-14 < 2)
    assert pow2_scale(6.3) == 2.0 ** -12 and q_format(2.0 ** -12) == "Q3.12"
    scale, zero_point = asymmetric_int8(-1.0, 3.0)
    assert scale == pytest.approx(4 / 255)
    assert (-128 - zero_point) * scale == pytest.approx(-1.0, abs=scale)


# ---- the runtime's fast paths (power-of-two scales) --------------------------------------------

# fg_runtime_q.c picks a cheaper exact form of MBQM per loop: a shift for multiplier 2^30 (every
# int16 scale is a power of two), no left shift for shift <= 0. These pairs reach each of them
# and the borders between them; the inputs are every int16 value.
FAST_PAIRS = ([(2 ** 30, s) for s in range(-31, 32)]
              + [(1981900910, s) for s in (-31, -29, -7, -1, 0, 1, 15, 16, 31)])
EVERY_INT16 = np.arange(-32768, 32768).astype(np.int16)


@pytest.mark.parametrize("zero_point", [-128, -1, 0, 97, 127])
@pytest.mark.parametrize("s", [-2, -3, -9, -23, -24, -31])
def test_requantize_with_the_zero_point_in_the_rounding_equals_twin(lib, s, zero_point):
    """fg_requantize_s16_s8's usual loop (a right shift, sh = -s - 1 <= 22) adds the zero point
    inside the rounding, two values per pass; sh 23 and beyond take the loop that adds it after.
    Every int16 value but the last (an odd count: the single value after the pairs), a
    multiplier near each end of its range and one between."""
    x = EVERY_INT16[:-1]
    n = x.size
    for m in (2 ** 30, 1981900910, 2 ** 31 - 1):
        out8 = np.zeros(n, np.int8)
        lib.fg_requantize_s16_s8(ptr(x), I32(m), I32(s), I32(zero_point), ptr(out8), I32(n))
        assert np.array_equal(ii.requantize_s16_s8(x, m, s, zero_point), out8)


@pytest.mark.parametrize("m, s", FAST_PAIRS, ids=str)
def test_fast_rescale_paths_equal_c_on_every_int16(lib, m, s):
    x, n = EVERY_INT16, EVERY_INT16.size
    out16, out8 = np.zeros(n, np.int16), np.zeros(n, np.int8)
    lib.fg_rescale_s16(ptr(x), I32(m), I32(s), ptr(out16), I32(n))
    assert np.array_equal(ii.rescale_s16(x, m, s), out16)
    lib.fg_requantize_s16_s8(ptr(x), I32(m), I32(s), I32(3), ptr(out8), I32(n))
    assert np.array_equal(ii.requantize_s16_s8(x, m, s, 3), out8)
    # products of two int16 up to 2^30 (both extremes included)
    b = np.roll(x, 12345)
    b[:2] = -32768
    lib.fg_mul_s16(ptr(x), I32(1), ptr(b), I32(1), I32(m), I32(s), ptr(out16), I32(n))
    assert np.array_equal(ii.mul_s16(x, b, m, s), out16)
    for op in (Op.ADD, Op.SUB, Op.MAXIMUM):
        lib.fg_binary_s16(BINARY_ENUM[op], ptr(x), I32(1), ptr(b), I32(1), I32(m), I32(s),
                          I32(2 ** 30), I32(0), ptr(out16), I32(n))
        assert np.array_equal(ii.binary_s16(op, x, b, m, s, 2 ** 30, 0), out16)
        lib.fg_binary_s16(BINARY_ENUM[op], ptr(x), I32(1), ptr(b), I32(1), I32(2 ** 30), I32(0),
                          I32(m), I32(s), ptr(out16), I32(n))
        assert np.array_equal(ii.binary_s16(op, x, b, 2 ** 30, 0, m, s), out16)


@pytest.mark.parametrize("s", [-2, -3, -9, -14, -17, -30, -31])
def test_products_in_the_right_shift_form_equal_the_twin(lib, s):
    """fg_mul_s16 (and the fused loops' right-shift body, fg_s16_mul_right) takes the right-shift
    form for every multiplier >= 0 that is not 2^30 when shift <= -2: a product by a parameter
    vector. Random multipliers and the extremes, products up to +-2^30 (-32768 * -32768, and
    -32768 * 32767), every int16 as one operand."""
    rng = np.random.default_rng(100 - s)
    x, n = EVERY_INT16, EVERY_INT16.size
    out = np.zeros(n, np.int16)
    edges = [0, 1, 2 ** 30 - 1, 2 ** 30 + 1, 2 ** 31 - 1, 1284287641]
    for m in edges + list(rng.integers(2 ** 30, 2 ** 31, 3)):
        for b in (np.roll(x, 777), np.full(n, -32768, np.int16), np.full(n, 32767, np.int16),
                  rng.integers(-32768, 32768, n).astype(np.int16)):
            b = np.ascontiguousarray(b, np.int16)
            lib.fg_mul_s16(ptr(x), I32(1), ptr(b), I32(1), I32(int(m)), I32(s), ptr(out), I32(n))
            assert np.array_equal(ii.mul_s16(x, b, int(m), s), out), (m, s)
        # a per-unit vector broadcast the other way (b_step 0) and in place
        y = x.copy()
        lib.fg_mul_s16(ptr(y), I32(1), ptr(x[5:]), I32(0), I32(int(m)), I32(s), ptr(y), I32(n))
        assert np.array_equal(ii.mul_s16(x, x[5], int(m), s), y)


@pytest.mark.parametrize("m, s", [(2 ** 30, s) for s in (-3, 0, 1, 2, 15, 16, 17)], ids=str)
def test_matmul_with_power_of_two_accumulator_equals_c(lib, m, s):
    rng = np.random.default_rng(8)
    rows, depth, cols = 4, 29, 9
    x = rng.integers(-128, 128, (rows, depth)).astype(np.int8)
    w = rng.integers(-127, 128, (cols, depth)).astype(np.int8)
    bias = rng.integers(-2 ** 20, 2 ** 20, cols).astype(np.int32)
    mult, shift = np.full(1, 1970303218, np.int32), np.full(1, -3, np.int32)
    acc = rng.integers(-32768, 32768, (rows, cols)).astype(np.int16)
    acc[0, :2] = [-32768, 32767]
    y = acc.copy()
    lib.fg_matmul_s8(ptr(x), I32(depth), I32(rows), I32(depth), ptr(pack_s8_matrix(w)),
                     ptr(bias), ptr(mult), ptr(shift), I32(0), I32(cols), ptr(y), I32(m), I32(s),
                     ptr(y), I32(cols))
    assert np.array_equal(ii.matmul_s8(x, w, bias, mult, shift, 0, acc, m, s), y)


# Every part of the weight layout (abi.pack_s8_matrix): 4 x 16 blocks, 4 x 4 blocks, 4 x 1
# columns, rows after the last group; every rescale body fg_matmul_s8 specialises (dot: a
# smaller per-tensor scale with shift -9 / -1, per channel, shift 0, a left shift; accumulator:
# none, 2^30 with shift 1 / -3 / 0, another scale with shift -2 / -1 / 0 / 1).
MATMUL_SIZES = [(1, 1), (3, 4), (4, 5), (15, 7), (16, 8), (17, 12), (28, 13), (32, 4), (37, 3),
                (64, 9), (100, 16)]  # (depth, cols)
DOT_PAIRS = {"right": (1970303218, -9), "right1": (1970303218, -1), "per_channel": None,
             "shift0": (1500000000, 0), "left": (1500000000, 2)}
ACC_PAIRS = {"none": None, "pow2_left": (2 ** 30, 1), "pow2_right": (2 ** 30, -3),
             "pow2_shift0": (2 ** 30, 0), "right": (1300000000, -2), "right1": (1300000000, -1),
             "highmul": (1300000000, 0), "general": (1300000000, 1)}


@pytest.mark.parametrize("depth, cols", MATMUL_SIZES, ids=lambda v: str(v))
def test_matmul_every_layout_part_and_rescale_body_equals_the_twin(lib, depth, cols):
    rng = np.random.default_rng(depth * 100 + cols)
    rows = 3
    x = rng.integers(-128, 128, (rows, depth)).astype(np.int8)
    x[0, :] = -128  # the extremes: |x * w| = 2^14 at every product
    w = rng.integers(-127, 128, (cols, depth)).astype(np.int8)
    w[0, :] = -127
    bias = rng.integers(-2 ** 24, 2 ** 24, cols).astype(np.int32)
    stored = pack_s8_matrix(w)
    for dot_name, pair in DOT_PAIRS.items():
        if pair is None:
            pairs = np.array([quantize_multiplier(r) for r in 2.0 ** rng.uniform(-16, -2, cols)])
            mult, shift = (np.ascontiguousarray(pairs[:, k], np.int32) for k in (0, 1))
            channel_step = 1
        else:
            mult, shift, channel_step = (np.array([pair[0]], np.int32),
                                         np.array([pair[1]], np.int32), 0)
        for acc_name, acc_pair in ACC_PAIRS.items():
            acc = (None if acc_pair is None
                   else rng.integers(-32768, 32768, (rows, cols)).astype(np.int16))
            am, ash = acc_pair or (0, 0)
            y = acc.copy() if acc is not None else np.zeros((rows, cols), np.int16)
            lib.fg_matmul_s8(ptr(x), I32(depth), I32(rows), I32(depth), ptr(stored), ptr(bias),
                             ptr(mult), ptr(shift), I32(channel_step), I32(cols),
                             None if acc is None else ptr(y), I32(am), I32(ash), ptr(y),
                             I32(cols))
            want = ii.matmul_s8(x, w, bias, mult, shift, channel_step, acc, am, ash)
            assert np.array_equal(want, y), (dot_name, acc_name)


@pytest.mark.parametrize("s", [0, 1, 2, 5], ids=lambda s: f"shift{s}")
@pytest.mark.parametrize("over", [-1, 0, 1], ids=["inside", "at", "over"])
def test_matmul_dot_rescale_of_shift_ge_0_at_its_bound_equals_the_twin(lib, s, over):
    """A per-tensor dot rescale of shift >= 0 (a trained model's input projection) takes the
    one-multiply form only while bias and depth bound every dot below 2^(30 - s): dots driven to
    that bound (every product +2^14, the bias just inside it, at it, just over it; and at shift
    2 and 5 dots where x << s saturates in MBQM) equal the twin's, for one row and four, in the
    groups of four and the row-major rest (the M4's bodies: tests/target/fg_elementwise_on_m4.c)."""
    rng = np.random.default_rng(40 + s)
    depth, cols = 13, 7
    for rows in (1, 4):
        x = np.full((rows, depth), -128, np.int8)
        x[1:] = rng.integers(-128, 128, (rows - 1, depth))
        w = rng.integers(-128, 128, (cols, depth)).astype(np.int8)
        w[:3] = -128
        w[3] = 127
        edge = 2 ** (30 - s) - depth * 2 ** 14 + over
        bias = rng.integers(-2 ** 20, 2 ** 20, cols).astype(np.int32)
        bias[:2] = [edge - 1, edge]
        bias[3] = -edge
        if over > 0:
            bias[2] = min(2 ** 31 - 1 - depth * 2 ** 14, 2 ** 30 + 12345)  # saturates x << s
        mult, shift = np.array([1500000007], np.int32), np.array([s], np.int32)
        y = np.zeros((rows, cols), np.int16)
        lib.fg_matmul_s8(ptr(x), I32(depth), I32(rows), I32(depth), ptr(pack_s8_matrix(w)),
                         ptr(bias), ptr(mult), ptr(shift), I32(0), I32(cols), None, I32(0),
                         I32(0), ptr(y), I32(cols))
        want = ii.matmul_s8(x, w, bias, mult, shift, 0, None, 0, 0)
        assert np.array_equal(want, y), (rows, s, over)
