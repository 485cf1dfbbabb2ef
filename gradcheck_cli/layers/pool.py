"""Pooling layers: maxpool2d and avgpool2d over (N, C, H, W), per channel, no padding.

Windows of ``size`` (kh, kw) start every ``stride`` (sh, sw) (default: the size, seed 001's
non-overlapping pooling); overlapping windows (stride < size) work too. A remainder that does
not fill a window is dropped: Ho = floor((H - kh) / sh) + 1 (= floor(H / kh) when stride = size,
seed 001's "pooled size floor(a_conv / h_pool)").

Max-pooling ties: the first index of the window in row-major order wins (smallest row, then
smallest column) — what ``np.argmax`` over the flattened (kh, kw) window returns, and the order
PyTorch's max_pool2d scans. Every form uses this same rule, so the forms agree exactly even on
ties. (simpleNN's column-major im2col would prefer the smallest column instead; the two differ
only when a window holds equal maxima.) The numerical check treats a tie as a kink: the left and
right differences differ and the analytic value must lie between them.
"""
from __future__ import annotations

import numpy as np
from ..lazy import sparse as sp

from ..registry import Layer, Option, form, need, pair, register
from .conv import conv2d_grads_correlation, kron_matrices

__all__ = ["maxpool2d_forward", "avgpool2d_forward", "maxpool2d_argmax", "pool_gather",
           "MaxPool2d", "AvgPool2d"]


def _taps(x: np.ndarray, size, stride):
    """(i, j, view) for every window offset: view[..., p, q] = x[..., p*sh + i, q*sw + j]."""
    (kh, kw), (sh, sw) = size, stride
    Ho, Wo = (x.shape[-2] - kh) // sh + 1, (x.shape[-1] - kw) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, x[..., i:i + (Ho - 1) * sh + 1:sh, j:j + (Wo - 1) * sw + 1:sw]


def maxpool2d_forward(x: np.ndarray, size, stride) -> np.ndarray:
    """Max of every window: one vectorised maximum per window offset (kh*kw of them)."""
    y = None
    for _, _, v in _taps(x, size, stride):
        y = v.copy() if y is None else np.maximum(y, v, out=y)
    return y


def avgpool2d_forward(x: np.ndarray, size, stride) -> np.ndarray:
    """Mean of every window."""
    y = None
    for _, _, v in _taps(x, size, stride):
        y = v.copy() if y is None else np.add(y, v, out=y)
    return y / (size[0] * size[1])


def maxpool2d_argmax(x: np.ndarray, size, stride) -> np.ndarray:
    """Position (row-major, 0 .. kh*kw-1) of the max in every window; ties -> first index.

    Offsets are visited in row-major order and a later one replaces the best only if strictly
    greater, so equal maxima keep the first (as np.argmax over the flattened window).
    """
    kw = size[1]
    best, arg = None, None
    for i, j, v in _taps(x, size, stride):
        if best is None:
            best, arg = v.copy(), np.zeros(v.shape, dtype=np.intp)
        else:
            more = v > best
            best[more] = v[more]
            arg[more] = i * kw + j
    return arg


def pool_gather(C: int, H: int, W: int, size, stride) -> np.ndarray:
    """For one instance: (Ho*Wo, C, kh*kw) positions in vec(Z) (seed 001 order) of every window.

    Read off P_phi of seed 001 with filter = pool size and no padding (vec-form.md: "the same
    im2col index with filter = stride = pool size"); rows p + q*Ho, windows row-major.
    """
    kh, kw = size
    P_phi, _ = kron_matrices(C, H, W, (kh, kw), tuple(stride), (0, 0))
    Ho, Wo = (H - kh) // stride[0] + 1, (W - kw) // stride[1] + 1
    g = P_phi.indices.reshape(Ho * Wo, C, kw, kh)        # one 1 per row; row i + j kh + c kh kw
    return g.transpose(0, 1, 3, 2).reshape(Ho * Wo, C, kh * kw)


def _vec_batch(x: np.ndarray) -> np.ndarray:
    """vec of the whole batch, seed 001 order: c, then row, then column, then instance."""
    return x.transpose(0, 3, 2, 1).reshape(-1)


