"""1-D convolution layers: conv1d, correlation1d (seed 003 §7) and convolution1d (seed 003 §6).

- conv1d: cross-correlation, conv2d on (N, C, 1, L) with a (1, k) kernel.
- correlation1d: seed 003 §7, y_i = sum_j x_{i+j} w_j, one channel, no bias.
- convolution1d: seed 003 §6.1's true convolution y_i = sum_j x_{i-j} w_j (the kernel flipped),
  with channels, stride, padding and bias as conv1d:

      y[n, o, q] = b[o] + sum_{c, j} W[o, c, j] pad(x)[n, c, q s + k - 1 - j],

  i.e. (pad(x) ⊗ W)_i at i = q s + k - 1, the positions where the flipped window lies inside
  pad(x). With padding ``full`` and stride 1 this is ``np.convolve(x, w, "full")``.

``padding`` of all three: an int (zeros on each side) or valid | same | full (conv_ops.py).
"""
from __future__ import annotations

import numpy as np

from ..registry import Layer, Option, form, need, register
from .conv import PADDING_HELP, Conv2d, need_same_stride1
from .conv_grads import conv2d_grads_kron
from .conv_ops import (PADDING_MODES, Pads, conv2d_forward, conv2d_forward_stacked,
                       conv2d_structure, conv2d_workspace, conv_output_size, mode_padding)

__all__ = ["Conv1d", "Correlation1d", "Convolution1d", "line_padding"]


