"""The drop-in's entry verdict, shared by the dense (compare.py) and coloured (coloured.py) paths.

An entry passes when ``|a - n| <= atol + rtol |n| + rounding``, the rounding term of a central
difference being ``NOISE_FACTOR u max(|f(x+h)|, |f(x-h)|, |f(x)|) / h`` (u of the outputs'
dtype); an entry failing it passes as a kink when its one-sided differences r and l disagree by
at least a tenth of the error and ``a`` lies between them.
"""
from __future__ import annotations

import torch

from ..numeric.central import NOISE_FACTOR


def magnitude(Fp: torch.Tensor, Fm: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """max(|f(x+h)|, |f(x-h)|, |f(x)|), in float64."""
    return torch.maximum(torch.maximum(Fp.abs(), Fm.abs()), f0.abs()).to(torch.float64)


def scale(dtype: torch.dtype, h: float) -> float:
    """NOISE_FACTOR u / h: the rounding term per unit of magnitude."""
    u = torch.finfo(dtype).eps if dtype.is_floating_point else 2.0 ** -52
    return NOISE_FACTOR * u / h


def kinks(a, err, thr, r, l) -> torch.Tensor:
    """Which failing entries pass as kinks (all arguments at those entries)."""
    return (torch.isfinite(a) & ((r - l).abs() >= 0.1 * err)
            & (a >= torch.minimum(r, l) - thr) & (a <= torch.maximum(r, l) + thr))
