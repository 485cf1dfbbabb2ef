"""The verdict of one row: central test, kink rule, float32 notes (see check.py's docstring).

Verdict of one entry (a analytic, n central difference at the default step h):

    |a - n| <= atol + rtol * max(|a|, |n|) + noise (+ 64 e32 in float32)
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .cases import Case
from .float32 import U32, _float64_side, _value_noise, cap_at_run, float32_error  # noqa: F401 (API)
from .network import Network
from .numeric import NOISE_FACTOR, U64, Numerical
from .ranking import rank_desc
from .results import Agreement, Entry, Row

# (rtol, atol) per dtype; docs/verdicts.md says why
DEFAULT_TOLERANCE = {"float64": (1e-6, 1e-9), "float32": (1e-3, 1e-5)}
ERR32_FACTOR = 64.0   # float32 error estimate -> tolerance (measured actual/estimate <= 25)
REFINE = 8            # the kink rule's second step is h / REFINE
WORST_SHOWN = 5


def tolerance(case: Case) -> tuple[float, float]:
    rtol, atol = DEFAULT_TOLERANCE[case.dtype]
    return (case.rtol if case.rtol is not None else rtol, case.atol if case.atol is not None else atol)


def _float32_note(row: Row, i: int, type_name: str, t: str, f: str, a64: np.ndarray,
                  numer: Numerical, fine, need, struct, case: Case, froz=None, on_kink=False) -> str:
    """Say whether a float32 failure exists only in float32: judge the same form run in float64."""
    rtol, atol = DEFAULT_TOLERANCE["float64"]
    r64 = _judge(i, type_name, t, f, np.asarray(a64, np.float64), numer, rtol, atol, None,
                 fine, need, struct, froz, on_kink)
    lead = f"{row.note}; " if row.note else ""
    if r64.passed:
        return (f"{lead}fails only in float32: the same form in float64 passes "
                f"(max rel err {r64.max_rel_error:.1e})")
    return f"{lead}fails in float64 too ({r64.failed} entries): not a precision problem"


def _threshold(a, n, noise, rtol, atol, extra):
    thr = atol + rtol * np.maximum(np.abs(a), np.abs(n)) + noise
    return thr if extra is None else thr + extra


def _needs_refinement(a, numer: Numerical, rtol, atol, extra, struct, on_kink=False) -> np.ndarray:
    """Entries that fail the central test and that a kink could explain (every failing entry
    when a layer from this one on sits exactly on a kink: its step may cross several at once,
    and their one-sided differences can even agree)."""
    n = numer.values
    err = np.abs(a - n)
    thr = _threshold(a, n, numer.noise, rtol, atol, extra)
    fails = ~(err <= thr) & np.isfinite(a) & np.isfinite(n)
    gap = np.abs(numer.dplus + numer.dminus) / numer.step   # |right - left|, from the local differences
    explainable = gap >= 0.1 * err           # the one-sided differences disagree: maybe a kink
    if struct is not None:
        explainable |= struct
    return fails & (explainable | on_kink)


@dataclasses.dataclass
class Refined:
    """The kink rule's numbers for the entries it judges: the terms of L (the regularizer as one
    more term) at v +- h and v +- h/REFINE, arrays (k, T), ``base`` (T,) at v; and from them
    ``lo``, ``hi``, ``noise`` (k,): sum over the terms of min / max of the one-sided
    derivatives (Richardson-extrapolated) and their rounding estimate. The per-term arrays are
    dropped (None) where there are many terms (one per output entry, ``net.split_terms``)."""

    base: np.ndarray | None
    plus: np.ndarray | None
    minus: np.ndarray | None
    plus_fine: np.ndarray | None
    minus_fine: np.ndarray | None
    step: np.ndarray
    step_fine: np.ndarray
    lo: np.ndarray = None
    hi: np.ndarray = None
    noise: np.ndarray = None

    def __post_init__(self):
        if self.lo is None:
            self.lo, self.hi, self.noise = bounds(self.base, self.plus, self.minus, self.plus_fine,
                                                  self.minus_fine, self.step, self.step_fine)

    def subset(self, k: np.ndarray) -> "Refined":
        pick = (lambda a: None if a is None else a[k])
        return Refined(self.base, pick(self.plus), pick(self.minus), pick(self.plus_fine),
                       pick(self.minus_fine), self.step[k], self.step_fine[k], self.lo[k], self.hi[k],
                       self.noise[k])


def bounds(base, plus, minus, plus_fine, minus_fine, step, step_fine):
    """sum over terms of min / max (D_left, D_right) per entry, and the rounding estimate."""
    L0 = base[None]

    def sides(p, m, s):
        s = s[:, None]
        noise = NOISE_FACTOR * U64 * (np.maximum(np.abs(p), np.abs(m)) + np.abs(L0)) / s
        return (L0 - m) / s, (p - L0) / s, noise

    l1, r1, e1 = sides(plus, minus, step)
    l2, r2, e2 = sides(plus_fine, minus_fine, step_fine)
    q = REFINE
    d_left, d_right = (q * l2 - l1) / (q - 1), (q * r2 - r1) / (q - 1)
    noise = ((q * e2 + e1) / (q - 1)).sum(axis=1)
    return np.minimum(d_left, d_right).sum(axis=1), np.maximum(d_left, d_right).sum(axis=1), noise


def per_sample_losses(net: Network, i: int, t: str, values: np.ndarray, xs: list[np.ndarray]) -> np.ndarray:
    """The terms of L for K values of layer i's tensor t: (K, N + 1), samples then regularizer.

    A layer checked alone (``net.split_terms``, local.py) splits further, into one term per
    output entry (K, N M + 1): an entry of a max-pool input that ties in two overlapping windows
    has a kink in each window's term, and only per-term bounds contain every valid tie-break."""
    y = net.stacked_outputs(i, t, values, xs)
    if _split(net, i, t):
        terms = net.loss.terms_stacked(y).reshape(len(values), -1)
    else:
        terms = net.loss.per_sample_stacked(y)
    return np.concatenate([terms, net.stacked_reg(i, t, values)[:, None]], axis=1)


