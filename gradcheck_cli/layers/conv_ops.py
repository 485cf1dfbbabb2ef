"""Shared pieces of the convolution layers: padding, output sizes, im2col, the forward, and the
structure declarations. The gradient forms are in conv_grads.py, the layers in conv.py and
conv1d.py.

Padding. Every function takes ``padding`` either as (ph, pw) — ph zeros above and below, pw
left and right, as in seed 001's P_pad — or as ((top, bottom), (left, right)), which the
``padding: same`` mode needs for an even kernel. :func:`pads` turns either into the second.

Padding modes (the ``padding`` option of conv1d, conv2d, correlation1d, convolution1d), per
axis with kernel length k:

- ``valid``: no padding (0, 0): only windows inside x.
- ``full``: (k - 1, k - 1): every window that overlaps x; stride 1 gives L + k - 1 outputs
  (``np.convolve(x, w, "full")`` for convolution1d, ``np.correlate(x, w, "full")`` for correlation1d).
- ``same``: (k - 1) // 2 before and the rest, k - 1 - (k - 1) // 2, after: L outputs. This is
  PyTorch's ``padding="same"``; for an odd k it is also scipy.signal's ``mode="same"``. For an even
  k, scipy and numpy put the extra zero before instead: theirs is ours delayed by one entry
  (theirs[1:] == ours[:-1]).
  ``same`` needs stride 1 (as in PyTorch): with stride s > 1 no padding keeps the length, and
  the case is refused (exit 2); give the padding as a number there.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "PADDING_MODES", "mode_padding", "resolve_padding", "pads", "conv_output_size", "pad2d",
    "unpad2d", "dilate", "columns", "conv2d_structure", "conv2d_workspace", "conv2d_forward",
    "conv2d_forward_stacked",
]

Pair = tuple[int, int]
Pads = tuple[Pair, Pair]
PADDING_MODES = ("valid", "same", "full")


# ==========================================================================================
# padding
# ==========================================================================================
def mode_padding(mode: str, k: int) -> Pair:
    """(before, after) zeros of one axis for a padding mode and a kernel of length k."""
    if mode == "valid":
        return (0, 0)
    if mode == "full":
        return (k - 1, k - 1)
    if mode == "same":
        return ((k - 1) // 2, k - 1 - (k - 1) // 2)
    raise ValueError(f"unknown padding mode {mode!r}; one of {', '.join(PADDING_MODES)}")


def _two(v) -> Pair:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def pads(padding) -> Pads:
    """((top, bottom), (left, right)) from (ph, pw) (symmetric) or from itself."""
    a, b = padding
    return _two(a), _two(b)


def resolve_padding(padding, kernel: Pair) -> Pads:
    """The layer option ``padding`` (int, [ph, pw] or a mode of :data:`PADDING_MODES`) as Pads."""
    if isinstance(padding, str):
        return mode_padding(padding, kernel[0]), mode_padding(padding, kernel[1])
    if isinstance(padding, (tuple, list)):
        return pads(padding)
    return pads((padding, padding))


def conv_output_size(n: int, k: int, s: int, p) -> int:
    """floor((n + p_before + p_after - k) / s) + 1: outputs along one axis (seed 001: a_conv).
    ``p`` is the padding on each side, or (before, after)."""
    before, after = _two(p)
    return (n + before + after - k) // s + 1


def pad2d(x: np.ndarray, padding) -> np.ndarray:
    """Zero-pad the last two axes of x (seed 001: pad(Z) = P_pad Z)."""
    (pt, pb), (pl, pr) = pads(padding)
    if pt == pb == pl == pr == 0:
        return x
    *lead, H, W = x.shape
    out = np.zeros((*lead, H + pt + pb, W + pl + pr), dtype=x.dtype)   # np.pad costs ~0.2 ms a call
    out[..., pt:pt + H, pl:pl + W] = x
    return out


def unpad2d(xp: np.ndarray, padding, shape: Pair) -> np.ndarray:
    """The interior of a padded array (P_pad^T): rows pt..pt+H, columns pl..pl+W."""
    (pt, _), (pl, _) = pads(padding)
    H, W = shape
    return xp[..., pt:pt + H, pl:pl + W]


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


def check_shapes(x: np.ndarray, W: np.ndarray) -> None:
    if x.ndim != 4 or W.ndim != 4 or x.shape[1] != W.shape[1]:
        raise ValueError(f"conv2d: x (N, C, H, W) and W (O, C, kh, kw) do not match: "
                         f"{x.shape} vs {W.shape}")


def _out_hw(in_hw: Pair, kernel: Pair, stride: Pair, padding) -> Pair:
    (ph, pw) = pads(padding)
    return (conv_output_size(in_hw[0], kernel[0], stride[0], ph),
            conv_output_size(in_hw[1], kernel[1], stride[1], pw))


# ==========================================================================================
# forward
# ==========================================================================================
COLUMNS_BLOCK = 2 * 2**20   # bytes of im2col built at once by conv2d_forward (about 4x faster
                            # on a large batch than one im2col of the whole batch: cache)


def columns(x: np.ndarray, kernel: Pair, stride: Pair, padding) -> np.ndarray:
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
                   stride: Pair = (1, 1), padding=(0, 0)) -> np.ndarray:
    """y = W * pad(x) + b (cross-correlation): x (N, C, H, W), W (O, C, kh, kw), b (O,) or None.

    Returns y (N, O, Ho, Wo): im2col (:func:`columns`), then y[n] = W^m cols[n], one batched
    matrix product, no Python loop over samples or positions.
    """
    check_shapes(x, W)
    N, O = x.shape[0], W.shape[0]
    kh, kw = W.shape[2:]
    Ho, Wo = _out_hw(x.shape[2:], (kh, kw), stride, padding)
    Wm = W.reshape(O, -1)
    y = np.empty((N, O, Ho * Wo), dtype=np.result_type(x, W))
    block = max(1, COLUMNS_BLOCK // max(1, Wm.shape[1] * Ho * Wo * x.itemsize))
    xp = pad2d(x, padding) if block < N else x      # padded once, not once per block
    pad = (0, 0) if block < N else padding
    for s in range(0, N, block):         # a few samples at a time: their columns stay in cache
        np.matmul(Wm, columns(xp[s:s + block], (kh, kw), stride, pad), out=y[s:s + block])
    y = y.reshape(N, O, Ho, Wo)
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv2d_forward_stacked(x: np.ndarray, Ws: np.ndarray, b: np.ndarray | None,
                           stride: Pair = (1, 1), padding=(0, 0)) -> np.ndarray:
    """Outputs for K weight tensors Ws (K, O, C, kh, kw) at once: (K, N, O, Ho, Wo).

    im2col once, then one matrix product per sample for all K weights.
    """
    K, O, C, kh, kw = Ws.shape
    N = x.shape[0]
    Ho, Wo = _out_hw(x.shape[2:], (kh, kw), stride, padding)
    Y = np.matmul(Ws.reshape(K * O, C * kh * kw), columns(x, (kh, kw), stride, padding))
    y = Y.reshape(N, K, O, Ho, Wo).transpose(1, 0, 2, 3, 4)   # (N, K O, Ho Wo) -> (K, N, O, Ho, Wo)
    if b is not None:
        y = y + b[None, None, :, None, None]
    return y


# ==========================================================================================
# structure and workspace (for the numerical check)
# ==========================================================================================
def conv2d_structure(in_shape: tuple[int, int, int], out_channels: int, kernel: Pair,
                     stride: Pair, padding, name: str):
    """Which outputs y[o, p, q] of one sample each entry of ``name`` (x, W or b) can change.

    x[c, h, w] and W[o, c, i, j] meet at y[o, p, q] when h = p sh + i - pt and
    w = q sw + j - pl fall inside the input (a padded zero changes nothing). Used by the
    numerical check to perturb entries with disjoint receptive fields together.
    """
    from .. import sparsity

    C, H, Wd = in_shape
    O, (kh, kw), (sh, sw) = out_channels, kernel, stride
    (pt, _), (pl, _) = pads(padding)
    Ho, Wo = _out_hw((H, Wd), kernel, stride, padding)
    n_out = O * Ho * Wo
    if name == "b":
        o = np.arange(n_out) // (Ho * Wo)
        return sparsity.from_pairs(np.arange(n_out), o, (n_out, O))

    def hits(n_o, k, s_, p_, n_in):        # (output index, kernel offset, input index) in bounds
        po, i = np.meshgrid(np.arange(n_o), np.arange(k), indexing="ij")
        at = po * s_ + i - p_
        ok = (at >= 0) & (at < n_in)
        return po[ok], i[ok], at[ok]

    p, i, h = hits(Ho, kh, sh, pt, H)
    q, j, w = hits(Wo, kw, sw, pl, Wd)
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
                     padding) -> int:
    """Bytes of scratch a float64 forward needs: the padded input and its im2col copy."""
    N, C, H, Wd = in_shape
    (kh, kw) = kernel
    (pt, pb), (pl, pr) = pads(padding)
    Ho, Wo = _out_hw((H, Wd), kernel, stride, padding)
    return 8 * N * C * ((H + pt + pb) * (Wd + pl + pr) + Ho * Wo * kh * kw)
