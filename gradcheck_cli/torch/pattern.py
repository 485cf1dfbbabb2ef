"""Which outputs each input entry moves: a probed sparsity pattern of the Jacobian, and its colourings.

For an input of real shape (s_1, ..., s_D), slice k of dimension d (every entry whose d-th index
is k) is perturbed by +-h times seeded random weights, in one batch with an unperturbed copy;
``A_d[k]`` is the set of outputs that changed. Entry j = (j_1, ..., j_D) can move output o only
if o changed in every slice holding j, so the pattern is the column-wise Kronecker (Khatri-Rao)
product of the A_d::

    P[o, j] = A_1[j_1, o] and ... and A_D[j_D, o]

sum_d s_d probes instead of one per entry, and exact for the usual shapes (elementwise, matmul,
reductions, convolutions, reshapes, cumulative ops). A pattern that misses an entry costs only
time: coloured.py then finds a nonzero where the pattern says zero and the dense comparison runs.
"""
from __future__ import annotations

import numpy as np
import torch

from .jacobian import OUT_BUDGET, Problem, real


SPLIT = 64      # dimensions of this many entries or more are probed as two (virtual_shape)


class Pattern:
    """P as its entries (o, j), sorted by output o; M outputs, n input entries."""

    def __init__(self, o: np.ndarray, j: np.ndarray, M: int, n: int) -> None:
        self.o, self.j, self.M, self.n = o, j, M, n

    def columns(self) -> tuple[np.ndarray, int]:
        """Colour of each input entry: no two of a colour move the same output."""
        return _colour(self.o, self.j, self.M, self.n)

    def rows(self) -> tuple[np.ndarray, int]:
        """Colour of each output: no two of a colour are moved by the same input entry."""
        return _colour(self.j, self.o, self.n, self.M)


def probe(p: Problem, i: int, h: float, max_nnz: int) -> Pattern | None:
    """P for input i, or None when it would hold more than ``max_nnz`` entries."""
    shape = virtual_shape(tuple(real(p.inputs[i]).shape))
    dims = [d for d, s in enumerate(shape) if s > 1]
    A = _changed(p, i, h, shape, dims) if dims else []
    count = np.ones(p.M, dtype=np.int64)
    for a in A:
        count *= a.sum(axis=0)
        if count.sum() > max_nnz:
            return None
    o, j = _khatri_rao(A, [shape[d] for d in dims], p.M)
    return Pattern(o, j, p.M, p.n(i))


def virtual_shape(shape: tuple) -> tuple:
    """``shape`` with every dimension of SPLIT or more entries split in two (s = a b, a the
    divisor nearest sqrt(s), when a >= 8): the same flat order, sqrt(s) probes instead of s
    (a sort of 8000 values: 2 x (80 + 100) + 1 forwards instead of 16,001)."""
    out = []
    for s in shape:
        a = max((d for d in range(8, int(s ** 0.5) + 1) if s % d == 0), default=0) if s >= SPLIT else 0
        out += [a, s // a] if a else [s]
    return tuple(out)


def _changed(p: Problem, i: int, h: float, shape: tuple, dims: list[int]) -> list[np.ndarray]:
    """For each probed dimension d, (s_d, M) bool: the outputs that move when slice k of d is
    perturbed (+h w and -h w, seeded random weights w of either sign)."""
    x = real(p.inputs[i])
    n = x.numel()
    gen = torch.Generator().manual_seed(11 + 7 * i)
    w = (torch.rand(n, generator=gen, dtype=torch.float64) + 0.5) * \
        torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
    w = (h * w).to(x.dtype)
    flat = torch.arange(n)
    # slice number of every entry in every probed dimension: k + (offset of d's slices)
    strides, offsets, off = [], [], 0
    for d in dims:
        strides.append((int(np.prod(shape[d + 1:])), shape[d]))
        offsets.append(off)
        off += shape[d]
    S = off
    member = torch.stack([(flat // st) % s + o for (st, s), o in zip(strides, offsets)])   # (D, n)
    out = np.zeros((S, p.M), dtype=bool)
    per = max(1, min(S, OUT_BUDGET // max(1, 2 * p.M, 2 * n)))
    for a in range(0, S, per):
        b = min(S, a + per)
        delta = torch.zeros(2 * (b - a) + 1, n, dtype=x.dtype)
        for row in member:                       # one scatter per probed dimension
            if per < S:
                inside = (row >= a) & (row < b)
                r, cols, wc = row[inside] - a, flat[inside], w[inside]
            else:
                r, cols, wc = row, flat, w
            delta[r, cols] = wc
            delta[b - a + r, cols] = -wc
        F = p.perturbed(i, delta.to(x.device))
        ref = F[-1]
        moved = F[:-1] != ref
        if bool(ref.isnan().any()):              # NaN != NaN: an output NaN throughout is unmoved
            moved &= ~(F[:-1].isnan() & ref.isnan())
        out[a:b] = (moved[:b - a] | moved[b - a:]).cpu().numpy()
    return [out[o:o + shape[d]] for d, o in zip(dims, offsets)]


def _khatri_rao(A: list[np.ndarray], sizes: list[int], M: int) -> tuple[np.ndarray, np.ndarray]:
    """Entries (o, j) of P[o, j] = prod_d A_d[j_d, o], j flat in C order, sorted by o."""
    idx = np.zeros(M, dtype=np.int64)             # one (empty) index per output to start from
    ptr = np.arange(M + 1, dtype=np.int64)
    for a, s in zip(A, sizes):
        oo, kk = np.nonzero(a.T)                  # per output, the slices that moved it
        e = np.bincount(oo, minlength=M)
        eptr = np.concatenate([[0], np.cumsum(e)])
        c = np.diff(ptr)
        n = c * e
        new_ptr = np.concatenate([[0], np.cumsum(n)])
        col = np.repeat(np.arange(M), n)
        t = np.arange(new_ptr[-1]) - new_ptr[col]
        ec = np.maximum(e[col], 1)
        idx = idx[ptr[col] + t // ec] * s + kk[eptr[col] + t % ec]
        ptr = new_ptr
    return np.repeat(np.arange(M), np.diff(ptr)), idx


def _colour(r: np.ndarray, c: np.ndarray, m: int, n: int) -> tuple[np.ndarray, int]:
    """Greedy colouring, natural order, of the n columns of the m x n pattern with entries (r, c):
    no two columns of a colour share a row (scipy's Curtis-Powell-Reid grouping)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    if len(r) == 0 or np.bincount(r, minlength=m).max() <= 1:
        return np.zeros(n, dtype=np.int64), 1        # no row is shared: one colour
    import scipy.sparse as sp
    from scipy.optimize._numdiff import group_columns

    A = sp.csc_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(m, n))
    g = np.asarray(group_columns(A, order=np.arange(n)), dtype=np.int64)
    return g, int(g.max()) + 1
