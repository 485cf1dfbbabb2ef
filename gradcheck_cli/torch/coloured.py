"""Full mode on large Jacobians: both sides compressed along one probed pattern, every entry compared.

With the pattern P of input i (pattern.py):

- numerical: columns of one colour share no output, so one pair of forwards ``f(x +- h 1_g)``
  per colour g gives every column of the colour: ``J[o, j] = D_g[o]`` for the one j of colour g
  that P puts in row o (Curtis, Powell and Reid), the same central difference as column j's own;
- analytic: rows of one colour share no input entry, so one backward row per colour r, with
  cotangent ``sum_{o in r} v_o e_o`` (seeded weights v_o in [1, 2]), gives ``J[o, j] = B_r[j] / v_o``
  for the one row o of colour r that P puts in column j;
- every entry of P is judged as compare.py judges an entry (the rounding term, the kink rule),
  but with ``rtol |n|`` replaced by the central difference's own error (below), and what P
  says is zero is checked to be zero on both sides:
  ``|D_g[o]| <= atol + rounding`` where row o has no entry of colour g, ``|B_r[j]| <= atol``
  where column j has no row of colour r.

Whatever P is, a wrong Jacobian cannot pass as a whole: an entry outside P shows in a zero test
or in the entry of P it is summed with, which is judged within atol plus the central
difference's own error (not torch's ``rtol |n|``: that would let such an entry hide within a
large one). The weights v make two analytic errors cancel only by accident.
This module only ever says "every entry agrees": on any failure, or a pattern too large, the
dense comparison (compare.py) runs and makes the verdict and the table.
"""
from __future__ import annotations

import numpy as np
import torch

from . import pattern, rule
from .jacobian import OUT_BUDGET, ROWS_BUDGET, Problem, real

DENSE_MAX = 2**16     # Jacobians of up to this many entries are compared densely: cheaper there
PATTERN_MAX = 2**22   # entries of a pattern (about 80 bytes each while it is compared)
STRICT = 1e-8         # relative slack of the coloured pass's entry test (see _input)


def agree(p: Problem, h: float, rtol: float, atol: float) -> bool:
    """True when every entry of the Jacobian agrees (coloured); False: not decided here."""
    N = sum(p.n(i) for i in p.pos)
    if p.M * N <= DENSE_MAX:
        return False
    for i in p.pos:
        if p.n(i) == 0:
            continue
        P = pattern.probe(p, i, h, PATTERN_MAX)
        if P is None or not _input(p, i, P, h, rtol, atol):
            return False
    return True


def _input(p: Problem, i: int, P, h: float, rtol: float, atol: float) -> bool:
    o, j = torch.from_numpy(P.o), torch.from_numpy(P.j)
    got = _numerical(p, i, P, o, j, h, atol)
    if got is None:
        return False
    a = _analytic(p, i, P, o, j, atol)
    if a is None:
        return False
    n, r, l, noise = got
    err = (a - n).abs()
    # stricter than torch's atol + rtol |n|: the central difference's own error (its rounding,
    # and a curvature bound from its one-sided halves) instead of rtol |n|, so an analytic
    # entry outside P summed into this one shows beyond atol, as the dense comparison sees it;
    # a right gradient that only passes within rtol costs the dense comparison, never a verdict
    thr = noise.add_(atol).add_((r - l).abs()).add_(n.abs(), alpha=STRICT)
    bad = ~(err <= thr)
    if bad.any():        # the kink rule, on the failing entries only
        return bool(rule.kinks(a[bad], err[bad], thr[bad], r[bad], l[bad]).all()) and p.deterministic()
    return True


