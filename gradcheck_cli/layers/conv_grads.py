"""The three gradient forms of conv2d as functions ``(dy, x, W, stride, padding) -> (dx, dW, db)``:
kron (seed 001, P_phi and P_pad as scipy.sparse 0/1 matrices), correlation (seed 003 §7 with
seed 002's dilation for stride) and spray (seed 002 eqs. (9)-(10)). ``padding`` as in
conv_ops.py: (ph, pw) or ((top, bottom), (left, right)).
"""
from __future__ import annotations

import functools

import numpy as np

from ..lazy import sparse as sp
from .conv_ops import Pair, check_shapes as _check_shapes, dilate, pad2d, pads, unpad2d

__all__ = ["kron_matrices", "convolve_full", "correlate_valid", "conv2d_grads_kron",
           "conv2d_grads_correlation", "conv2d_grads_spray", "GRADS"]


# ==========================================================================================
# kron form: seed 001 with P_phi, P_pad as sparse 0/1 matrices
# ==========================================================================================
def kron_matrices(C: int, H: int, W: int, kernel: Pair, stride: Pair,
                  padding) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """P_phi and P_pad of seed 001 for one instance Z (C x H*W), as scipy.sparse 0/1 matrices.

    Column-major vec, channel fastest (vec-form.md): vec(Z)[c + r*C + q*H*C] = Z at channel c,
    row r, column q. ``P_pad`` (C*Hp*Wp x C*H*W) embeds vec(Z) into vec(pad(Z)).
    ``P_phi`` (kh*kw*C*Ho*Wo x C*Hp*Wp) gathers vec(phi(pad(Z))), where phi(pad(Z)) is the
    (kh*kw*C) x (Ho*Wo) im2col matrix whose row k = i + j*kh + c*kh*kw (filter row fastest,
    then filter column, then channel) and column p + q*Ho (output position, column-major).
    ``padding``: (ph, pw) or ((top, bottom), (left, right)).
    """
    return _kron_matrices(C, H, W, tuple(kernel), tuple(stride), pads(padding))


@functools.lru_cache(maxsize=64)
def _kron_matrices(C: int, H: int, W: int, kernel: Pair, stride: Pair,
                   padding: tuple[Pair, Pair]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    kh, kw = kernel
    sh, sw = stride
    (pt, pb), (pl, pr) = padding
    Hp, Wp = H + pt + pb, W + pl + pr
    Ho, Wo = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    # P_pad: vec(Z)[c, r, q] -> vec(pad Z)[c, r + pt, q + pl]
    c, r, q = np.meshgrid(np.arange(C), np.arange(H), np.arange(W), indexing="ij")
    src = (c + r * C + q * H * C).ravel()
    dst = (c + (r + pt) * C + (q + pl) * Hp * C).ravel()
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
                      padding=(0, 0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    P_phi, P_pad = kron_matrices(C, H, Wd, (kh, kw), stride, padding)
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
                             padding=(0, 0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
                       padding=(0, 0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


GRADS = {"kron": conv2d_grads_kron, "correlation": conv2d_grads_correlation,
         "spray": conv2d_grads_spray}
