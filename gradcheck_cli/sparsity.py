"""Which entries of a tensor can share one perturbed forward evaluation.

Structure of a tensor (x of a layer, or one of its parameters): a boolean sparse matrix S of
shape (loss terms of one sample, entries), S[r, j] true when entry j can change loss term r.
``None`` stands for "every term of the sample" (the safe default when a layer says nothing).
It is composed from each layer's :meth:`~gradcheck_cli.registry.Layer.structure`, one sample
at a time (built-in layers are per-sample).

Two entries whose columns share no row can be perturbed in the same forward evaluation: each
one's L(v +- h e_j) is then read off the loss terms in its own rows (Curtis, Powell & Reid
1974). :func:`colour_columns` groups the columns greedily (first fit, in index order), which
for a k x k convolution gives the C * k * k colours of the periodic pattern.
"""
from __future__ import annotations

import numpy as np

MAX_NNZ = 64 * 2**20    # larger structures are treated as dense (memory and time of colouring)


def _sp():
    from .lazy import import_module

    return import_module("scipy.sparse")


def identity(n: int):
    """Entry j changes output j only (elementwise layers, reshapes)."""
    return _sp().identity(n, dtype=bool, format="csr")


def from_pairs(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]):
    """Structure with S[rows[k], cols[k]] true."""
    rows, cols = np.asarray(rows).ravel(), np.asarray(cols).ravel()
    data = np.ones(rows.size, dtype=bool)
    return _sp().csr_matrix((data, (rows, cols)), shape=shape)


def compose(outer, inner):
    """Structure of ``outer`` after ``inner`` (boolean product); None when either is dense."""
    if outer is None or inner is None:
        return None
    if outer.nnz and inner.nnz:
        # bound the product's work before doing it: sum over the middle index of row * col counts
        a = np.diff(outer.tocsc().indptr).astype(np.int64)
        b = np.diff(inner.tocsr().indptr).astype(np.int64)
        if int(a @ b) > 8 * MAX_NNZ:
            return None
    out = (outer.tocsr() @ inner.tocsr()).astype(bool)
    return None if out.nnz > MAX_NNZ else out


def _colour_single(indices: np.ndarray, counts: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """First fit when every column reaches at most one row (elementwise layers, a linear
    layer's W): column j's colour is the number of earlier columns in its row."""
    colour = np.zeros(n, dtype=np.int64)
    has = np.flatnonzero(counts == 1)
    rows = indices                                   # one row per column that has one
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.searchsorted(sorted_rows, sorted_rows, side="left")
    colour[has[order]] = np.arange(len(order)) - starts
    return colour, int(colour.max(initial=0)) + 1


def colour_columns(S, cols: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Greedy (first-fit) colouring of the columns ``cols`` of S: no two columns of one colour
    share a row. Returns (colour of each listed column, number of colours).
    ``S`` None (dense): every column its own colour.
    """
    n_all = S.shape[1] if S is not None else 0
    cols = np.arange(n_all) if cols is None else np.asarray(cols)
    n = len(cols)
    if S is None:
        return np.arange(n), n
    S = S.tocsc()
    if n != n_all:
        S = S[:, cols]
    indptr, indices = S.indptr, S.indices
    M = S.shape[0]
    counts = np.diff(indptr)
    if n and counts.max() <= 1:
        return _colour_single(indices, counts, n)
    words = 4
    bits = np.zeros((M, words), dtype=np.uint64)    # bits[r] = colours already touching row r
    colour = np.empty(n, dtype=np.int64)
    full = (1 << 64) - 1
    used = 0
    for j in range(n):
        rows = indices[indptr[j]:indptr[j + 1]]
        if rows.size == 0:
            colour[j] = 0
            used = max(used, 1)
            continue
        taken = np.bitwise_or.reduce(bits[rows], axis=0)
        c = -1
        for w in range(words):
            free = ~int(taken[w]) & full
            if free:
                c = 64 * w + ((free & -free).bit_length() - 1)
                break
        if c < 0:                                   # every colour so far is taken: widen
            c = 64 * words
            bits = np.concatenate([bits, np.zeros((M, words), dtype=np.uint64)], axis=1)
            words *= 2
        bits[rows, c // 64] |= np.uint64(1 << (c % 64))
        colour[j] = c
        used = max(used, c + 1)
    return colour, used
