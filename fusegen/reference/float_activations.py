"""sigmoid and tanh exactly as the float32 runtime computes them (fg_elementwise.h).

The C functions are a handful of IEEE single operations on an e^y built from exponent bits and a
ratio of two short polynomials, taken in the function's one division (the header documents the
method and the error bounds: <= 1.1e-7 absolute for sigmoid, <= 1.6e-7 for tanh, over every
float). These are the same operations in the same order on
float32 arrays, so the numpy twin equals the C kernels bit for bit; tests/test_float_activations.py
checks it against the compiled runtime.
"""

from __future__ import annotations

import numpy as np

from fusegen import abi

F32 = np.float32

_SHIFTER = F32(abi.F32_EXP2_SHIFTER)
_A2 = F32(abi.F32_EXP2_A2)
_B1 = F32(abi.F32_EXP2_B1)
_B3 = F32(abi.F32_EXP2_B3)
_MINUS_LOG2E = F32(abi.F32_MINUS_LOG2E)
_TWO_LOG2E = F32(abi.F32_TWO_LOG2E)
SIGMOID_LIMIT = F32(abi.F32_SIGMOID_LIMIT)  # |x| >= this: 0 or 1
TANH_LIMIT = F32(abi.F32_TANH_LIMIT)  # |x| >= this: -1 or 1


def _exp2_ratio(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fg_f32_exp2_ratio: 2^y = p / q for |y| < 126 (p = P 2^n, q = Q)."""
    t = y + _SHIFTER
    f = y - (t - _SHIFTER)
    f2 = f * f
    a = _A2 * f2 + F32(1)
    fb = f * (_B3 * f2 + _B1)
    scale = (t.view(np.uint32) << np.uint32(23)).view(F32)
    return ((a + fb) * scale).astype(F32), (a - fb).astype(F32)


def _saturated(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """The branch for |x| beyond the limit: high for x > 0, low for x < 0, NaN stays NaN."""
    return np.where(x > 0, F32(high), np.where(x < 0, F32(low), x)).astype(F32)


def sigmoid(x) -> np.ndarray:
    """fg_f32_sigmoid: 1 / (1 + 2^(-x log2 e)) = q / (p + q) for |x| < 87."""
    x = np.asarray(x, F32)
    inside = np.abs(x) < SIGMOID_LIMIT
    xs = np.where(inside, x, F32(0)).astype(F32)
    p, q = _exp2_ratio(xs * _MINUS_LOG2E)
    y = (q / (p + q)).astype(F32)
    return np.where(inside, y, _saturated(x, 0.0, 1.0)).astype(F32)


def tanh(x) -> np.ndarray:
    """fg_f32_tanh: (2^(2x log2 e) - 1) / (2^(2x log2 e) + 1) = (p - q) / (p + q) for |x| < 9."""
    x = np.asarray(x, F32)
    inside = np.abs(x) < TANH_LIMIT
    xs = np.where(inside, x, F32(0)).astype(F32)
    p, q = _exp2_ratio(xs * _TWO_LOG2E)
    y = ((p - q) / (p + q)).astype(F32)
    return np.where(inside, y, _saturated(x, -1.0, 1.0)).astype(F32)


def silu(x) -> np.ndarray:
    """x * sigmoid(x), as the runtime's silu."""
    x = np.asarray(x, F32)
    return (x * sigmoid(x)).astype(F32)
