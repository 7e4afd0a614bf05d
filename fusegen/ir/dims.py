"""Symbolic widths: every vector width in a cell is linear in the layer's sizes.

A kernel is generic over sizes, so the IR never holds a concrete width. A `Dim` is
`u * units + i * input_size + c`; the frontend finds the coefficients by tracing a cell at
several sizes, and the C kernel evaluates the same expression at Prepare.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Dim:
    u: int = 0
    i: int = 0
    c: int = 0

    def __call__(self, units: int, input_size: int) -> int:
        return self.u * units + self.i * input_size + self.c

    def __add__(self, other: Dim) -> Dim:
        return Dim(self.u + other.u, self.i + other.i, self.c + other.c)

    def __sub__(self, other: Dim) -> Dim:
        return Dim(self.u - other.u, self.i - other.i, self.c - other.c)

    def __str__(self) -> str:
        terms = [_term(self.u, "U"), _term(self.i, "I")]
        text = " + ".join(t for t in terms if t)
        if self.c or not text:
            text = f"{text} + {self.c}" if text else str(self.c)
        return text

    def c_expr(self, units: str = "units", input_size: str = "input_size") -> str:
        """The same expression in C, over the named int32_t variables."""
        terms = [_c_term(self.u, units), _c_term(self.i, input_size)]
        if self.c:
            terms.append(str(self.c))
        text = " + ".join(t for t in terms if t) or "0"
        return text.replace("+ -", "- ")


def _term(coef: int, name: str) -> str:
    if coef == 0:
        return ""
    return name if coef == 1 else f"{coef}*{name}"


def _c_term(coef: int, name: str) -> str:
    if coef == 0:
        return ""
    return name if coef == 1 else f"{coef} * {name}"


# Sizes at which the frontend traces every cell (see frontend/trace.py). Each pair differs from
# the first in one size only, so a width's coefficients follow from two subtractions; the fourth
# checks that the width really is linear.
TRACE_SIZES: tuple[tuple[int, int], ...] = ((7, 5), (13, 5), (7, 11), (10, 9))


def solve(widths: tuple[int, ...]) -> Dim | None:
    """The Dim taking `widths` at TRACE_SIZES (units, input_size), or None if none does."""
    (u0, i0), (u1, _), (_, i2) = TRACE_SIZES[:3]
    du, di = widths[1] - widths[0], widths[2] - widths[0]
    if du % (u1 - u0) or di % (i2 - i0):
        return None
    dim = Dim(du // (u1 - u0), di // (i2 - i0), 0)
    dim = Dim(dim.u, dim.i, widths[0] - dim(u0, i0))
    if any(dim(u, i) != w for (u, i), w in zip(TRACE_SIZES, widths)):
        return None
    return dim