def _colour_chunks(p: Problem, i: int, cols: torch.Tensor, ncol: int, h: float):
    """Yield (a, b, F+, F-, f0) for colours a..b-1: outputs at x +- h 1_g, on the CPU."""
    x = real(p.inputs[i])
    n_in = p.n(i)
    per = max(1, min(ncol, OUT_BUDGET // max(1, 2 * p.M, 2 * n_in)))
    f0 = p.f0.cpu()
    for a in range(0, ncol, per):
        b = min(ncol, a + per)
        d = torch.zeros(b - a, n_in, dtype=x.dtype)
        inside = (cols >= a) & (cols < b)
        d[cols[inside] - a, torch.nonzero(inside).squeeze(1)] = h
        F = p.perturbed(i, torch.cat([d, -d]).to(x.device)).cpu()
        yield a, b, F[:b - a], F[b - a:], f0.to(F.dtype)


def _rounding(Fp, Fm, f0, h):
    return rule.magnitude(Fp, Fm, f0) * rule.scale(Fp.dtype, h)


def _numerical(p: Problem, i: int, P, o, j, h: float, atol: float):
    """(n, r, l, noise) at P's entries: central, one-sided differences and the rounding term;
    None when a row has a nonzero difference where P has no entry of that colour."""
    cols, ncol = P.columns()
    cols = torch.from_numpy(cols)
    cj = cols[j]
    vals = [torch.empty(len(o), dtype=torch.float64) for _ in range(4)]
    for a, b, Fp, Fm, f0 in _colour_chunks(p, i, cols, ncol, h):
        sel = (cj >= a) & (cj < b)
        g, oo = cj[sel] - a, o[sel]
        off = Fp != Fm                      # outputs a colour moved where P has no entry of it
        off[g, oo] = False
        if off.any():
            fp, fm, f = Fp[off], Fm[off], f0.expand_as(Fp)[off]
            if not bool((((fp - fm) / (2 * h)).abs() <= atol + _rounding(fp, fm, f, h)).all()):
                return None
        fp, fm, f = Fp[g, oo], Fm[g, oo], f0[oo]
        vals[0][sel] = ((fp - fm) / (2 * h)).to(torch.float64)
        vals[1][sel] = ((fp - f) / h).to(torch.float64)
        vals[2][sel] = ((f - fm) / h).to(torch.float64)
        vals[3][sel] = _rounding(fp, fm, f, h) * ((fp != f) | (fm != f))
    return tuple(vals)


def sparse_columns(p: Problem, i: int, h: float, atol: float):
    """The numerical Jacobian of input i on its probed pattern, for projected rows (fast mode,
    or random cotangents over the budget): its entries (o, j) and there the central (D) and
    one-sided (R, L) differences and the rounding term of the outputs each column moved (N).
    None when the pattern is too large or a difference is nonzero off it."""
    if sum(s > 1 for s in pattern.virtual_shape(tuple(real(p.inputs[i]).shape))) < 2:
        return None           # one probe per entry: the entries' own columns cost the same
    P = pattern.probe(p, i, h, PATTERN_MAX)
    if P is None:
        return None
    o, j = torch.from_numpy(P.o), torch.from_numpy(P.j)
    got = _numerical(p, i, P, o, j, h, atol)
    return None if got is None else (o, j) + got


def _analytic(p: Problem, i: int, P, o, j, atol: float):
    """The analytic Jacobian at P's entries from one backward row per row colour; None when a
    backward row is nonzero at an input entry where P has no row of that colour."""
    rows, nrow = P.rows()
    rows = torch.from_numpy(rows)
    M, n_in = p.M, p.n(i)
    gen = torch.Generator().manual_seed(5 + i)
    v = 1 + torch.rand(M, generator=gen, dtype=torch.float64)
    ro = rows[o]
    out = torch.empty(len(o), dtype=torch.float64)
    per = max(1, min(nrow, ROWS_BUDGET // max(n_in, M, 1), 1024))
    for a in range(0, nrow, per):
        b = min(nrow, a + per)
        C = torch.zeros(b - a, M, dtype=torch.float64)
        inside = (rows >= a) & (rows < b)
        at = torch.nonzero(inside).squeeze(1)
        C[rows[at] - a, at] = v[at]
        B = p.vjp(C.to(p.f0.device), only=[i])[i].to(torch.float64).cpu()
        sel = (ro >= a) & (ro < b)
        r, jj, oo = ro[sel] - a, j[sel], o[sel]
        covered = torch.zeros(b - a, n_in, dtype=torch.bool)
        covered[r, jj] = True
        if not bool((B.abs()[~covered] <= atol).all()):
            return None
        out[sel] = B[r, jj] / v[oo]
    return out
