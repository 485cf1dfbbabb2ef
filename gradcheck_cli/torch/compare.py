"""The drop-in's verdict: every entry of ``C J`` analytic against central differences.

C is the identity (every Jacobian entry: rows are output entries) when the Jacobian fits
``jacobian.BUDGET`` and fast_mode is off, else ``per_output`` seeded random cotangents for each
output (rows are (output, cotangent k)); the input side is entry by entry. Over the budget, an
input of more than PATTERN_MIN entries gets its numerical columns from its probed pattern
(coloured.py: a pair of forwards per colour) when that works; in fast mode an input past a
small budget of work (``_route``) is compared along 2 x DIRECTIONS forwards in seeded random
unit directions, torch's fast mode with more directions, and a failing direction is followed
entry by entry. Entry verdict (rule.py), torch's allclose plus the rounding term of the central
difference::

    |a - n| <= atol + rtol |n| + 32 u max(|f(x+h)|, |f(x-h)|, |f(x)|) / h     (u of the dtype)

For a row c of random cotangents the rounding term is ``c``'s magnitudes against those of the
outputs the perturbation moved (the others' differences are exact zeros). An entry failing it
passes as a kink when its one-sided differences (f(x+h)-f(x))/h and
(f(x)-f(x-h))/h disagree by at least a tenth of the error and ``a`` lies between them.
"""
from __future__ import annotations

import dataclasses

import torch

from ..ranking import rounded
from . import coloured, rule
from .jacobian import BUDGET, Problem

WORST = 3
RANDOM_PER_OUTPUT = 8     # cotangents per output when the Jacobian is over budget
FAST_PER_OUTPUT = 1       # ... in fast mode (the input side stays entry by entry: one suffices)
DIRECTIONS = 4            # fast mode: random directions where entry by entry costs too much
PATTERN_MIN = 64          # projected rows: past this many entries, columns from the probed pattern
SMALL_WORK = 2**12        # fast mode: perturbed values (forwards x (n + M)) entry by entry,
FAST_CALLS = 16           # ... or forwards, where vmap cannot batch the function (a loop)
LOOP_DIRECTIONS = 2       # directions per input in such a loop (torch: 1)


@dataclasses.dataclass
class Pair:
    """One (input, output) block of the comparison."""

    input: int
    output: int
    compared: int = 0
    failed: int = 0
    kinks: int = 0
    max_err: float = 0.0
    worst: list = dataclasses.field(default_factory=list)   # (ratio, input index, row, a, n)
    directions: bool = False   # compared along random directions u (the index is u's number)


@dataclasses.dataclass
class Plan:
    """The cotangents: identity, or ``per`` random rows per output (seeded)."""

    identity: bool
    per: int
    fast: bool
    K: int
    owner: torch.Tensor      # (K,) output number (in Problem.out_pos order) of each row
    local: torch.Tensor      # (K,) entry of that output (identity) or cotangent number
    C: torch.Tensor | None   # (K, M) for random cotangents

    def describe(self, p: Problem) -> str:
        total = p.M * sum(p.n(i) for i in p.pos)
        if self.identity:
            return f"every entry of the Jacobian ({total} entries)"
        what = "one seeded random cotangent" if self.per == 1 else f"{self.per} seeded random cotangents"
        return (f"J^T c for {what} c per output against every input "
                f"entry (the {total}-entry Jacobian is over the budget of {BUDGET} or fast_mode)")

    def rows(self, a: int, b: int, like: torch.Tensor) -> torch.Tensor:
        if not self.identity:
            return self.C[a:b]
        out = torch.zeros(b - a, len(like), dtype=like.dtype, device=like.device)
        out[torch.arange(b - a), torch.arange(a, b)] = 1
        return out


