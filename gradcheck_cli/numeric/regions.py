"""Region sums of coloured copies: for each perturbed entry, the change of the loss terms in its
own region (see coloured.py), with the check that no term outside every region moved.

The copies of a plan run once (:func:`region_sums`), and several losses of the same outputs
(a layer's upstream and random cotangents, local.py) are read off them.
"""
from __future__ import annotations

import numpy as np

from .central import U64

VALIDATE = 1e4   # a term outside every perturbed region may move by this many u * |term|
OWNER_MAX = 2**22  # entries of the owner map (colours x terms); larger plans gather instead


class StructureViolated(Exception):
    """A loss term outside every perturbed region moved: the declared structure is too small."""


def _threshold(p, T0: np.ndarray) -> np.ndarray:
    """How far a loss term outside every perturbed region may move (rounding): (N, M) for x,
    (M,) for parameters (their terms are summed over the samples)."""
    ref = np.abs(T0) if p.shared else np.abs(T0).sum(axis=0)
    return VALIDATE * U64 * (ref + ref.mean())


def _uniform(p) -> np.ndarray | None:
    """The entries of one sample (x) or of the tensor (parameters) when every sample checks the
    same ones: then one owner map per colour serves every sample. None otherwise."""
    if not p.shared:
        return p.index
    E = p.per_sample_size
    N = p.shape[0]
    if len(p.index) % N:
        return None
    e = p.index[: len(p.index) // N]
    if np.array_equal(p.index, (np.arange(N)[:, None] * E + e[None, :]).reshape(-1)):
        return e
    return None


def _columns(S, cols: np.ndarray):
    """S[:, cols], without the copy when cols is every column in order."""
    if len(cols) == S.shape[1] and np.array_equal(cols, np.arange(len(cols))):
        return S
    return S[:, cols]


def _owners(S, cols: np.ndarray, colour: np.ndarray, colours: int) -> np.ndarray:
    """owner[c, r] = position in ``cols`` of the entry of colour c whose region holds term r
    (at most one, by the colouring), or -1."""
    sub = _columns(S, cols).tocoo()
    owner = np.full((colours, S.shape[0]), -1, dtype=np.int64)
    owner[colour[sub.col], sub.row] = sub.col
    return owner


def region_sums_of(net, losses: list, p, xs, deltas: np.ndarray, budget: int, progress) -> list:
    """coloured.region_sums for several (bound loss, T0) of the same network outputs: the copies
    of plan ``p`` run once; a (moved, size) per loss."""
    i, t = p.layer, p.tensor
    flat = np.asarray(net.value_of(i, t, xs), dtype=np.float64).reshape(-1)
    S = p.structure.tocsc() if p.structure is not None else None
    cols = _uniform(p) if S is not None else None
    if cols is not None and p.colours * losses[0][1].shape[1] <= OWNER_MAX:
        sums = []
        for _, T0 in losses:       # the owner map is the plan's: made once for every loss
            sums.append(_Owned(p, T0, S, cols, deltas.shape[0], sums[0] if sums else None))
    else:
        sums = [_Gathered(p, T0, S, deltas.shape[0]) for _, T0 in losses]
    for c0, c1, sel, kl, y in _chunks(net, p, xs, flat, deltas, budget):
        for (loss, _), acc in zip(losses, sums):
            acc.add(c0, c1, sel, kl, loss.terms_stacked(y))
        if progress:
            progress(len(sel))
    return [acc.result() for acc in sums]


class _Gathered:
    """Region sums entry by entry (a region per entry: --sample, or no structure)."""

    def __init__(self, p, T0: np.ndarray, S, n_rows: int):
        self.p, self.T0, self.S, self.n_rows = p, T0, S, n_rows
        self.thr = _threshold(p, T0)
        self.moved, self.size = np.zeros((n_rows, len(p.index))), np.zeros((n_rows, len(p.index)))

    def add(self, c0, c1, sel, kl, T):
        p, S, n_rows = self.p, self.S, self.n_rows
        k, j = c1 - c0, p.index[sel]
        N, M = self.T0.shape
        rows = N if p.shared else 1                     # copy rows per perturbed copy
        D = T - self.T0
        if not p.shared:
            D, T = D.sum(axis=1, keepdims=True), np.abs(T).sum(axis=1, keepdims=True)
        else:
            T = np.abs(T)
        sample, e = np.divmod(j, p.per_sample_size) if p.shared else (np.zeros(len(j), dtype=np.int64), j)
        at = kl * rows + sample                                          # copy row of each entry
        D, T = D.reshape(n_rows, k * rows, M), T.reshape(n_rows, k * rows, M)
        if S is None:   # each entry's region: every term of its sample(s)
            self.moved[:, sel], self.size[:, sel] = D[:, at].sum(axis=2), T[:, at].sum(axis=2)
            return
        counts = S.indptr[e + 1] - S.indptr[e]          # entries differ between samples: gather
        who = np.repeat(np.arange(len(j)), counts)
        r = S.indices[np.repeat(S.indptr[e] - np.cumsum(counts) + counts, counts) + np.arange(who.size)]
        for s in range(n_rows):
            self.moved[s, sel] = np.bincount(who, D[s, at[who], r], minlength=len(j))
            self.size[s, sel] = np.bincount(who, T[s, at[who], r], minlength=len(j))
        D[:, at[who], r] = 0.0                   # what remains must not have moved
        if np.any(np.abs(D.reshape(n_rows, k, -1)) > self.thr.reshape(-1)):
            raise StructureViolated(f"layers[{p.layer}].{p.tensor}")

    def result(self):
        return self.moved, self.size


def _chunks(net, p, xs, flat: np.ndarray, deltas: np.ndarray, budget: int):
    """Run the copies of ``p`` a chunk of colours at a time: yields (c0, c1, positions of the
    chunk's entries, their colour - c0, network outputs (S k, N, ...) of its copies), copy
    s*k + kl holding colour c0 + kl moved by deltas[s]. One buffer for every chunk: fresh pages
    cost more than the copy."""
    i, t, idx = p.layer, p.tensor, p.index
    n_rows = deltas.shape[0]
    shape = net.value_of(i, t, xs).shape
    order = np.argsort(p.colour, kind="stable")
    bounds = np.searchsorted(p.colour[order], np.arange(p.colours + 1))
    K = max(1, min(p.colours, budget // max(1, n_rows * net.copy_bytes(i, t))))
    buf = np.empty((n_rows * K, flat.size))
    for c0 in range(0, p.colours, K):
        c1 = min(p.colours, c0 + K)
        k = c1 - c0
        sel = order[bounds[c0]:bounds[c1]]
        j, kl = idx[sel], p.colour[sel] - c0
        V = buf[:n_rows * k]
        V[:] = flat
        for s in range(n_rows):
            V[s * k + kl, j] += deltas[s, sel]
        yield c0, c1, sel, kl, net.stacked_outputs(i, t, V.reshape(n_rows * k, *shape), xs)


class _Owned:
    """Region sums when every sample checks the same entries ``cols`` and one owner map
    (colour, term) -> entry serves them all: one bincount per delta row and chunk."""

    def __init__(self, p, T0: np.ndarray, S, cols: np.ndarray, n_rows: int, like: "_Owned | None" = None):
        N, M = T0.shape
        self.p, self.T0, self.G, self.rows = p, T0, len(cols), (N if p.shared else 1)
        if like is not None:
            self.outside, self.bins = like.outside, like.bins
        else:
            owner = _owners(S, cols, p.colour[:self.G], p.colours)
            self.outside = owner < 0
            self.bins = np.where(self.outside, self.G, owner)           # G: the terms nobody owns
        self.thr = _threshold(p, T0)
        ref = np.abs(T0) if p.shared else np.abs(T0).sum(axis=0, keepdims=True)
        self.size = np.asarray((_columns(S, cols).T @ ref.T).T).reshape(-1)   # sum of |T0| over each region
        self.sums = np.zeros((n_rows, self.rows, self.G + 1))

    def add(self, c0, c1, sel, kl, T):
        p, rows, G = self.p, self.rows, self.G
        n_rows, k, M = self.sums.shape[0], c1 - c0, self.T0.shape[1]
        D = np.subtract(T, self.T0, out=T) if p.shared else (T - self.T0).sum(axis=1, keepdims=True)
        D = D.reshape(n_rows, k, rows, M)
        lab = (np.arange(rows)[None, :, None] * (G + 1) + self.bins[c0:c1, None, :]).reshape(-1)
        for s in range(n_rows):
            self.sums[s] += np.bincount(lab, D[s].reshape(-1), minlength=rows * (G + 1)).reshape(rows, G + 1)
        over = np.abs(D, out=D) > self.thr
        if np.any(np.logical_and(over, self.outside[None, c0:c1, None, :], out=over)):
            raise StructureViolated(f"layers[{p.layer}].{p.tensor}")

    def result(self):
        moved = self.sums[:, :, :self.G].reshape(self.sums.shape[0], -1)   # (copy row, entry) -> position
        return moved, np.broadcast_to(self.size, moved.shape)
