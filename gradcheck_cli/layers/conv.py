"""Convolution layers: conv2d, conv1d, correlation1d — forward and three gradient forms.

Convolution here is cross-correlation, as in deep learning (seed 002 §2):

    y[n, o, p, q] = b[o] + sum_{c, i, j} W[o, c, i, j] * pad(x)[n, c, p*sh + i, q*sw + j]

with x (N, C, H, W), W (O, C, kh, kw), b (O,), stride (sh, sw), zero padding (ph, pw) and
output size Ho = floor((H + 2 ph - kh) / sh) + 1 (the remainder rows of pad(x) are never read).

The module-level functions are the public, stable API (other layers build on them):

- :func:`conv2d_forward` — y from x, W, b.
- :func:`conv2d_forward_stacked` — y for K weight tensors at once (one im2col, one product per sample).
- :func:`columns` — im2col of pad(x) as a contiguous (N, C*kh*kw, Ho*Wo) array.
- :func:`conv2d_structure` — which outputs each entry of x, W, b reaches (for the numerical check).
- :func:`conv2d_grads_kron`, :func:`conv2d_grads_correlation`, :func:`conv2d_grads_spray` —
  ``(dx, dW, db)`` from dy = dL/dy in each derivation form; ``db`` is always returned.
- :func:`kron_matrices` — P_phi (im2col) and P_pad of seed 001 as scipy.sparse matrices;
  :func:`dilate`, :func:`convolve_full`, :func:`correlate_valid` — the pieces of seed 003's form.

conv1d is conv2d on (N, C, 1, L) with a (1, k) kernel; correlation1d is seed 003 §7,
y_i = sum_j x_{i+j} w_j, one channel and no bias.
Index conventions of the kron form follow ../shared notes vec-form.md (simpleNN): column-major
vec, channel fastest, then height, then width, then instance.
"""
from __future__ import annotations

import functools

import numpy as np
from ..lazy import sparse as sp

from ..registry import Layer, Option, form, need, pair, register

__all__ = [
    "conv_output_size", "pad2d", "unpad2d", "kron_matrices", "dilate",
    "convolve_full", "correlate_valid", "columns", "conv2d_structure", "conv2d_workspace",
    "conv2d_forward", "conv2d_forward_stacked",
    "conv2d_grads_kron", "conv2d_grads_correlation", "conv2d_grads_spray",
    "Conv2d", "Conv1d", "Correlation1d",
]

Pair = tuple[int, int]


# ==========================================================================================
# shared pieces
# ==========================================================================================
def conv_output_size(n: int, k: int, s: int, p: int) -> int:
    """floor((n + 2p - k) / s) + 1: outputs along one axis (seed 001: a_conv)."""
    return (n + 2 * p - k) // s + 1