def plan(p: Problem, fast: bool, seed: int = 0) -> Plan:
    N = sum(p.n(i) for i in p.pos)
    dev = p.f0.device
    if not fast and p.M * max(N, 1) <= BUDGET:
        owner = torch.cat([torch.full((m,), j) for j, m in enumerate(p.sizes)]) if p.sizes else \
            torch.zeros(0, dtype=torch.long)
        local = torch.cat([torch.arange(m) for m in p.sizes]) if p.sizes else owner
        return Plan(True, 0, fast, p.M, owner, local, None)
    per = FAST_PER_OUTPUT if fast else RANDOM_PER_OUTPUT
    g = torch.Generator().manual_seed(seed)
    if len(p.sizes) == 1:
        C = torch.randn(per, p.M, generator=g, dtype=torch.float64)
        return Plan(False, per, fast, per, torch.zeros(per, dtype=torch.long), torch.arange(per), C.to(dev))
    C = torch.zeros(per * len(p.sizes), p.M, dtype=torch.float64)
    off = 0
    for j, m in enumerate(p.sizes):
        C[j * per:(j + 1) * per, off:off + m] = torch.randn(per, m, generator=g, dtype=torch.float64)
        off += m
    owner = torch.arange(len(p.sizes)).repeat_interleave(per)
    local = torch.arange(per).repeat(len(p.sizes))
    return Plan(False, per, fast, len(owner), owner, local, C.to(dev))


def compare(p: Problem, pl: Plan, A: dict[int, torch.Tensor], h: float, rtol: float,
            atol: float) -> list[Pair]:
    """Every (input, output) block, judged entry by entry."""
    pairs = []
    owner = pl.owner.to(p.f0.device)
    blocks = {i: [Pair(i, j) for j in range(len(p.sizes))] for i in p.pos}
    routes = {i: _route(p, pl, i, h, atol) for i in p.pos}
    for i, got in routes.items():
        if got not in ("entries", "directions"):
            _sparse(p, pl, blocks[i], owner, A[i].to(torch.float64), got, h, rtol, atol)
    dirs = frozenset(i for i, r in routes.items() if r != "entries")
    for i, idx, Fp, Fm in p.all_columns(h, dirs, FAST_CALLS if pl.fast else None):
        if idx is None:          # a loop past its budget: directions
            routes[i] = "directions"
            continue
        a = A[i].to(torch.float64)[:, idx.to(A[i].device)]
        _chunk(p, pl, blocks[i], owner, a, Fp, Fm, idx, h, rtol, atol)
    for i in sorted(i for i in p.pos if routes[i] == "directions"):
        k = DIRECTIONS if p.vmap_ok[i] else LOOP_DIRECTIONS
        U, Fp, Fm = p.directions(i, h, k)
        a = A[i].to(torch.float64) @ U.to(torch.float64).to(A[i].device)
        for b in blocks[i]:
            b.directions = True
        _chunk(p, pl, blocks[i], owner, a, Fp, Fm, torch.arange(k), h, rtol, atol)
        if any(b.failed for b in blocks[i]):
            blocks[i] = _every_entry(p, pl, i, owner, A[i].to(torch.float64), h, rtol, atol)
    pairs = [b for i in p.pos for b in blocks[i]]
    return pairs


def _every_entry(p: Problem, pl: Plan, i: int, owner, a, h, rtol, atol) -> list[Pair]:
    """A direction failed: input i again, every entry (its pattern's colours where that works),
    whatever it costs, so the failure names entries; this verdict is the one kept."""
    blocks = [Pair(i, j) for j in range(len(p.sizes))]
    got = coloured.sparse_columns(p, i, h, atol)
    if got is not None:
        _sparse(p, pl, blocks, owner, a, got, h, rtol, atol)
        return blocks
    for idx, Fp, Fm in p.columns(i, h):
        _chunk(p, pl, blocks, owner, a[:, idx.to(a.device)], Fp, Fm, idx, h, rtol, atol)
    return blocks


def _chunk(p: Problem, pl: Plan, blocks, owner, a, Fp, Fm, idx, h, rtol, atol) -> None:
    """Judge analytic ``a`` (K, B) against the central differences of one chunk F+- (B, M)."""
    D = ((Fp - Fm) / (2 * h)).to(torch.float64)               # in the inputs' dtype, like torch
    n = D.T if pl.identity else pl.C.to(torch.float64) @ D.T
    err = (a - n).abs()
    if bool((err <= atol + rtol * n.abs()).all()):           # the common case: no rounding term
        _tally(blocks, owner, err, a.shape[1])
        return
    f0 = p.f0.to(Fp.dtype)
    R = ((Fp - f0) / h).to(torch.float64)
    L = ((f0 - Fm) / h).to(torch.float64)
    mag = rule.magnitude(Fp, Fm, f0)
    if pl.identity:
        r, l, noise = R.T, L.T, mag.T
    else:
        C = pl.C.to(torch.float64)
        # rounding enters c.(F+ - F-) only through the outputs the perturbation moved: summing
        # it over every output (a sort of 8000 values ~ 4e3 each) drowned a 1e-2 error
        mag = torch.where((Fp != f0) | (Fm != f0), mag, torch.zeros_like(mag))
        r, l, noise = C @ R.T, C @ L.T, C.abs() @ mag.T
    noise = noise * rule.scale(Fp.dtype, h)
    _judge(blocks, owner, pl.local, a, n, r, l, noise, idx, rtol, atol)


