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
import scipy.sparse as sp
import torch

from .jacobian import OUT_BUDGET, Problem, real


def probe(p: Problem, i: int, h: float, max_nnz: int) -> sp.csr_matrix | None:
    """P (M x n_i, bool) for input i, or None when it would hold more than ``max_nnz`` entries."""
    x = real(p.inputs[i])
    shape = tuple(x.shape)
    dims = [d for d, s in enumerate(shape) if s > 1]
    A = [_changed(p, i, h, shape, d) for d in dims]
    count = np.ones(p.M, dtype=np.int64)
    for a in A:
        count *= a.sum(axis=0)
        if count.sum() > max_nnz:
            return None
    return _khatri_rao(A, [shape[d] for d in dims], p.M)


def _changed(p: Problem, i: int, h: float, shape: tuple, d: int) -> np.ndarray:
    """(s_d, M) bool: the outputs that move when slice k of dimension d is perturbed."""
    x = real(p.inputs[i])
    s = shape[d]
    gen = torch.Generator().manual_seed(11 + 7 * i + d)
    w = (torch.rand(shape, generator=gen, dtype=torch.float64) + 0.5) * \
        torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
    w = (h * w).to(x.dtype).to(x.device).reshape(-1)
    slot = torch.arange(x.numel(), device=x.device).reshape(shape)
    slot = slot.movedim(d, 0).reshape(s, -1)          # entries of each slice, flat
    out = np.zeros((s, p.M), dtype=bool)
    per = max(1, min(s, OUT_BUDGET // max(1, 2 * p.M, 2 * x.numel())))
    for a in range(0, s, per):
        b = min(s, a + per)
        delta = torch.zeros(2 * (b - a) + 1, x.numel(), dtype=x.dtype, device=x.device)
        rows = torch.arange(b - a, device=x.device).unsqueeze(1)
        idx = slot[a:b]
        delta[rows, idx] = w[idx]
        delta[b - a + rows, idx] = -w[idx]
        F = p.perturbed(i, delta)
        ref = F[-1]
        moved = (F[:-1] != ref) & ~(F[:-1].isnan() & ref.isnan())
        out[a:b] = (moved[:b - a] | moved[b - a:]).cpu().numpy()
    return out


def _khatri_rao(A: list[np.ndarray], sizes: list[int], M: int) -> sp.csr_matrix:
    """P[o, j] = prod_d A_d[j_d, o], j flat in C order over the probed dimensions."""
    idx = np.zeros(M, dtype=np.int64)             # one (empty) index per output to start from
    ptr = np.arange(M + 1, dtype=np.int64)
    for a, s in zip(A, sizes):
        Ac = sp.csc_matrix(a)                     # (s, M): per output, the slices that moved it
        c, e = np.diff(ptr), np.diff(Ac.indptr)
        n = c * e
        new_ptr = np.concatenate([[0], np.cumsum(n)])
        col = np.repeat(np.arange(M), n)
        t = np.arange(new_ptr[-1]) - new_ptr[col]
        first = idx[ptr[col] + t // np.maximum(e[col], 1)]
        second = Ac.indices[Ac.indptr[col] + t % np.maximum(e[col], 1)]
        idx, ptr = first * s + second, new_ptr
    n_in = int(np.prod(sizes)) if sizes else 1
    data = np.ones(len(idx), dtype=bool)
    return sp.csr_matrix((data, idx, ptr), shape=(M, n_in))


def colour(P: sp.csr_matrix) -> tuple[np.ndarray, int]:
    """Greedy colouring of P's columns, natural order: no two columns of a colour share a row
    (scipy's Curtis-Powell-Reid grouping)."""
    from scipy.optimize._numdiff import group_columns

    n = P.shape[1]
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    if P.nnz == 0:
        return np.zeros(n, dtype=np.int64), 1
    g = np.asarray(group_columns(P.astype(np.int8), order=np.arange(n)), dtype=np.int64)
    return g, int(g.max()) + 1
