"""Per-entry central differences: one pair of perturbed evaluations per entry.

Step: ``h_j = eps * max(1, |v_j|)`` with ``eps`` = cbrt(machine epsilon of float64) ~ 6.1e-6
by default, which balances truncation (~h^2) against rounding (~u |L| / h). Rounding estimate
(``noise``): 32 u (|L(v+h)| + |L(v-h)|) / 2h per entry.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

U64 = float(np.finfo(np.float64).eps)
DEFAULT_EPS = U64 ** (1.0 / 3.0)
NOISE_FACTOR = 32.0     # rounding error of one loss evaluation, in units of u * |L|
DEFAULT_BUDGET = 32 * 2**20   # bytes of perturbed copies alive at once: arrays under glibc's 32 MiB mmap threshold reuse the heap's pages


@dataclasses.dataclass
class Numerical:
    """Central differences of the checked entries of one tensor (flat indices ``index``)."""

    index: np.ndarray
    values: np.ndarray
    noise: np.ndarray          # estimated rounding error of each value
    step: np.ndarray
    dplus: np.ndarray          # L(v + h e_j) - L(v): coloured, summed over j's region only
    dminus: np.ndarray         # L(v - h e_j) - L(v)
    method: str = "per-entry"  # "coloured (C colours)" or "per-entry"


def json_number(x: float) -> float | str:
    """A float for JSON, which has no NaN/Inf: those are written as strings ("nan", "inf")."""
    x = float(x)
    return x if np.isfinite(x) else str(x)


def steps(v: np.ndarray, eps: float | None) -> np.ndarray:
    """Step per entry, scaled to the entry's magnitude."""
    return (eps or DEFAULT_EPS) * np.maximum(1.0, np.abs(v))


def central_differences(f: Callable[[np.ndarray], np.ndarray], base: np.ndarray,
                        index: np.ndarray, L0: float, eps: float | None = None, chunk: int = 64,
                        progress: Callable[[int], None] | None = None) -> Numerical:
    """dL/dv_j for every flat index j in ``index``; ``f`` maps (K, *shape) values to (K,) losses,
    ``L0`` is the loss at ``base``."""
    base = np.asarray(base, dtype=np.float64)
    flat = base.reshape(-1)
    h = steps(flat[index], eps)
    n = len(index)
    plus, minus = np.empty(n), np.empty(n)
    chunk = max(1, int(chunk))
    for start in range(0, n, chunk):
        j = index[start:start + chunk]
        k = len(j)
        V = np.repeat(flat[None], 2 * k, axis=0)
        rows = np.arange(k)
        V[rows, j] += h[start:start + k]
        V[k + rows, j] -= h[start:start + k]
        L = np.asarray(f(V.reshape(2 * k, *base.shape)), dtype=np.float64)
        plus[start:start + k], minus[start:start + k] = L[:k], L[k:]
        if progress:
            progress(k)
    values = (plus - minus) / (2 * h)
    noise = NOISE_FACTOR * U64 * (np.abs(plus) + np.abs(minus)) / (2 * h)
    return Numerical(index, values, noise, h, plus - L0, minus - L0)


def chunk_size(bytes_per_copy: int, n: int, budget: int = DEFAULT_BUDGET) -> int:
    """How many entries to perturb per call so that 2K copies fit in ``budget`` bytes."""
    return int(max(1, min(n, budget // max(1, 2 * bytes_per_copy))))