def _route(p: Problem, pl: Plan, i: int, h: float, atol: float):
    """How input i's numerical columns are taken: "entries" (a pair of forwards per entry); in
    full mode over the budget, its probed pattern where that works (coloured.sparse_columns'
    result: a pair per colour); in fast mode past SMALL_WORK, "directions" (2 x DIRECTIONS
    forwards). A loop past FAST_CALLS turns entries to directions too (all_columns)."""
    n = p.n(i)
    if pl.identity or (not pl.fast and n <= PATTERN_MIN):
        return "entries"
    if not pl.fast:
        return coloured.sparse_columns(p, i, h, atol) or "entries"
    if 2 * n * (n + p.M) <= SMALL_WORK or 2 * n <= FAST_CALLS:
        return "entries"
    return "directions"


def _sparse(p: Problem, pl: Plan, blocks, owner, a, got, h, rtol, atol) -> None:
    """Judge ``a`` (K, n_i) against ``C J`` from the pattern's numerical Jacobian (coloured.py)."""
    o, j, D, R, L, N = got
    C = pl.C.to(torch.float64).to(a.device)
    o, j = o.to(a.device), j.to(a.device)

    def rows(v, C=C):        # C J for J with entries v at (o, j)
        return torch.zeros_like(a).index_add_(1, j, C[:, o] * v.to(a.device))
    n = rows(D)
    idx = torch.arange(a.shape[1])
    err = (a - n).abs()
    if bool((err <= atol + rtol * n.abs()).all()):
        _tally(blocks, owner, err, a.shape[1])
        return
    _judge(blocks, owner, pl.local, a, n, rows(R), rows(L), rows(N, C.abs()), idx, rtol, atol)


def _tally(blocks, owner, err, width: int) -> None:
    """Counts and max error of a chunk where every entry passed."""
    for j, b in enumerate(blocks):
        e = err if len(blocks) == 1 else err[owner == j]
        b.compared += e.numel()
        if e.numel():
            b.max_err = max(b.max_err, float(e.max()))


def _judge(blocks, owner, local, a, n, r, l, noise, idx, rtol, atol) -> None:
    err = (a - n).abs()
    thr = noise.add_(atol).add_(n.abs(), alpha=rtol)
    bad = ~(err <= thr)
    kink = torch.zeros_like(bad)
    if bad.any():      # the kink rule, on the failing entries only
        at = bad.nonzero(as_tuple=True)
        ok = rule.kinks(a[at], err[at], thr[at], r[at], l[at])
        kink[at] = ok
        bad[at] = ~ok
    whole = len(blocks) == 1
    for j, b in enumerate(blocks):
        rows = slice(None) if whole else owner == j
        nrows = a.shape[0] if whole else int(rows.sum())
        if not nrows:
            continue
        b.compared += nrows * a.shape[1]
        bj, kj = bad[rows], kink[rows]
        b.failed += int(bj.sum())
        b.kinks += int(kj.sum())
        e = err[rows]
        if kj.any():
            e = torch.where(kj, torch.zeros_like(e), e)
        if e.numel():
            b.max_err = max(b.max_err, float(torch.nan_to_num(e, nan=float("inf")).max()))
        if bj.any():
            _worst(b, bj, e, thr[rows], a[rows], n[rows], local.to(a.device)[rows], idx)


def _worst(b: Pair, bad, err, thr, a, n, loc, idx) -> None:
    at = bad.nonzero(as_tuple=True)
    ratio = torch.nan_to_num(err[at] / thr[at], nan=float("inf"))
    top = torch.topk(ratio, min(WORST, len(ratio))).indices.tolist()
    for k in top:
        ri, ci = int(at[0][k]), int(at[1][k])
        b.worst.append((float(ratio[k]), int(idx[ci]), int(loc[ri]), float(a[ri, ci]), float(n[ri, ci])))
    b.worst = sorted(b.worst, key=lambda w: (-float(rounded(w[0])), w[1], w[2]))[:WORST]   # ranking.py
