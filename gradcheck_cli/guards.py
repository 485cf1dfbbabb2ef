"""Refuse a case whose values are too large for its gradients to be checked at all.

Parameters of 1e308 (from a .npy) make every product of two values overflow: the layer's
backward (dy times a weight), a squared loss, the l2 term, the central difference's step
(h = eps * |v|). Analytic and numerical sides then both hold Inf or NaN, so a verdict would be
about the numbers, not the layer, and "gradients disagree" (exit 1) would be a false alarm.
Such a case is bad input (exit 2) naming the field to change, like any other value out of range.

The line is drawn at sqrt(the dtype's largest value) -- 1.3e154 in float64, 1.8e19 in
float32 -- above which the square of a value no longer fits. A forward that still gives Inf or
NaN at the checked point from values under it (a log of a negative input, or many large terms
adding up) is not refused: its rows fail with the engine's note ("the forward gives NaN/Inf
near ... entries"), because there the layer itself may be at fault.
"""
from __future__ import annotations

import numpy as np

from .errors import CaseError


def bounded_values(net) -> None:
    """CaseError naming the field when the input or a parameter of ``net`` (as rounded to the
    case's dtype) holds a value above sqrt(the dtype's largest value), Inf or NaN."""
    case = net.case
    dt = np.dtype(case.dtype)
    bound = float(np.sqrt(np.finfo(dt).max))
    with np.errstate(all="ignore"):
        _bounded(case, "input.data" if case.input_data is not None else "input", net.x0, bound, dt)
        for i, p in enumerate(net.params):
            for name, v in p.items():
                _bounded(case, f"layers[{i}].params.{name}", v, bound, dt)


def _bounded(case, field: str, a: np.ndarray, bound: float, dt: np.dtype) -> None:
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.abs(a) <= bound):      # False for NaN too
        raise CaseError(case.file, field, f"holds values too large to check in {dt} ({_largest(a)}; "
                                          f"at most {bound:.2g}, whose square still fits in {dt})")


def _largest(a: np.ndarray) -> str:
    finite = a[np.isfinite(a)]
    big = f"largest |value| {np.max(np.abs(finite)):.3g}" if finite.size else ""
    bad = f"{a.size - finite.size} Inf/NaN after rounding to the case's dtype" if finite.size < a.size else ""
    return ", ".join(t for t in (big, bad) if t)
