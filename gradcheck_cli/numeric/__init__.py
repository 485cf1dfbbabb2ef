"""Finite differences, computed in float64 from real forward evaluations.

One front, :func:`differentiate`; the method is the plan's (numeric.coloured.plan):
per-entry (central.py) or coloured (coloured.py), the first the fallback of the second.

Every checked entry j gets its own central difference ``(L(v + h e_j) - L(v - h e_j)) / 2h``
from two perturbed forward evaluations; nothing is inferred from the analytic gradient.
What makes it fast is that one forward evaluation serves many entries:

* ``f(values)`` evaluates K stacked values of a tensor in one vectorised call;
* L is a sum of loss terms (one per output entry for projection / sum / mse, one per sample
  for cross_entropy). When entries i and j change disjoint sets of terms (their *regions*,
  from the layers' ``structure``, see sparsity.py), both are perturbed in the same copy, and
  ``L(v + h e_j) - L(v)`` is the sum of the moved terms in j's own region — exactly what
  perturbing j alone gives, because no other perturbed entry reaches those terms. Entries of
  different samples never share a region (built-in layers are per-sample), so the samples of
  the batch share copies too. For a k x k convolution this takes C k^2 pairs of copies for x
  instead of N C H W (Curtis, Powell & Reid colouring).
* Guards against a layer whose declared structure is too small: three random halves of colours
  per tensor are also perturbed, each in a copy of its own ("probes", :func:`_probe_sets`), and
  every copy is checked for loss terms that moved outside its perturbed regions; if any did,
  that tensor is redone with one entry per copy (:func:`central_differences`). Layers that mix
  samples are always checked that way, and so is a tensor whose region is every term (a
  parameter without structure, or x of a batch of one): nothing to share, nothing to probe.

Rounding estimate (``noise``): 32 u (|L(v+h)| + |L(v-h)|) / 2h per entry for one entry per
copy; for coloured entries the same with |L| replaced by the sum of |terms| in the entry's
region (the only terms whose difference enters its value).

Step: ``h_j = eps * max(1, |v_j|)`` with ``eps`` = cbrt(machine epsilon of float64) ~ 6.1e-6
by default, which balances truncation (~h^2) against rounding (~u |L| / h).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .central import (DEFAULT_BUDGET, DEFAULT_EPS, NOISE_FACTOR, U64, Numerical, central_differences,
                      chunk_size, json_number, steps)
from .coloured import (OWNER_MAX, VALIDATE, Plan, StructureViolated, _probe_positions, coloured_differences,
                       plan, region_sums, sample_terms)

__all__ = ["DEFAULT_BUDGET", "DEFAULT_EPS", "NOISE_FACTOR", "OWNER_MAX", "U64", "VALIDATE", "Numerical",
           "Plan", "StructureViolated", "central_differences", "chunk_size", "coloured_differences",
           "differentiate", "per_entry", "coloured", "STRATEGIES", "json_number", "plan", "region_sums", "sample_terms", "steps",
           "_probe_positions"]


def per_entry(net, p: Plan, xs: list[np.ndarray], T0: np.ndarray, L0: float, eps: float | None,
              budget: int, progress: Callable[[int], None] | None) -> Numerical:
    """One entry per pair of copies (central.py), as many pairs per call as ``budget`` holds."""
    i, t = p.layer, p.tensor
    size = 2 * net.copy_bytes(i, t)
    return central_differences(lambda V: net.stacked_loss(i, t, V, xs), net.value_of(i, t, xs), p.index,
                               L0, eps, max(1, budget // max(1, size)), progress)


def coloured(net, p: Plan, xs: list[np.ndarray], T0: np.ndarray, L0: float, eps: float | None,
             budget: int, progress: Callable[[int], None] | None) -> Numerical:
    """Entries of a colour share copies (coloured.py); per-entry when the declared structure
    proves too small (the progress already reported is taken back)."""
    reported = 0

    def counted(k: int) -> None:
        nonlocal reported
        reported += k
        if progress:
            progress(k)

    try:
        return coloured_differences(net, p, xs, T0, eps, budget, counted)
    except StructureViolated:
        if progress and reported:
            progress(-reported)
        return per_entry(net, p, xs, T0, L0, eps, budget, progress)


STRATEGIES = {"per-entry": per_entry, "coloured": coloured}


def differentiate(net, p: Plan, xs: list[np.ndarray], T0: np.ndarray, L0: float,
                  eps: float | None = None, budget: int = DEFAULT_BUDGET,
                  progress: Callable[[int], None] | None = None, also: tuple = ()) -> Numerical | list[Numerical]:
    """Numerical derivatives of the entries of plan ``p``, by the plan's method. ``also``:
    (network, T0, L0) of views that differ from ``net`` only in their loss; coloured plans run
    their copies once for all of them. Then a list, ``net``'s first."""
    if not also:
        return STRATEGIES[p.method](net, p, xs, T0, L0, eps, budget, progress)
    if p.method == "coloured":
        try:
            return coloured_differences(net, p, xs, T0, eps, budget, progress, also=[(n, t) for n, t, _ in also])
        except StructureViolated:
            pass
    return [per_entry(n, p, xs, t, l, eps, budget, None) for n, t, l in [(net, T0, L0), *also]]