def _split(net: Network, i: int, t: str) -> bool:
    """Whether the kink rule bounds each loss term of layer i's ``t`` (see per_sample_losses):
    a layer checked alone whose entries may each reach several output terms (overlapping
    windows, a parameter). Where each entry reaches one term, per-sample bounds are the same."""
    if not (net.split_terms and net.loss.loss.entrywise):
        return False
    S = net.structure(i, t)
    return S is None or int(np.diff(S.tocsc().indptr).max(initial=0)) > 1


def refine(net: Network, i: int, t: str, xs: list[np.ndarray], base: np.ndarray, index: np.ndarray,
           step: np.ndarray, chunk: int) -> Refined:
    """Evaluate the per-sample terms at v +- h and v +- h/REFINE for the flat entries ``index``."""
    from . import numeric

    flat = np.asarray(base, np.float64).reshape(-1)
    k = len(index)
    steps = np.stack([step, -step, step / REFINE, -step / REFINE])      # (4, k)
    # entries of x with disjoint regions share copies (numeric.py); else one entry per copy below
    split = _split(net, i, t)
    coloured = None if split else numeric.sample_terms(
        net, i, t, xs, index, steps, 2 * chunk * net.copy_bytes(i, t))
    if coloured is not None:
        L0, out = coloured
        return Refined(L0, out[0], out[1], out[2], out[3], step, step / REFINE)
    L0 = per_sample_losses(net, i, t, flat.reshape(1, *base.shape), xs)[0]
    per = max(1, chunk // 2)
    if split:               # one term per output entry: keep the bounds only, chunk by chunk
        per = max(1, min(per, (64 * 2**20) // (8 * 4 * L0.size)))
    parts = []
    for start in range(0, k, per):
        j = index[start:start + per]
        m = len(j)
        V = np.repeat(flat[None], 4 * m, axis=0)
        V[np.arange(4 * m), np.tile(j, 4)] += steps[:, start:start + m].reshape(-1)
        out = per_sample_losses(net, i, t, V.reshape(4 * m, *base.shape), xs).reshape(4, m, -1)
        if split:
            out = Refined(L0, *out, step[start:start + m], step[start:start + m] / REFINE)
            out = Refined(None, None, None, None, None, out.step, out.step_fine, out.lo, out.hi, out.noise)
        parts.append(out)
    if split:
        cat = (lambda name: np.concatenate([getattr(p, name) for p in parts]) if parts else np.zeros(0))
        return Refined(None, None, None, None, None, step, step / REFINE, cat("lo"), cat("hi"), cat("noise"))
    out = np.concatenate(parts, axis=1)
    return Refined(L0, out[0], out[1], out[2], out[3], step, step / REFINE)


def _kink_pass(a, n, fine: Refined, pos: np.ndarray, rtol, atol, extra):
    """For the entries at positions ``pos``: does a lie in [sum_n min(D_left,n, D_right,n),
    sum_n max(...)], the one-sided differences of each term extrapolated to step 0?

    Splitting L into its per-sample terms lets several samples sit on their kinks at once (a zero
    bias and a zero weight column put every sample on ReLU's kink): each term's analytic share lies
    between its own one-sided derivatives, so the sum lies between the sums of the bounds.
    """
    lo, hi, noise = fine.lo, fine.hi, fine.noise
    ap = a[pos]
    thr = atol + rtol * np.maximum(np.abs(ap), np.abs(n[pos])) + noise
    if extra is not None:
        thr = thr + extra[pos]
    return (ap >= lo - thr) & (ap <= hi + thr)


def _frozen_verdict(kink_ok, a, froz, at: np.ndarray, pos: np.ndarray, rtol, atol, extra) -> np.ndarray:
    """For the entries at positions ``pos``: a equals the frozen network's derivative (frozen.py),
    or the kink rule passed it (``kink_ok``) and the frozen network still crosses a kink there
    (one not frozen: its own one-sided differences disagree). Where the frozen network is smooth,
    its derivative alone decides."""
    nf, noise, gap = froz[0][at], froz[1][at], froz[2][at]
    ap = a[pos]
    thr = _threshold(ap, nf, noise, rtol, atol, None if extra is None else extra[pos])
    err = np.abs(ap - nf)
    return (err <= thr) | (kink_ok & (gap >= 0.1 * err))


def _judge(i: int, type_name: str, t: str, f: str, a_full: np.ndarray, numer: Numerical,
           rtol: float, atol: float, extra: np.ndarray | None = None,
           fine: Refined | None = None, need: np.ndarray | None = None,
           struct: np.ndarray | None = None, froz: tuple[np.ndarray, ...] | None = None,
           on_kink: bool = False) -> Row:
    """One row: the central test, then the kink rule for the entries ``need`` (refined in ``fine``),
    then for those still failing the frozen network's differences ``froz`` (frozen.py)."""
    shape = a_full.shape
    a = a_full.reshape(-1)[numer.index]
    n = numer.values
    err = np.abs(a - n)
    mag = np.maximum(np.abs(a), np.abs(n))
    thr = _threshold(a, n, numer.noise, rtol, atol, extra)
    finite = np.isfinite(a) & np.isfinite(n)
    bad = ~(err <= thr) | ~finite             # NaN/Inf on either side fails
    kink = np.zeros_like(bad) if struct is None else struct.copy()
    by_kink = np.zeros_like(bad)              # failed the central test, passed by the kink rule
    if fine is not None and need is not None and bad.any():
        mine = _needs_refinement(a, numer, rtol, atol, extra, struct, on_kink) & need
        if mine.any():
            pos = np.flatnonzero(mine)
            at = np.searchsorted(np.flatnonzero(need), pos)
            ok = _kink_pass(a, n, fine.subset(at), pos, rtol, atol, extra)
            if froz is not None:
                ok = _frozen_verdict(ok, a, froz, at, pos, rtol, atol, extra)
            bad[pos[ok]] = False
            kink[pos[ok]] = True
            by_kink[pos[ok]] = True
    # entries passed by the kink rule were judged against other numbers: they do not count in
    # the max errors nor as the worst entry
    err = np.where(by_kink, 0.0, err)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = err / np.maximum(mag, atol / rtol)
        ratio = np.where(finite, err / thr, np.inf)
    # the maps' per-entry ratio, > 1 exactly where the entry fails (0/0 -> 0: both sides 0)
    shown = np.where(bad, np.where(ratio > 1, ratio, np.inf), np.nan_to_num(np.minimum(ratio, 1.0)))
    order = rank_desc(ratio, numer.index)[:WORST_SHOWN]   # same order on every machine
    worst = [Entry(_unravel(numer.index[k], shape), float(a[k]), float(n[k]), float(err[k]),
                   float(rel[k])) for k in order if bad[k]]
    wi = _unravel(numer.index[order[0]], shape) if len(order) else ()
    notes = []
    if not np.all(np.isfinite(a)):
        k = int(np.flatnonzero(~np.isfinite(a))[0])
        notes.append(f"analytic gradient has {int((~np.isfinite(a)).sum())} NaN/Inf entries "
                     f"(first at {list(_unravel(numer.index[k], shape))})")
    if not np.all(np.isfinite(n)):
        notes.append(f"the forward gives NaN/Inf near {int((~np.isfinite(n)).sum())} entries "
                     f"(numerical gradient not finite)")
    return Row(i, type_name, t, f, tuple(shape), len(n), float(np.max(err, initial=0.0)),
               float(np.max(rel, initial=0.0)), wi, int(bad.sum()), int(kink.sum()),
               not bad.any(), worst, "; ".join(notes), verdict=shown)


def _unravel(k, shape) -> tuple[int, ...]:
    return tuple(int(v) for v in np.unravel_index(int(k), shape))


def _agreement(i: int, t: str, pairs: list[tuple[str, np.ndarray]]) -> Agreement:
    with np.errstate(invalid="ignore"):          # NaN gradients are reported by their rows
        return _agreement_of(i, t, pairs)


def _agreement_of(i: int, t: str, pairs: list[tuple[str, np.ndarray]]) -> Agreement:
    diff, scale = 0.0, 0.0
    for k, (_, g) in enumerate(pairs):
        scale = max(scale, float(np.max(np.abs(g), initial=0.0)))
        for _, h in pairs[k + 1:]:
            diff = max(diff, float(np.max(np.abs(np.asarray(g, np.float64) - h), initial=0.0)))
    return Agreement(i, t, tuple(f for f, _ in pairs), diff, diff / scale if scale else diff)
