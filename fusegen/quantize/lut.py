"""The one lookup-table mechanism for every elementwise function of one argument.

A table maps an int16 input at scale `s_in` to an int16 output at scale `s_out`. It has
FG_LUT_SIZE = 513 entries: knot i sits at input (i - 256) * 128 (i.e. the real value
s_in * (i - 256) * 128), so the top 9 bits of (x + 32768) pick a segment and the low 7 bits
interpolate in it (fg_lut_lookup_s16). The knots are TFLM's LUTPopulateInt16 with one correction:
TFLM spaces its knots (65535 / 512) input steps apart while its lookup assumes 128, so its tables
drift by up to one segment; here knot and lookup agree exactly. Each knot is biased by half the
interpolation error at its segment's midpoint (TFLM's trick), which halves the worst error of a
convex or concave segment.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fusegen.quantize.scales import round_half_away

LUT_SIZE = 513  # FG_LUT_SIZE in fg_runtime.h
SEGMENT = 128  # input steps per segment


def make_lut(fn: Callable[[np.ndarray], np.ndarray], in_scale: float, out_scale: float
             ) -> np.ndarray:
    """int16[513]: fn sampled at the knots (in float64) and rounded to the output scale."""
    knots = (np.arange(LUT_SIZE, dtype=np.float64) - 256.0) * SEGMENT * in_scale
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
