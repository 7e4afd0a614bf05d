"""The one lookup-table mechanism for every elementwise function of one argument.

A table maps an int16 input at scale `s_in` to an int16 output at scale `s_out`. Its geometry is
defined here, once: SEGMENT_BITS = 9, so the int16 input range is cut into 2^16 / 2^9 = 128
segments of 512 input steps and a table has LUT_SIZE = 129 knots (the end point of the last
segment included). Knot i sits at input (i - 64) * 512, i.e. at the real value
s_in * (i - 64) * 512: the top 7 bits of (x + 32768) pick a segment and the low 9 bits
interpolate in it (fg_lut_lookup_s16). fg_runtime.h states the same two numbers
(FG_LUT_SEGMENT_BITS, FG_LUT_SIZE); tests/test_int8_runtime.py checks the header against these,
and every generated int8 core refuses to compile against a header that disagrees (emit.py).

The knots are TFLM's LUTPopulateInt16 with one correction: TFLM spaces its knots
(65535 / (size - 1)) input steps apart while its lookup assumes a power of two, so its tables
drift by up to one segment; here knot and lookup agree exactly. Each knot is biased by half the
interpolation error at its segment's midpoint (TFLM's trick), which halves the worst error of a
convex or concave segment.

Why 129 and not TFLM's 513: a table is 258 bytes instead of 1026, and the linear-interpolation
error h^2/8 * max|f''| of the 16x wider segments stays below one int8 output step for the
formats the quantizer picks (measured in tests/test_int8_runtime.py and, on whole cells, in
tests/test_int8_cells.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fusegen.abi import LUT_SIZE, SEGMENT_BITS
from fusegen.quantize.scales import round_half_away

SEGMENT = 1 << SEGMENT_BITS  # input steps per segment
ZERO_KNOT = (1 << 15) // SEGMENT  # the knot at input 0: 64


def make_lut(fn: Callable[[np.ndarray], np.ndarray], in_scale: float, out_scale: float
             ) -> np.ndarray:
    """int16[LUT_SIZE]: fn sampled at the knots (in float64) and rounded to the output scale."""
    knots = (np.arange(LUT_SIZE, dtype=np.float64) - ZERO_KNOT) * SEGMENT * in_scale
    half = SEGMENT * in_scale / 2.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        at = _finite(fn(knots)) / out_scale
        mid = _finite(fn(knots[:-1] + half)) / out_scale
    sample = round_half_away(at)
    interp_mid = round_half_away((at[1:] + sample[:-1]) / 2.0)
    bias = round_half_away((interp_mid - round_half_away(mid)) / 2.0)
    table = sample.copy()
    table[:-1] -= bias
    return np.clip(table, -32768, 32767).astype(np.int16)


def _finite(values: np.ndarray) -> np.ndarray:
    """Overflowed samples (exp of a large knot) saturate: the table clips them anyway."""
    values = np.asarray(values, dtype=np.float64)
    return np.nan_to_num(values, nan=0.0, posinf=1e30, neginf=-1e30)