def line_padding(padding: int | str, k: int) -> tuple[int, int]:
    """(before, after) zeros of a 1-D layer's ``padding`` option for a kernel of length k."""
    return mode_padding(padding, k) if isinstance(padding, str) else (int(padding), int(padding))


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
        Option("padding", "int", default=0, min=0, choices=PADDING_MODES,
               help="zero padding on each side: int or " + PADDING_HELP),
        Option("bias", "bool", default=True, help="add b"),
    )
    example_input = (2, 3, 11)
    example = {"out_channels": 2, "kernel": 3, "stride": 2, "padding": 1}

    @property
    def k(self):
        return (1, self.kernel)

    @property
    def s(self):
        return (1, self.stride)

    @property
    def p(self) -> Pads:
        return (0, 0), line_padding(self.padding, self.kernel)

    def output_shape(self, in_shape):
        need(len(in_shape) == 3, "input", f"{self.type_name} needs (N, C, L), got shape {list(in_shape)}")
        need_same_stride1(self.padding, self.s)
        N, C, L = in_shape
        Lp = L + sum(self.p[1])
        need(Lp >= self.kernel, "kernel", f"kernel {self.kernel} is longer than the padded input {Lp}")
        return (N, self.out_channels, conv_output_size(L, self.kernel, self.stride, self.p[1]))

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
# correlation1d: seed 003 §7, y_i = sum_j x_{i+j} w_j on pad(x), x (N, L), w (k,)
# ==========================================================================================
@register("correlation1d")
class Correlation1d(Layer):
    summary = "seed 003 §7: y_i = sum_j pad(x)_{i+j} w_j (padding 0: valid), x (N, L), w (k,)"
    options = (Option("kernel", "int", min=1, help="length k of w"),
               Option("padding", "int", default=0, min=0, choices=PADDING_MODES,
                      help="zero padding on each side: int or " + PADDING_HELP))
    param_names = ("w",)
    example_input = (2, 9)
    example = {"kernel": 3}

    @property
    def p(self) -> Pads:
        return (0, 0), line_padding(self.padding, self.kernel)

    def output_shape(self, in_shape):
        need(len(in_shape) == 2, "input", f"correlation1d needs (N, L), got shape {list(in_shape)}")
        Lp = in_shape[1] + sum(self.p[1])
        need(Lp >= self.kernel, "kernel", f"kernel {self.kernel} is longer than the padded input {Lp}")
        return (in_shape[0], Lp - self.kernel + 1)

    def param_shapes(self, in_shape):
        return {"w": (self.kernel,)}

    def init_params(self, in_shape, rng):
        return {"w": rng.standard_normal(self.kernel) / np.sqrt(self.kernel)}

    def forward(self, x, params):
        return conv2d_forward(x[:, None, None], params["w"][None, None, None], None, (1, 1), self.p)[:, 0, 0]

    def structure(self, in_shape, name):        # x (L,) is (1, 1, L), w (k,) is (1, 1, 1, k)
        if type(self).forward is not Correlation1d.forward:
            return None
        return conv2d_structure((1, 1, in_shape[1]), 1, (1, self.kernel), (1, 1), self.p,
                                "W" if name == "w" else name)

    def workspace(self, in_shape):
        return conv2d_workspace((in_shape[0], 1, 1, in_shape[1]), 1, (1, self.kernel), (1, 1), self.p)

    def forward_stacked(self, x, params, name, values):
        return conv2d_forward_stacked(x[:, None, None], values[:, None, None, None], None,
                                      (1, 1), self.p)[:, :, 0, 0]

    @form("kron", seed="001 eqs. (1), (9) with d = 1, a = 1: dw = dS phi(pad Z)^T, dZ = vec(w^T dS)^T P_phi P_pad")
    def kron(self, dy, x, params):
        dx, dW, _ = conv2d_grads_kron(dy[:, None, None], x[:, None, None], params["w"][None, None, None],
                                      (1, 1), self.p)
        return {"x": dx[:, 0, 0], "w": dW[0, 0, 0]}

    @form("correlation", seed="003 §7.2-7.3: dL/dx = dL/dy ⊗ w (full convolution), dL/dw = x ⊙ dL/dy")
    def correlation(self, dy, x, params):
        w, (pl, _) = params["w"], self.p[1]
        xp = np.pad(x, ((0, 0), self.p[1]))
        dxp = np.stack([np.convolve(g, w, mode="full") for g in dy])          # dy ⊗ w, on pad(x)
        dw = sum(np.correlate(xn, g, mode="valid") for xn, g in zip(xp, dy))   # pad(x) ⊙ dy
        return {"x": dxp[:, pl:pl + x.shape[1]], "w": np.asarray(dw)}           # P_pad^T: the interior

    @form("spray", seed="002 eqs. (9)-(10) in 1-D: dy_i sprays w onto pad(x)[i : i + k]; dw with x as the filter")
    def spray(self, dy, x, params):
        w, (pl, _) = params["w"], self.p[1]
        k, xp = w.size, np.pad(x, ((0, 0), self.p[1]))
        dxp, dw = np.zeros_like(xp, dtype=np.result_type(dy, w)), np.zeros_like(w, dtype=np.result_type(dy, x))
        for i in range(dy.shape[1]):
            dxp[:, i:i + k] += dy[:, i, None] * w
            dw += dy[:, i] @ xp[:, i:i + k]
        return {"x": dxp[:, pl:pl + x.shape[1]], "w": dw}


# ==========================================================================================
# convolution1d: seed 003 §6, y_i = sum_j x_{i-j} w_j (the kernel flipped), channels as conv1d
# ==========================================================================================
def _flip(W: np.ndarray) -> np.ndarray:
    """W J: the taps of every (o, c) reversed (J the exchange matrix, J = J^T = J^-1)."""
    return np.ascontiguousarray(W[..., ::-1])