def _unvec_batch(v: np.ndarray, shape) -> np.ndarray:
    N, C, H, W = shape
    return v.reshape(N, W, H, C).transpose(0, 3, 2, 1)


class _Pool(Layer):
    options = (
        Option("size", "pair", min=1, help="window: int or [kh, kw]"),
        Option("stride", "pair", default=None, min=1, help="int or [sh, sw]; default: the size"),
    )
    example_input = (2, 3, 6, 7)
    example = {"size": 2, "stride": 2}

    @property
    def k(self):
        return pair(self.size)

    @property
    def s(self):
        return pair(self.stride) if self.stride is not None else self.k

    def output_shape(self, in_shape):
        need(len(in_shape) == 4, "input",
             f"{self.type_name} needs (N, C, H, W), got shape {list(in_shape)}")
        (kh, kw), (sh, sw) = self.k, self.s
        N, C, H, W = in_shape
        need(H >= kh and W >= kw, "size", f"window {[kh, kw]} is larger than the input {[H, W]}")
        return (N, C, (H - kh) // sh + 1, (W - kw) // sw + 1)

    def structure(self, in_shape, name):
        """x[c, h, w] reaches y[c, p, q] of the windows that contain (h, w): each channel on its
        own (for the numerical check's colouring, see sparsity.py)."""
        from .. import sparsity
        from .conv import conv2d_structure

        _, C, H, W = in_shape
        one = conv2d_structure((1, H, W), 1, self.k, self.s, (0, 0), "x")
        if one is None or C * one.nnz > sparsity.MAX_NNZ:
            return None
        one = one.tocoo()
        n_out = one.shape[0]
        c = np.arange(C)[:, None]
        return sparsity.from_pairs(one.row[None] + c * n_out, one.col[None] + c * H * W,
                                   (C * n_out, C * H * W))

    def _P_pool(self, x: np.ndarray, weights: np.ndarray | None) -> sp.csr_matrix:
        """P_pool for the whole batch: vec(Z^{m+1}) = P_pool vec(Z^m) (seed 001 eq. (7)).

        Row c + (p + q Ho) C + n C Ho Wo of the output; ``weights`` None -> max pooling (one 1 at
        the argmax of the window), else the (kh*kw,) weights spread over every window entry.
        """
        N, C, H, W = x.shape
        g = pool_gather(C, H, W, self.k, self.s)               # (HoWo, C, kh kw)
        M = g.shape[0] * C
        rows_one = np.arange(M).reshape(g.shape[0], C)          # c + pq C
        if weights is None:
            vals = np.stack([_vec_batch(x[n:n + 1])[g] for n in range(N)])   # (N, HoWo, C, khkw)
            pick = np.argmax(vals, axis=-1)                     # row-major window order: ties -> first
            cols = np.take_along_axis(np.broadcast_to(g, vals.shape), pick[..., None], -1)[..., 0]
            rows = rows_one[None] + M * np.arange(N)[:, None, None]
            cols = cols + C * H * W * np.arange(N)[:, None, None]
            data = np.ones(rows.size)
        else:
            rows = np.broadcast_to(rows_one[None, :, :, None] + M * np.arange(N)[:, None, None, None],
                                   (N, *g.shape))
            cols = g[None] + C * H * W * np.arange(N)[:, None, None, None]
            data = np.broadcast_to(weights, rows.shape)
        return sp.csr_matrix((np.ravel(data), (np.ravel(rows), np.ravel(cols))),
                             shape=(N * M, x.size))

    def _kron_dx(self, dy, x, weights):
        P = self._P_pool(x, weights)
        dx = _unvec_batch(P.T @ _vec_batch(dy), x.shape)       # P_pool^T: scatter-add
        return {"x": np.ascontiguousarray(dx, dtype=np.result_type(dy, x))}


@register("maxpool2d")
class MaxPool2d(_Pool):
    summary = "max over size windows every stride (default stride = size); ties -> first index (row-major)"
    na = {"correlation": "max is a data-dependent selection, not a correlation with a fixed kernel: "
                         "its backward is P_pool^T (kron) or routing to the argmax (spray)"}

    def forward(self, x, params):
        return maxpool2d_forward(x, self.k, self.s)

    def kink_distance(self, x, params):
        """How far each entry must move to change a window's argmax: the max's gap to the
        runner-up, any other entry's gap to the max (0 on a tie); the least over its windows."""
        out = np.full(x.shape, np.inf)
        win = np.stack([v for _, _, v in _taps(x, self.k, self.s)], axis=-1)   # row-major offsets
        if win.shape[-1] == 1:
            return out                                      # a 1x1 window has no kink
        top = win.max(axis=-1, keepdims=True)
        d = top - win
        second = np.partition(win, -2, axis=-1)[..., -2:-1]
        np.put_along_axis(d, np.argmax(win, axis=-1)[..., None], top - second, axis=-1)
        for k, (_, _, view) in enumerate(_taps(out, self.k, self.s)):
            np.minimum(view, d[..., k], out=view)
        return out

    def frozen_forward(self, x, params, at):
        """x at each window's argmax in ``at`` (ties: the first index, as every form); x may hold
        several copies of the batch, stacked on the first axis."""
        kw, (sh, sw) = self.k[1], self.s
        arg = maxpool2d_argmax(at, self.k, self.s)               # (N, C, Ho, Wo)
        if x.shape[0] != at.shape[0]:                            # x: copies of the batch, stacked
            arg = np.tile(arg, (x.shape[0] // at.shape[0], 1, 1, 1))
        n, c, p, q = np.indices(arg.shape, sparse=True)
        return x[n, c, p * sh + arg // kw, q * sw + arg % kw]

    @form("kron", seed="001 eq. (7): dL/dvec(σ(S))^T = dL/dvec(Z^{m+1})^T P_pool, one 1 per row at the window's argmax")
    def kron(self, dy, x, params):
        return self._kron_dx(dy, x, None)

    @form("spray", seed="002 §4: only the max of each window survives, so each dy routes to its argmax")
    def spray(self, dy, x, params):
        kw, (sh, sw) = self.k[1], self.s
        N, C = x.shape[:2]
        arg = maxpool2d_argmax(x, self.k, self.s)               # (N, C, Ho, Wo)
        dx = np.zeros_like(x, dtype=np.result_type(dy, x))
        n, c = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
        for p in range(dy.shape[2]):
            for q in range(dy.shape[3]):
                a = arg[:, :, p, q]
                dx[n, c, p * sh + a // kw, q * sw + a % kw] += dy[:, :, p, q]   # one target per (n, c)
        return {"x": dx}


@register("avgpool2d")
class AvgPool2d(_Pool):
    summary = "mean over size windows every stride (default stride = size)"

    def forward(self, x, params):
        return avgpool2d_forward(x, self.k, self.s)

    def _w(self):
        kh, kw = self.k
        return np.full(kh * kw, 1.0 / (kh * kw))

    @form("kron", seed="001 eq. (7) with P_pool holding 1/(kh kw) at every window entry: dL/dZ = P_pool^T dL/dZ^{m+1}")
    def kron(self, dy, x, params):
        return self._kron_dx(dy, x, self._w())

    @form("correlation", seed="003 §7 per channel with w = 1/(kh kw): dx = dilate(dy) ⊗ w (full convolution)")
    def correlation(self, dy, x, params):
        N, C, H, W = x.shape
        kh, kw = self.k
        w = np.full((1, 1, kh, kw), 1.0 / (kh * kw), dtype=x.dtype)
        dx, _, _ = conv2d_grads_correlation(dy.reshape(N * C, 1, *dy.shape[2:]),
                                            x.reshape(N * C, 1, H, W), w, self.s, (0, 0))
        return {"x": dx.reshape(x.shape)}

    @form("spray", seed="002 §2 spray view: each dy spreads dy / (kh kw) over its window")
    def spray(self, dy, x, params):
        (kh, kw), (sh, sw) = self.k, self.s
        dx = np.zeros_like(x, dtype=np.result_type(dy, x))
        for p in range(dy.shape[2]):
            for q in range(dy.shape[3]):
                dx[:, :, p * sh:p * sh + kh, q * sw:q * sw + kw] += dy[:, :, p, q, None, None] / (kh * kw)
        return {"x": dx}
