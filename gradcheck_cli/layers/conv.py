"""Convolution layers: conv2d here; conv1d, correlation1d and convolution1d in conv1d.py.

Convolution here is cross-correlation, as in deep learning (seed 002 §2):

    y[n, o, p, q] = b[o] + sum_{c, i, j} W[o, c, i, j] * pad(x)[n, c, p*sh + i, q*sw + j]

with x (N, C, H, W), W (O, C, kh, kw), b (O,), stride (sh, sw), zero padding (pt, pb) rows
above/below and (pl, pr) columns left/right, and output size Ho = floor((H + pt + pb - kh) / sh) + 1
(the remainder rows of pad(x) are never read). ``padding`` is an int, [ph, pw], or one of the
modes valid | same | full (conv_ops.py says what each pads).

This module re-exports the public, stable API that other layers build on:

- conv_ops.py: :func:`conv2d_forward`, :func:`conv2d_forward_stacked`, :func:`columns` (im2col),
  :func:`conv2d_structure`, :func:`conv2d_workspace`, :func:`pad2d`, :func:`unpad2d`,
  :func:`dilate`, :func:`resolve_padding` and the padding modes.
- conv_grads.py: :func:`conv2d_grads_kron`, :func:`conv2d_grads_correlation`,
  :func:`conv2d_grads_spray` — ``(dx, dW, db)`` from dy = dL/dy in each derivation form;
  :func:`kron_matrices` (P_phi, P_pad of seed 001 as scipy.sparse), :func:`convolve_full`,
  :func:`correlate_valid` (the pieces of seed 003's form).

Index conventions of the kron form follow ../shared notes vec-form.md (simpleNN): column-major
vec, channel fastest, then height, then width, then instance.
"""
from __future__ import annotations

import numpy as np

from ..registry import Layer, Option, form, need, pair, register
from .conv_grads import *  # noqa: F401,F403 - the public API, re-exported
from .conv_grads import GRADS, __all__ as _grads_all
from .conv_ops import *  # noqa: F401,F403 - the public API, re-exported
from .conv_ops import PADDING_MODES, Pair, Pads, conv_output_size, resolve_padding, __all__ as _ops_all
from .conv_ops import conv2d_forward, conv2d_forward_stacked, conv2d_structure, conv2d_workspace

__all__ = [*_ops_all, *_grads_all, "Conv2d"]

PADDING_HELP = "valid | same | full (conv_ops.py: same is PyTorch's, stride 1 only)"


def need_same_stride1(padding, stride: Pair) -> None:
    """``padding: same`` keeps the length only at stride 1 (as in PyTorch): refuse it otherwise."""
    need(padding != "same" or tuple(stride) == (1, 1), "padding",
         f"padding 'same' needs stride 1 (got stride {list(stride)}); give the padding as a number")


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
        Option("padding", "pair", default=0, min=0, choices=PADDING_MODES,
               help="zero padding on each side: int, [ph, pw] or " + PADDING_HELP),
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
    def p(self) -> Pads:
        """((top, bottom), (left, right)) zeros, the padding mode resolved for this kernel."""
        return resolve_padding(self.padding, self.k)

    def output_shape(self, in_shape):
        need(len(in_shape) == 4, "input", f"conv2d needs (N, C, H, W), got shape {list(in_shape)}")
        need_same_stride1(self.padding, self.s)
        (kh, kw), (sh, sw), (ph, pw) = self.k, self.s, self.p
        N, C, H, W = in_shape
        Hp, Wp = H + sum(ph), W + sum(pw)
        need(Hp >= kh and Wp >= kw, "kernel", f"kernel {[kh, kw]} is larger than the padded input {[Hp, Wp]}")
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
        dx, dW, db = GRADS[which](dy, x, params["W"], self.s, self.p)
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