@register("convolution1d")
class Convolution1d(Conv1d):
    """True convolution (seed 003 §6.1): conv1d's cross-correlation with the kernel flipped."""

    summary = "seed 003 §6: true convolution y_i = b + sum_j pad(x)_{i-j} W_j (kernel flipped); x (N, C, L), W (out, in, k), b (out)"
    example = {"out_channels": 2, "kernel": 4, "stride": 1, "padding": "same"}

    def forward(self, x, params):               # pad(x) ⊗ W = pad(x) ⊙ (W J)
        return Conv1d.forward(self, x, {**params, "W": _flip(params["W"])})

    def forward_stacked(self, x, params, name, values):
        if name == "W":
            values = _flip(values)
        return Conv1d.forward_stacked(self, x, {**params, "W": _flip(params["W"])}, name, values)

    def structure(self, in_shape, name):
        """conv1d's, with the taps of W reversed: W[o, c, j] meets pad(x)[q s + k - 1 - j]."""
        if type(self).forward is not Convolution1d.forward:
            return None
        S = conv2d_structure((in_shape[1], 1, in_shape[2]), self.out_channels, self.k, self.s, self.p, name)
        if name != "W" or S is None:
            return S
        return S.tocsc()[:, _flip(np.arange(S.shape[1]).reshape(-1, self.kernel)).ravel()].tocsr()

    @form("kron", seed="001 eqs. (1), (5), (9) with W^m (I ⊗ J) (J reverses the taps): dW = dS phi(pad Z)^T (I ⊗ J), db = dS 1, dZ = vec((W J)^T dS)^T P_phi P_pad")
    def kron(self, dy, x, params):
        g = self._grads("kron", dy, x, {**params, "W": _flip(params["W"])})
        return {**g, "W": _flip(g["W"])}                      # J^T = J: reverse the taps back

    @form("correlation", seed="003 §6.2 eq. (4): <dy, Δx ⊗ w> = <Δx, dy ⊙ w>, so dx = dy ⊙ w; dw = dy ⊙ x by (4) then (1) (the dual of (3), used by correlation1d)")
    def correlation(self, dy, x, params):
        W, (k, s), (pl, _) = params["W"], (self.kernel, self.stride), self.p[1]
        xp = np.pad(x, ((0, 0), (0, 0), self.p[1]))
        Lp = xp.shape[2]
        g = np.zeros((*dy.shape[:2], Lp), dtype=dy.dtype)       # dL/d(pad(x) ⊗ W) on the line:
        g[:, :, k - 1:k - 1 + s * (dy.shape[2] - 1) + 1:s] = dy  # y_q is (pad(x) ⊗ W)_{q s + k - 1}
        dxp = np.zeros(xp.shape, dtype=np.result_type(dy, W))
        dW = np.empty(W.shape, dtype=np.result_type(dy, x))
        for j in range(k):                                      # (A ⊙ B)_i = sum_j A_{i+j} B_j
            dxp[:, :, :Lp - j] += np.einsum("nom,oc->ncm", g[:, :, j:], W[:, :, j])   # dy ⊙ w
            dW[:, :, j] = np.einsum("nom,ncm->oc", g[:, :, j:], xp[:, :, :Lp - j])     # dy ⊙ x
        out = {"x": np.ascontiguousarray(dxp[:, :, pl:pl + x.shape[2]]), "W": dW}
        if self.bias:
            out["b"] = dy.sum(axis=(0, 2))                       # <dy, Δb 1> = <sum dy, Δb>
        return out

    @form("spray", seed="002 eqs. (9)-(10): each dy_q sprays the rotated filter W' = W J onto pad(x)[q s : q s + k]; dW with x as the filter")
    def spray(self, dy, x, params):
        W, (k, s), (pl, _) = params["W"], (self.kernel, self.stride), self.p[1]
        xp = np.pad(x, ((0, 0), (0, 0), self.p[1]))
        Wr = _flip(W)                                           # W': the filter as it meets pad(x)
        dxp = np.zeros(xp.shape, dtype=np.result_type(dy, W))
        dWr = np.zeros(W.shape, dtype=np.result_type(dy, x))
        for q in range(dy.shape[2]):
            g = dy[:, :, q]                                     # (N, O)
            dxp[:, :, q * s:q * s + k] += np.einsum("no,ocj->ncj", g, Wr)
            dWr += np.einsum("no,ncj->ocj", g, xp[:, :, q * s:q * s + k])
        out = {"x": np.ascontiguousarray(dxp[:, :, pl:pl + x.shape[2]]), "W": _flip(dWr)}
        if self.bias:
            out["b"] = dy.sum(axis=(0, 2))                       # each dy_{n,o,q} sprays onto b_o
        return out
