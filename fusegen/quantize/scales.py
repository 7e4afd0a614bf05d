"""Convert-time float work: scales from ranges, and real factors as (multiplier, shift) pairs.

Everything here runs once, in Python, when a cell is quantized; the kernel receives only the
integers. `quantize_multiplier` is TFLM's QuantizeMultiplier, mirrored by fg_quantize_multiplier
in fg_runtime_q.c (tests/test_int8_runtime.py checks that the two agree).
"""

from __future__ import annotations

import math

import numpy as np

INT16_MAX = 32767
# A value whose calibrated magnitude never exceeds this gets this range (for int16 values: +-2^-8;
# for int8 ranges: a width of 2^-8). Exact for a value that is always zero, and it keeps every
# multiplier between neighbouring values far from the flush-to-zero limit of 2^-31.
MIN_RANGE = 2.0 ** -8


def round_half_away(x: np.ndarray | float) -> np.ndarray:
    """C's round(): ties away from zero (numpy's rint rounds ties to even)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM QuantizeMultiplier: real == multiplier * 2^(shift - 31), multiplier in [2^30, 2^31)."""
    real = float(real)
    if not math.isfinite(real) or real < 0:
        raise ValueError(f"a multiplier must be finite and >= 0, got {real}")
    if real == 0.0:
        return 0, 0
    fraction, exponent = math.frexp(real)
    fixed = math.floor(fraction * 2.0 ** 31 + 0.5)  # exact: at most 22 fractional bits
    if fixed == 2 ** 31:
        fixed //= 2
        exponent += 1
    if exponent < -31:
        return 0, 0
    return fixed, exponent


def pow2_scale(max_abs: float) -> float:
    """The smallest power-of-two int16 scale covering +-max_abs (a Qm.n format)."""
    max_abs = max(float(max_abs), MIN_RANGE)
    return 2.0 ** math.ceil(math.log2(max_abs / INT16_MAX))


def q_format(scale: float) -> str:
    """'Q3.12' for scale 2^-12: m integer bits, n fractional bits of an int16."""
    frac = -round(math.log2(scale))
    return f"Q{15 - frac}.{frac}"


def asymmetric_int8(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero_point) of an int8 covering [lo, hi] and 0, as TFLite's converter chooses."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < MIN_RANGE:
        hi = lo + MIN_RANGE
    scale = (hi - lo) / 255.0
    zero_point = int(np.clip(round_half_away(-128.0 - lo / scale), -128, 127))
    return scale, zero_point


def quantize_int8(x, qparams: tuple[float, int]) -> np.ndarray:
    """Float values -> int8 at (scale, zero point), rounding half away from zero as TFLite's
    reference Quantize does (std::round)."""
    scale, zero_point = qparams
    return np.clip(round_half_away(np.asarray(x, np.float64) / scale) + zero_point,
                   -128, 127).astype(np.int8)


def dequantize_int8(q, qparams: tuple[float, int]) -> np.ndarray:
    """int8 -> float32 in float32 arithmetic, the scale as a .tflite stores it (float32)."""
    scale, zero_point = qparams
    return (np.asarray(q, np.float32) - np.float32(zero_point)) * np.float32(scale)


def check_int8_qparams(qparams: tuple[float, int], what: str) -> tuple[float, int]:
    try:
        scale, zero_point = qparams
        scale = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"{what} quantization must be (scale, zero_point), got {qparams!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{what} scale must be finite and > 0, got {scale}")
    if int(zero_point) != zero_point or not -128 <= zero_point <= 127:
        raise ValueError(f"{what} zero point must be an integer in [-128, 127], got {zero_point}")
    return scale, int(zero_point)