def pad2d(x: np.ndarray, padding: Pair) -> np.ndarray:
    """Zero-pad the last two axes of x by (ph, pw) on both sides (seed 001: pad(Z) = P_pad Z)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    width = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
    return np.pad(x, width)


def unpad2d(xp: np.ndarray, padding: Pair, shape: tuple[int, int]) -> np.ndarray:
    """The interior of a padded array (P_pad^T): rows ph..ph+H, columns pw..pw+W."""
    ph, pw = padding
    H, W = shape
    return xp[..., ph:ph + H, pw:pw + W]


def dilate(dy: np.ndarray, stride: Pair) -> np.ndarray:
    """Insert (s - 1) zeros between neighbouring entries of the last two axes (seed 002's trick).

    A strided convolution is the stride-1 convolution sampled every s entries, so its backward
    is the stride-1 backward of the zero-filled ("dilated") dL/dy.
    """
    sh, sw = stride
    if sh == 1 and sw == 1:
        return dy
    *lead, Ho, Wo = dy.shape
    out = np.zeros((*lead, (Ho - 1) * sh + 1, (Wo - 1) * sw + 1), dtype=dy.dtype)
    out[..., ::sh, ::sw] = dy
    return out


def _check_shapes(x: np.ndarray, W: np.ndarray) -> None:
    if x.ndim != 4 or W.ndim != 4 or x.shape[1] != W.shape[1]:
        raise ValueError(f"conv2d: x (N, C, H, W) and W (O, C, kh, kw) do not match: "
                         f"{x.shape} vs {W.shape}")


# ==========================================================================================
# forward
# ==========================================================================================
COLUMNS_BLOCK = 2 * 2**20   # bytes of im2col built at once by conv2d_forward (about 4x faster
                            # on a large batch than one im2col of the whole batch: cache)


def columns(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    """im2col as a contiguous (N, C*kh*kw, Ho*Wo) array: row (c, i, j), column (p, q) holds
    pad(x)[n, c, p*sh + i, q*sw + j]. Built by kh*kw strided slice copies, whose inner axis
    stays contiguous (much faster than a transposed copy of a 6-D strided view)."""
    (kh, kw), (sh, sw) = kernel, stride
    xp = pad2d(x, padding)
    N, C, Hp, Wp = xp.shape
    Ho, Wo = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    cols = np.empty((N, C, kh, kw, Ho, Wo), dtype=xp.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw]
    return cols.reshape(N, C * kh * kw, Ho * Wo)


def conv2d_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray | None,
                   stride: Pair = (1, 1), padding: Pair = (0, 0)) -> np.ndarray:
    """y = W * pad(x) + b (cross-correlation): x (N, C, H, W), W (O, C, kh, kw), b (O,) or None.

    Returns y (N, O, Ho, Wo): im2col (:func:`columns`), then y[n] = W^m cols[n], one batched
    matrix product, no Python loop over samples or positions.
    """
    _check_shapes(x, W)
    N, O = x.shape[0], W.shape[0]
    (kh, kw), (sh, sw), (ph, pw) = W.shape[2:], stride, padding
    Ho, Wo = conv_output_size(x.shape[2], kh, sh, ph), conv_output_size(x.shape[3], kw, sw, pw)
    Wm = W.reshape(O, -1)
    y = np.empty((N, O, Ho * Wo), dtype=np.result_type(x, W))
    block = max(1, COLUMNS_BLOCK // max(1, Wm.shape[1] * Ho * Wo * x.itemsize))
    for s in range(0, N, block):         # a few samples at a time: their columns stay in cache
        np.matmul(Wm, columns(x[s:s + block], (kh, kw), stride, padding), out=y[s:s + block])
    y = y.reshape(N, O, Ho, Wo)
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv2d_forward_stacked(x: np.ndarray, Ws: np.ndarray, b: np.ndarray | None,
                           stride: Pair = (1, 1), padding: Pair = (0, 0)) -> np.ndarray:
    """Outputs for K weight tensors Ws (K, O, C, kh, kw) at once: (K, N, O, Ho, Wo).

    im2col once, then one matrix product per sample for all K weights.
    """
    K, O, C, kh, kw = Ws.shape
    N, (sh, sw), (ph, pw) = x.shape[0], stride, padding
    Ho, Wo = conv_output_size(x.shape[2], kh, sh, ph), conv_output_size(x.shape[3], kw, sw, pw)
    Y = np.matmul(Ws.reshape(K * O, C * kh * kw), columns(x, (kh, kw), stride, padding))
    y = Y.reshape(N, K, O, Ho, Wo).transpose(1, 0, 2, 3, 4)   # (N, K O, Ho Wo) -> (K, N, O, Ho, Wo)
    if b is not None:
        y = y + b[None, None, :, None, None]
    return y


def conv2d_structure(in_shape: tuple[int, int, int], out_channels: int, kernel: Pair,
                     stride: Pair, padding: Pair, name: str):
    """Which outputs y[o, p, q] of one sample each entry of ``name`` (x, W or b) can change.

    x[c, h, w] and W[o, c, i, j] meet at y[o, p, q] when h = p sh + i - ph and
    w = q sw + j - pw fall inside the input (a padded zero changes nothing). Used by the
    numerical check to perturb entries with disjoint receptive fields together.
    """
    from .. import sparsity

    C, H, Wd = in_shape
    O, (kh, kw), (sh, sw), (ph, pw) = out_channels, kernel, stride, padding
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(Wd, kw, sw, pw)
    n_out = O * Ho * Wo
    if name == "b":
        o = np.arange(n_out) // (Ho * Wo)
        return sparsity.from_pairs(np.arange(n_out), o, (n_out, O))

    def hits(n_o, k, s_, p_, n_in):        # (output index, kernel offset, input index) in bounds
        po, i = np.meshgrid(np.arange(n_o), np.arange(k), indexing="ij")
        at = po * s_ + i - p_
        ok = (at >= 0) & (at < n_in)
        return po[ok], i[ok], at[ok]

    p, i, h = hits(Ho, kh, sh, ph, H)
    q, j, w = hits(Wo, kw, sw, pw, Wd)
    if O * C * len(p) * len(q) > sparsity.MAX_NNZ:     # too big to hold: claim nothing (safe)
        return None
    o = np.arange(O)[:, None, None, None]
    c = np.arange(C)[None, :, None, None]
    rows = o * (Ho * Wo) + (p * Wo)[:, None] + q[None, :]
    if name == "x":
        cols = c * (H * Wd) + (h * Wd)[:, None] + w[None, :]
        return sparsity.from_pairs(np.broadcast_to(rows, (O, C, *rows.shape[2:])),
                                   np.broadcast_to(cols, (O, C, *cols.shape[2:])), (n_out, C * H * Wd))
    cols = (o * C + c) * (kh * kw) + (i * kw)[:, None] + j[None, :]
    return sparsity.from_pairs(np.broadcast_to(rows, (O, C, *rows.shape[2:])),
                               np.broadcast_to(cols, (O, C, *cols.shape[2:])), (n_out, O * C * kh * kw))


def conv2d_workspace(in_shape: tuple[int, ...], out_channels: int, kernel: Pair, stride: Pair,
                     padding: Pair) -> int:
    """Bytes of scratch a float64 forward needs: the padded input and its im2col copy."""
    N, C, H, Wd = in_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(Wd, kw, sw, pw)
    return 8 * N * C * ((H + 2 * ph) * (Wd + 2 * pw) + Ho * Wo * kh * kw)


# ==========================================================================================
# kron form: seed 001 with P_phi, P_pad as sparse 0/1 matrices
# ==========================================================================================
@functools.lru_cache(maxsize=64)
def kron_matrices(C: int, H: int, W: int, kernel: Pair, stride: Pair,
                  padding: Pair) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """P_phi and P_pad of seed 001 for one instance Z (C x H*W), as scipy.sparse 0/1 matrices.

    Column-major vec, channel fastest (vec-form.md): vec(Z)[c + r*C + q*H*C] = Z at channel c,
    row r, column q. ``P_pad`` (C*Hp*Wp x C*H*W) embeds vec(Z) into vec(pad(Z)).
    ``P_phi`` (kh*kw*C*Ho*Wo x C*Hp*Wp) gathers vec(phi(pad(Z))), where phi(pad(Z)) is the
    (kh*kw*C) x (Ho*Wo) im2col matrix whose row k = i + j*kh + c*kh*kw (filter row fastest,
    then filter column, then channel) and column p + q*Ho (output position, column-major).
    """
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    Hp, Wp = H + 2 * ph, W + 2 * pw
    Ho, Wo = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    # P_pad: vec(Z)[c, r, q] -> vec(pad Z)[c, r + ph, q + pw]
    c, r, q = np.meshgrid(np.arange(C), np.arange(H), np.arange(W), indexing="ij")
    src = (c + r * C + q * H * C).ravel()
    dst = (c + (r + ph) * C + (q + pw) * Hp * C).ravel()
    P_pad = sp.csr_matrix((np.ones(src.size), (dst, src)), shape=(C * Hp * Wp, C * H * W))
    # P_phi: row (i + j kh + c kh kw) + (p + q Ho) * kh kw C  <-  pad Z[c, p sh + i, q sw + j]
    i, j, c, p, q = np.meshgrid(np.arange(kh), np.arange(kw), np.arange(C), np.arange(Ho),
                                np.arange(Wo), indexing="ij")
    row = (i + j * kh + c * kh * kw) + (p + q * Ho) * (kh * kw * C)
    col = c + (p * sh + i) * C + (q * sw + j) * Hp * C          # stride only in the offset
    P_phi = sp.csr_matrix((np.ones(row.size), (row.ravel(), col.ravel())),
                          shape=(kh * kw * C * Ho * Wo, C * Hp * Wp))
    return P_phi, P_pad


def _Z(x: np.ndarray) -> np.ndarray:
    """The batch as columns vec(Z^i): (C*H*W, N) in seed 001's order (c, then row, then column)."""
    N = x.shape[0]
    return x.transpose(0, 3, 2, 1).reshape(N, -1).T


def _W_mat(W: np.ndarray) -> np.ndarray:
    """W^m: O x (kh*kw*C), column k = i + j*kh + c*kh*kw."""
    O = W.shape[0]
    return W.transpose(0, 1, 3, 2).reshape(O, -1)


def conv2d_grads_kron(dy: np.ndarray, x: np.ndarray, W: np.ndarray, stride: Pair = (1, 1),
                      padding: Pair = (0, 0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dW, db) by seed 001: eqs. (1), (5) and (9), with phi = P_phi P_pad vec(Z).

    dL/dW^m = sum_i dS^i phi(pad(Z^i))^T         (eq. 1, from vec(AB)^T = vec(A)^T (B ⊗ I))
    dL/db^m = sum_i dS^i 1                        (eq. 5)
    dL/dvec(Z^i)^T = vec(W^T dS^i)^T P_phi P_pad  (eq. 9), i.e. P_pad^T P_phi^T vec(W^T dS^i)
    The Kronecker factors are never formed: the identities turn them into the products above.
    """
    _check_shapes(x, W)
    N, C, H, Wd = x.shape
    O, _, kh, kw = W.shape
    Ho, Wo = dy.shape[2:]
    P_phi, P_pad = kron_matrices(C, H, Wd, (kh, kw), tuple(stride), tuple(padding))
    # phi(pad(Z^i)) for every instance: (kh kw C * Ho Wo) x N -> (kh kw C) x (Ho Wo N)
    Phi = (P_phi @ (P_pad @ _Z(x))).reshape(kh * kw * C, Ho * Wo * N, order="F")
    dS = dy.transpose(1, 0, 3, 2).reshape(O, N * Wo * Ho)       # [dS^1 ... dS^N], column p + q Ho
    Wm = _W_mat(W)
    dWm = dS @ Phi.T                                              # eq. (1), summed over i
    db = dS @ np.ones(Ho * Wo * N)                                # eq. (5), summed over i
    G = (Wm.T @ dS).reshape(kh * kw * C * Ho * Wo, N, order="F")  # vec(W^T dS^i) as columns
    dZ = P_pad.T @ (P_phi.T @ G)                                  # eq. (9): scatter-add, then slice
    dx = dZ.T.reshape(N, Wd, H, C).transpose(0, 3, 2, 1)
    dW = dWm.reshape(O, C, kw, kh).transpose(0, 1, 3, 2)
    dt = np.result_type(dy, x, W)                                 # the 0/1 matrices are float64
    return (np.ascontiguousarray(dx, dtype=dt), np.ascontiguousarray(dW, dtype=dt),
            np.asarray(db, dtype=dt))


# ==========================================================================================
# correlation form: seed 003 §6-7 with seed 002's dilation trick for stride
# ==========================================================================================
def convolve_full(g: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Full convolution g ⊗ W over the last two axes, contracting the output channel o.

    (g ⊗ W)[n, c, a, b] = sum_{o, i, j} g[n, o, a - i, b - j] W[o, c, i, j]  (seed 003 §6.1,
    y_i = sum_j x_{i-j} w_j), for g (N, O, Hg, Wg) and W (O, C, kh, kw); result
    (N, C, Hg + kh - 1, Wg + kw - 1). Evaluated as a sum over the kernel index (i, j).
    """
    N, O, Hg, Wg = g.shape
    _, C, kh, kw = W.shape
    out = np.zeros((N, C, Hg + kh - 1, Wg + kw - 1), dtype=np.result_type(g, W))
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + Hg, j:j + Wg] += np.einsum("nopq,oc->ncpq", g, W[:, :, i, j])
    return out


def correlate_valid(a: np.ndarray, g: np.ndarray, size: Pair) -> np.ndarray:
    """Valid correlation a ⊙ g over the last two axes, summed over the batch: the first ``size``
    lags.

    (a ⊙ g)[o, c, i, j] = sum_{n, p, q} a[n, c, i + p, j + q] g[n, o, p, q]  (seed 003 §6.1,
    y_i = sum_j x_{i+j} w_j with g as the filter), for a (N, C, Ha, Wa), g (N, O, Hg, Wg).
    Evaluated lag by lag, each lag one inner product.
    """
    kh, kw = size
    Hg, Wg = g.shape[2:]
    out = np.empty((g.shape[1], a.shape[1], kh, kw), dtype=np.result_type(a, g))
    for i in range(kh):
        for j in range(kw):
            out[:, :, i, j] = np.einsum("ncpq,nopq->oc", a[:, :, i:i + Hg, j:j + Wg], g)
    return out


def conv2d_grads_correlation(dy: np.ndarray, x: np.ndarray, W: np.ndarray, stride: Pair = (1, 1),
                             padding: Pair = (0, 0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dW, db) by seed 003 §7: y = x ⊙ w gives dL/dx = dL/dy ⊗ w and dL/dw = x ⊙ dL/dy.

    Stride: y is the stride-1 correlation sampled every s entries, so dL/dy is first dilated
    with zeros (seed 002's "simple trick"). Then pad(dx) = dilate(dy) ⊗ W (full convolution, see
    :func:`convolve_full`) and dW = pad(x) ⊙ dilate(dy) (valid correlation, :func:`correlate_valid`).
    Remainder rows of pad(x) that no window reads get no gradient; P_pad^T slices the interior.
    """
    _check_shapes(x, W)
    N, C, H, Wd = x.shape
    O, _, kh, kw = W.shape
    xp = pad2d(x, padding)
    dyd = dilate(dy, stride)                                      # (N, O, Hd, Wd')
    full = convolve_full(dyd, W)                                  # dL/dy ⊗ w
    dxp = np.zeros(xp.shape, dtype=full.dtype)
    dxp[:, :, :full.shape[2], :full.shape[3]] = full              # remainder rows: no gradient
    dW = correlate_valid(xp, dyd, (kh, kw))                       # x ⊙ dL/dy
    db = dy.sum(axis=(0, 2, 3))                                   # <dy, Δb 1> = <sum dy, Δb>
    return np.ascontiguousarray(unpad2d(dxp, padding, (H, Wd))), dW, db


# ==========================================================================================
# spray form: seed 002 eqs. (9)-(10)
# ==========================================================================================
def conv2d_grads_spray(dy: np.ndarray, x: np.ndarray, W: np.ndarray, stride: Pair = (1, 1),
                       padding: Pair = (0, 0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dW, db) by seed 002: each dL/dy[:, :, p, q] sprays onto its receptive field.

    dL/dx = sum_{p,q} dL/dy_{pq} dy_{pq}/dx (eq. 9) with dy_{pq}/dx = W placed on the window at
    (p sh, q sw) (eq. 10; the stride only moves the window). dL/dW: "treat x as the filter" —
    the same dy_{pq} sprays onto dW weighted by the x patch it read. One loop over output
    positions, vectorised over batch and channels.
    """
    _check_shapes(x, W)
    N, C, H, Wd = x.shape
    O, _, kh, kw = W.shape
    sh, sw = stride
    xp = pad2d(x, padding)
    Ho, Wo = dy.shape[2:]
    dxp = np.zeros_like(xp, dtype=np.result_type(dy, W))
    dW = np.zeros_like(W, dtype=np.result_type(dy, x))
    for p in range(Ho):
        for q in range(Wo):
            r, s = p * sh, q * sw
            g = dy[:, :, p, q]                                    # (N, O)
            dxp[:, :, r:r + kh, s:s + kw] += np.einsum("no,ocij->ncij", g, W)
            dW += np.einsum("no,ncij->ocij", g, xp[:, :, r:r + kh, s:s + kw])
    db = dy.sum(axis=(0, 2, 3))                                   # each dy_{n,o,p,q} sprays onto b_o
    return np.ascontiguousarray(unpad2d(dxp, padding, (H, Wd))), dW, db


_GRADS = {"kron": conv2d_grads_kron, "correlation": conv2d_grads_correlation,
          "spray": conv2d_grads_spray}


# ==========================================================================================
# conv2d layer
# ==========================================================================================
@register("conv2d")
class Conv2d(Layer):
    summary = "cross-correlation y = W * pad(x) + b; x (N, C, H, W), W (out, in, kh, kw), b (out)"
    options = (
        Option("out_channels", "int", min=1, help="number of filters (output channels)"),
        Option("kernel", "pair", min=1, help="kernel size: int or [kh, kw]"),
        Option("stride", "pair", default=1, min=1, help="stride: int or [sh, sw]"),
        Option("padding", "pair", default=0, min=0, help="zero padding on each side: int or [ph, pw]"),
        Option("bias", "bool", default=True, help="add b"),
    )
    regularized = ("W",)
    example_input = (2, 3, 7, 6)
    example = {"out_channels": 4, "kernel": [3, 2], "stride": 2, "padding": 1}

    def params(self):
        return ("W", "b") if self.bias else ("W",)

    @property
    def k(self) -> Pair:
        return pair(self.kernel)

    @property
    def s(self) -> Pair:
        return pair(self.stride)

    @property
    def p(self) -> Pair:
        return pair(self.padding)

    def output_shape(self, in_shape):
        need(len(in_shape) == 4, "input", f"conv2d needs (N, C, H, W), got shape {list(in_shape)}")
        (kh, kw), (sh, sw), (ph, pw) = self.k, self.s, self.p
        N, C, H, W = in_shape
        need(H + 2 * ph >= kh and W + 2 * pw >= kw, "kernel",
             f"kernel {[kh, kw]} is larger than the padded input {[H + 2 * ph, W + 2 * pw]}")
        return (N, self.out_channels, conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw))

    def param_shapes(self, in_shape):
        shapes = {"W": (self.out_channels, in_shape[1], *self.k)}
        if self.bias:
            shapes["b"] = (self.out_channels,)
        return shapes

    def init_params(self, in_shape, rng):
        shapes = self.param_shapes(in_shape)
        p = {"W": rng.standard_normal(shapes["W"]) / np.sqrt(np.prod(shapes["W"][1:]))}
        if self.bias:
            p["b"] = 0.1 * rng.standard_normal(shapes["b"])
        return p

    def forward(self, x, params):
        return conv2d_forward(x, params["W"], params.get("b") if self.bias else None, self.s, self.p)

    def structure(self, in_shape, name):
        if type(self).forward is not Conv2d.forward:    # a subclass computing something else: no claim
            return None
        return conv2d_structure(tuple(in_shape[1:]), self.out_channels, self.k, self.s, self.p, name)

    def workspace(self, in_shape):
        return conv2d_workspace(tuple(in_shape), self.out_channels, self.k, self.s, self.p)

    def forward_stacked(self, x, params, name, values):
        b = params.get("b") if self.bias else None
        if name == "W":
            return conv2d_forward_stacked(x, values, b, self.s, self.p)
        y = conv2d_forward(x, params["W"], None, self.s, self.p)
        return y[None] + values[:, None, :, None, None]

    def _grads(self, which, dy, x, params):
        dx, dW, db = _GRADS[which](dy, x, params["W"], self.s, self.p)
        out = {"x": dx, "W": dW}
        if self.bias:
            out["b"] = db
        return out

    @form("kron", seed="001 eqs. (1), (5), (9): dW = dS phi(pad Z)^T, db = dS 1, dZ = vec(W^T dS)^T P_phi P_pad")
    def kron(self, dy, x, params):
        return self._grads("kron", dy, x, params)

    @form("correlation", seed="003 §7: dx = dilate(dy) ⊗ W (full convolution), dW = x ⊙ dilate(dy); stride by zero dilation (002)")
    def correlation(self, dy, x, params):
        return self._grads("correlation", dy, x, params)

    @form("spray", seed="002 eqs. (9)-(10): each dy_pq sprays W onto its receptive field; dW with x as the filter")
    def spray(self, dy, x, params):
        return self._grads("spray", dy, x, params)


# ==========================================================================================
# conv1d layer: conv2d on (N, C, 1, L) with a (1, k) kernel
# ==========================================================================================
@register("conv1d")
class Conv1d(Conv2d):
    """conv2d on (N, C, 1, L) with a (1, k) kernel: its forms are conv2d's, seen through a reshape."""

    summary = "1-D cross-correlation y = W * pad(x) + b; x (N, C, L), W (out, in, k), b (out)"
    options = (
        Option("out_channels", "int", min=1, help="number of filters (output channels)"),
        Option("kernel", "int", min=1, help="kernel length k"),
        Option("stride", "int", default=1, min=1, help="stride"),
        Option("padding", "int", default=0, min=0, help="zero padding on each side"),
        Option("bias", "bool", default=True, help="add b"),
    )
    example_input = (2, 3, 11)
    example = {"out_channels": 2, "kernel": 3, "stride": 2, "padding": 1}

    @property
    def k(self) -> Pair:
        return (1, self.kernel)

    @property
    def s(self) -> Pair:
        return (1, self.stride)

    @property
    def p(self) -> Pair:
        return (0, self.padding)

    def output_shape(self, in_shape):
        need(len(in_shape) == 3, "input", f"conv1d needs (N, C, L), got shape {list(in_shape)}")
        N, C, L = in_shape
        need(L + 2 * self.padding >= self.kernel, "kernel",
             f"kernel {self.kernel} is longer than the padded input {L + 2 * self.padding}")
        return (N, self.out_channels, conv_output_size(L, self.kernel, self.stride, self.padding))

    def param_shapes(self, in_shape):
        shapes = {"W": (self.out_channels, in_shape[1], self.kernel)}
        if self.bias:
            shapes["b"] = (self.out_channels,)
        return shapes

    @staticmethod
    def _as2d(params):
        return {**params, "W": params["W"][:, :, None]}

    def forward(self, x, params):
        return super().forward(x[:, :, None], self._as2d(params))[:, :, 0]

    def structure(self, in_shape, name):        # (C, L) is (C, 1, L): same flat order
        if type(self).forward is not Conv1d.forward:
            return None
        return conv2d_structure((in_shape[1], 1, in_shape[2]), self.out_channels, self.k, self.s, self.p, name)

    def workspace(self, in_shape):
        N, C, L = in_shape
        return super().workspace((N, C, 1, L))

    def forward_stacked(self, x, params, name, values):
        if name == "W":
            values = values[:, :, :, None]
        return super().forward_stacked(x[:, :, None], self._as2d(params), name, values)[..., 0, :]

    def _grads(self, which, dy, x, params):
        g = super()._grads(which, dy[:, :, None], x[:, :, None], self._as2d(params))
        return {k: (v[:, :, 0] if k in ("x", "W") else v) for k, v in g.items()}


# ==========================================================================================
# correlation1d: seed 003 §7, y_i = sum_j x_{i+j} w_j ("valid"), x (N, L), w (k,)
# ==========================================================================================
@register("correlation1d")
class Correlation1d(Layer):
    summary = "seed 003 §7: y_i = sum_j x_{i+j} w_j (valid), x (N, L), w (k,)"
    options = (Option("kernel", "int", min=1, help="length k of w"),)
    param_names = ("w",)
    example_input = (2, 9)
    example = {"kernel": 3}

    def output_shape(self, in_shape):
        need(len(in_shape) == 2, "input", f"correlation1d needs (N, L), got shape {list(in_shape)}")
        need(in_shape[1] >= self.kernel, "kernel",
             f"kernel {self.kernel} is longer than the input length {in_shape[1]}")
        return (in_shape[0], in_shape[1] - self.kernel + 1)

    def param_shapes(self, in_shape):
        return {"w": (self.kernel,)}

    def init_params(self, in_shape, rng):
        return {"w": rng.standard_normal(self.kernel) / np.sqrt(self.kernel)}

    def forward(self, x, params):
        return conv2d_forward(x[:, None, None], params["w"][None, None, None], None)[:, 0, 0]

    def structure(self, in_shape, name):        # x (L,) is (1, 1, L), w (k,) is (1, 1, 1, k)
        if type(self).forward is not Correlation1d.forward:
            return None
        return conv2d_structure((1, 1, in_shape[1]), 1, (1, self.kernel), (1, 1), (0, 0),
                                "W" if name == "w" else name)

    def workspace(self, in_shape):
        return conv2d_workspace((in_shape[0], 1, 1, in_shape[1]), 1, (1, self.kernel), (1, 1), (0, 0))

    def forward_stacked(self, x, params, name, values):
        return conv2d_forward_stacked(x[:, None, None], values[:, None, None, None], None)[:, :, 0, 0]

    @form("kron", seed="001 eqs. (1), (9) with d = 1, a = 1: dw = dS phi(Z)^T, dZ = vec(w^T dS)^T P_phi")
    def kron(self, dy, x, params):
        dx, dW, _ = conv2d_grads_kron(dy[:, None, None], x[:, None, None], params["w"][None, None, None])
        return {"x": dx[:, 0, 0], "w": dW[0, 0, 0]}

    @form("correlation", seed="003 §7.2-7.3: dL/dx = dL/dy ⊗ w (full convolution), dL/dw = x ⊙ dL/dy")
    def correlation(self, dy, x, params):
        w = params["w"]
        dx = np.stack([np.convolve(g, w, mode="full") for g in dy])            # dy ⊗ w
        dw = sum(np.correlate(xn, g, mode="valid") for xn, g in zip(x, dy))     # x ⊙ dy
        return {"x": dx, "w": np.asarray(dw)}

    @form("spray", seed="002 eqs. (9)-(10) in 1-D: dy_i sprays w onto x[i : i + k]; dw with x as the filter")
    def spray(self, dy, x, params):
        w = params["w"]
        k = w.size
        dx, dw = np.zeros_like(x, dtype=np.result_type(dy, w)), np.zeros_like(w, dtype=np.result_type(dy, x))
        for i in range(dy.shape[1]):
            dx[:, i:i + k] += dy[:, i, None] * w
            dw += dy[:, i] @ x[:, i:i + k]
        return {"x": dx, "w": dw}
