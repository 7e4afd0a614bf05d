"""fg_reduce_s16, fg_div_s16 and fg_where_s16 (fg_runtime_q.c) equal their integer twins
(fusegen/reference/int_interp.py) on random and extreme int16 values: the full int16 range,
division by zero and by +-1, sums that reach the int32 clamp, every comparison."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from cbuild import REPO, build_shared_library

from fusegen.quantize.scales import quantize_multiplier
from fusegen.reference import int_interp as ii

I32 = ctypes.c_int32
REDUCE_ENUM = {"sum": 0, "mean": 1, "max": 2}  # FgReduceOp
CMP_ENUM = {"gt": 0, "ge": 1, "lt": 2, "le": 3, "eq": 4, "ne": 5}  # FgCompareOp


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    return ctypes.CDLL(str(build_shared_library(
        [REPO / "fusegen/tflm_kernels/runtime/fg_runtime_q.c"])))


def ptr(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


def _pairs(rng, lo, hi, count):
    return [quantize_multiplier(r) for r in 2.0 ** rng.uniform(lo, hi, count)]


@pytest.mark.parametrize("fn", list(REDUCE_ENUM))
def test_reduce_equals_c(lib, fn):
    rng = np.random.default_rng(1)
    for n, (m, s) in zip((1, 5, 33, 70000), _pairs(rng, -20, 3, 4)):
        for x in (rng.integers(-32768, 32768, n), np.full(n, 32767), np.full(n, -32768)):
            x = x.astype(np.int16)
            y = np.zeros(1, np.int16)
            lib.fg_reduce_s16(REDUCE_ENUM[fn], ptr(x), I32(m), I32(s), ptr(y), I32(n))
            assert np.array_equal(ii.reduce_s16(fn, x, m, s), y), (fn, n)


@pytest.mark.parametrize("b_step", [0, 1], ids=["broadcast", "vector"])
def test_div_equals_c(lib, b_step):
    rng = np.random.default_rng(2)
    n = 5000
    a = rng.integers(-32768, 32768, n).astype(np.int16)
    a[:6] = [-32768, 32767, 0, 1, -1, 12345]
    b = rng.integers(-32768, 32768, n if b_step else 1).astype(np.int16)
    if b_step:
        b[:6] = [0, 0, 0, 1, -1, -32768]
        b[6:40] = rng.integers(-3, 4, 34)
    for m, s in _pairs(rng, -24, 2, 4):
        y = np.zeros(n, np.int16)
        lib.fg_div_s16(ptr(a), I32(1), ptr(b), I32(b_step), I32(m), I32(s), ptr(y), I32(n))
        assert np.array_equal(ii.div_s16(a, b if b_step else b[0], m, s), y)


def test_div_rounds_the_quotient_half_away_from_zero():
    # a*2^15 / b with a multiplier of exactly 2^-15 (m = 2^30, shift = -14): the rounded a / b.
    for a, b, want in ((3, 2, 2), (-3, 2, -2), (5, 4, 1), (7, 4, 2), (1, 0, 32767),
                       (-1, 0, -32768), (0, 0, 0)):
        assert int(ii.div_s16(np.array([a]), np.array([b]), 1 << 30, -14)[0]) == want, (a, b)


@pytest.mark.parametrize("cmp", list(CMP_ENUM))
def test_where_equals_c(lib, cmp):
    rng = np.random.default_rng(3)
    n = 4000
    a, b, x, t = (rng.integers(-32768, 32768, n).astype(np.int16) for _ in range(4))
    b[:50] = a[:50]  # equal values compare equal at any common scale
    rq = np.array([v for pair in _pairs(rng, -8, 9, 4) for v in pair], np.int32)
    y = np.zeros(n, np.int16)
    lib.fg_where_s16(CMP_ENUM[cmp], ptr(a), I32(1), ptr(b), I32(1), ptr(x), I32(1), ptr(t),
                     I32(1), ptr(rq), ptr(y), I32(n))
    assert np.array_equal(ii.where_s16(cmp, a, b, x, t, rq), y)


def test_rsqrt_equals_c_on_every_int16(lib):
    rng = np.random.default_rng(4)
    x = np.arange(-32768, 32768).astype(np.int16)
    for m, s in _pairs(rng, -30, -10, 3):
        y = np.zeros(x.size, np.int16)
        lib.fg_rsqrt_s16(ptr(x), I32(m), I32(s), ptr(y), I32(x.size))
        assert np.array_equal(ii.rsqrt_s16(x, m, s), y)


def test_rsqrt_is_accurate():
    """With a multiplier of exactly 2^-31 * 2^15: y = 2^15 / sqrt(x), within one step."""
    from fusegen.quantize.scales import quantize_multiplier as qm

    m, s = qm(2.0 ** -16)
    x = np.arange(1, 32768)
    y = ii.rsqrt_s16(x, m, s).astype(np.float64)
    assert np.max(np.abs(y - np.minimum(2.0 ** 15 / np.sqrt(x), 32767))) <= 1.0
