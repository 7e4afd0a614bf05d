"""The float twin's sigmoid, tanh and silu (fusegen/reference/float_activations.py) against the
runtime's (fg_elementwise.h, called through fg_unary_f32 with ctypes): equal bit for bit.

The C functions' error bounds against libm are tests/cpp/fg_runtime_f32_test.cc's; here the twin
is checked to be the same arithmetic, on a dense sweep of float bit patterns (every sign and
binade, both sides of the saturation limits) plus inf and NaN.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from cbuild import build_shared_library

from fusegen.ir import Op
from fusegen.reference import float_activations as fa
from fusegen.reference.float_interp import NUMPY, NUMPY64

F32 = np.float32
UNARY_ENUM = {"sigmoid": 1, "tanh": 3, "silu": 7}  # FgUnaryOp (fg_runtime.h)


@pytest.fixture(scope="module")
def unary():
    lib = ctypes.CDLL(str(build_shared_library([])))
    fn = lib.fg_unary_f32
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32]

    def run(name: str, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, F32)
        y = np.empty_like(x)
        fn(UNARY_ENUM[name], x.ctypes.data, y.ctypes.data, x.size)
        return y
    return run


def sweep() -> np.ndarray:
    """Every 4099-th bit pattern (over a million values, all binades, both signs), the values
    next to the saturation limits, infinities and NaN."""
    bits = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32)
    x = bits.view(F32)
    edges = np.array([fa.SIGMOID_LIMIT, fa.TANH_LIMIT], F32)
    near = np.concatenate([np.nextafter(edges, F32(0)), edges, np.nextafter(edges, F32(np.inf))])
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30], F32)
    return np.concatenate([x, near, -near, special])


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "silu"])
def test_twin_equals_runtime_bit_for_bit(unary, name):
    x = sweep()
    want = unary(name, x)
    with np.errstate(all="ignore"):
        got = getattr(fa, name)(x)
    assert got.dtype == F32
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), f"{name}: first differing x = {x[~same][:5]}"


def test_twin_error_bounds_against_libm():
    # The documented bounds (fg_elementwise.h), on the same sweep, in float64.
    x = sweep()
    x = x[np.isfinite(x)]
    xd = x.astype(np.float64)
    with np.errstate(all="ignore"):
        sig = np.abs(fa.sigmoid(x).astype(np.float64) - 1.0 / (1.0 + np.exp(-xd))).max()
        tanh = np.abs(fa.tanh(x).astype(np.float64) - np.tanh(xd)).max()
    assert sig <= 1.1e-7 and tanh <= 1.6e-7, (sig, tanh)


def test_no_systematic_error_where_gates_live():
    # A recurrent cell integrates a signed error that does not average out over its inputs (the
    # cell state of an LSTM sums the gates' errors step after step): the mean signed error over
    # the inputs gates see stays at rounding level. The degree-5 polynomial the runtime used before
    # had +2.3e-9 (sigmoid) and -2.4e-9 (tanh) here, and drove a trained 150-step LSTM 1.5e-5 from
    # float64.
    x = np.linspace(-4.0, 4.0, 800_001).astype(F32)
    xd = x.astype(np.float64)
    sig = (fa.sigmoid(x).astype(np.float64) - 1.0 / (1.0 + np.exp(-xd))).mean()
    tanh = (fa.tanh(x).astype(np.float64) - np.tanh(xd)).mean()
    assert abs(sig) < 5e-10 and abs(tanh) < 5e-10, (sig, tanh)


def test_tanh_is_odd_bit_for_bit():
    # x -> -x swaps P and Q and inverts 2^n exactly, so tanh(-x) = -tanh(x) for every float.
    x = sweep()
    x = x[np.isfinite(x)]
    with np.errstate(all="ignore"):
        assert np.array_equal(fa.tanh(-x), -fa.tanh(x))


def test_nan_and_limits():
    x = np.array([np.nan, np.inf, -np.inf, 100.0, -100.0], F32)
    assert np.isnan(fa.sigmoid(x)[0]) and np.isnan(fa.tanh(x)[0])
    assert fa.sigmoid(x)[1:].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert fa.tanh(x)[1:].tolist() == [1.0, -1.0, 1.0, -1.0]


def test_interpreters_use_them():
    # The float32 twin computes with the runtime's functions; the float64 yardstick of verify
    # keeps the exact ones.
    x = np.linspace(-3, 3, 101).astype(F32)
    assert np.array_equal(NUMPY.unary[Op.TANH](x), fa.tanh(x))
    assert np.array_equal(NUMPY.unary[Op.SIGMOID](x), fa.sigmoid(x))
    assert np.array_equal(NUMPY64.unary[Op.TANH](x.astype(np.float64)), np.tanh(x.astype(np.float64)))
