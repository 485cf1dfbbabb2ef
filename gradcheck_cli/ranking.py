"""Ranking by error that is the same on every machine.

Two entries whose errors agree to the last bits (a bug that mirrors a kernel makes such pairs)
may sort either way depending on the machine's floating-point rounding. Every ranking by an error
therefore compares the error rounded to ``DIGITS`` significant digits, then the index.
"""
from __future__ import annotations

import numpy as np

DIGITS = 6


def rounded(score: np.ndarray, digits: int = DIGITS) -> np.ndarray:
    """``score`` rounded to ``digits`` significant digits; inf stays inf, NaN becomes -inf."""
    s = np.asarray(score, dtype=np.float64)
    out = np.where(np.isnan(s), -np.inf, s)
    fin = np.isfinite(out) & (out != 0)
    if fin.any():
        v = out[fin]
        exp = np.floor(np.log10(np.abs(v)))
        scale = 10.0 ** (digits - 1 - exp)
        out = out.copy()
        out[fin] = np.round(v * scale) / scale
    return out


def rank_desc(score: np.ndarray, index: np.ndarray | None = None, digits: int = DIGITS) -> np.ndarray:
    """Positions of ``score`` from largest to smallest (rounded to ``digits`` significant
    digits); ties go to the smaller ``index`` (default: the position itself)."""
    s = rounded(np.ravel(score), digits)
    idx = np.arange(s.size) if index is None else np.ravel(index)
    return np.lexsort((idx, -s))
