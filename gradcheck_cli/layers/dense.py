"""Dense layers: linear, elementwise activations, add, flatten.

Each layer keeps its forward and every gradient form side by side. Notation: X is the batch
as an N x D matrix (rows are samples, seed 002 / 004), Y = X W + 1 b^T, dY = dL/dY.
vec is column-major (seed 001).
"""
from __future__ import annotations

import numpy as np
from ..lazy import sparse as sp

from .. import sparsity
from ..registry import Layer, Option, form, need, register
from ..vec import mat, vec


def _rows(x: np.ndarray) -> np.ndarray:
    """Every axis but the first flattened: the N x D matrix X."""
    return x.reshape(x.shape[0], -1)


# ==========================================================================================
# linear: Y = X W + 1 b^T
# ==========================================================================================
@register("linear")
class Linear(Layer):
    summary = "Y = X W + b, W (in_features, out_features); flattens all axes but the first"
    options = (
        Option("out_features", "int", min=1, help="number of outputs C"),
        Option("bias", "bool", default=True, help="add b"),
    )
    regularized = ("W",)

    def params(self):
        return ("W", "b") if self.bias else ("W",)

    def output_shape(self, in_shape):
        need(len(in_shape) >= 2, "input", f"linear needs a batch axis and features, got shape {list(in_shape)}")
        return (in_shape[0], self.out_features)

    def param_shapes(self, in_shape):
        d = int(np.prod(in_shape[1:]))
        shapes = {"W": (d, self.out_features)}
        if self.bias:
            shapes["b"] = (self.out_features,)
        return shapes

    def init_params(self, in_shape, rng):
        p = {"W": rng.standard_normal(self.param_shapes(in_shape)["W"]) / np.sqrt(np.prod(in_shape[1:]))}
        if self.bias:
            p["b"] = 0.1 * rng.standard_normal(self.out_features)
        return p

    def forward(self, x, params):
        y = _rows(x) @ params["W"]
        return y + params["b"] if self.bias else y

    def structure(self, in_shape, name):
        # every output reads every input: x is dense; W[d, c] and b[c] reach output c only
        d, C = int(np.prod(in_shape[1:])), self.out_features
        if name == "W":
            col = np.arange(d * C)
            return sparsity.from_pairs(col % C, col, (C, d * C))
        return sparsity.identity(C) if name == "b" else None

    def forward_stacked(self, x, params, name, values):
        X = _rows(x)
        if name == "W":
            y = np.matmul(X[None], values)          # (K, N, C): one batched product
            return y + params["b"] if self.bias else y
        return (X @ params["W"])[None] + values[:, None, :]

    @form("kron", seed="001 eqs. (1)-(3), (5), (9): vec(XW) = (I_C ⊗ X) vec(W) = (W^T ⊗ I_N) vec(X)")
    def kron(self, dy, x, params):
        X, W = _rows(x), params["W"]
        N, C = dy.shape
        g = vec(dy)
        I_C, I_N = sp.identity(C, format="csr"), sp.identity(N, format="csr")
        dW = sp.kron(I_C, sp.csr_matrix(X)).T @ g          # (I_C ⊗ X)^T vec(dY)
        dX = sp.kron(sp.csr_matrix(W), I_N) @ g             # (W ⊗ I_N) vec(dY)
        out = {"x": mat(dX, X.shape).reshape(x.shape), "W": mat(dW, W.shape)}
        if self.bias:
            ones = sp.csr_matrix(np.ones((N, 1)))
            out["b"] = sp.kron(I_C, ones).T @ g             # (I_C ⊗ 1_N)^T vec(dY), seed 001 eq. (5)
        return out

    @form("correlation", seed="003 §4: ΔL = <dY, ΔX W> + <dY, X ΔW> = <dY W^T, ΔX> + <X^T dY, ΔW>")
    def correlation(self, dy, x, params):
        X = _rows(x)
        out = {"x": (dy @ params["W"].T).reshape(x.shape), "W": X.T @ dy}
        if self.bias:
            out["b"] = np.ones(dy.shape[0]) @ dy            # seed 004 B): 1^T G
        return out

    @form("spray", seed="002 eqs. (4), (6); 004: each output y_nc sprays dy_nc onto column c of dW (x_n) and onto dx_n (w_c)")
    def spray(self, dy, x, params):
        X, W = _rows(x), params["W"]
        dW, dX = np.zeros_like(W), np.zeros_like(X)
        for n in range(X.shape[0]):                         # seed 004: one rank-one term per sample
            dW += np.outer(X[n], dy[n])                     # seed 002 eq. (6): x^T dL/dy
            dX[n] = W @ dy[n]                               # seed 002 eq. (4): dL/dy W^T
        out = {"x": dX.reshape(x.shape), "W": dW}
        if self.bias:
            out["b"] = dy.sum(axis=0)                       # seed 002 eq. (8), summed over samples
        return out


# ==========================================================================================
# elementwise activations: Y = sigma(X), dL/dX = dY ⊙ sigma'(X)
# ==========================================================================================
class Elementwise(Layer):
    """y = sigma(x) entry by entry; subclasses give sigma and sigma'."""

    @staticmethod
    def sigma(x):
        raise NotImplementedError

    @staticmethod
    def dsigma(x):
        raise NotImplementedError

    def forward(self, x, params):
        return self.sigma(x)

    def structure(self, in_shape, name):
        return sparsity.identity(int(np.prod(in_shape[1:])))

    @form("kron", seed="001 Calc. of dξ/dS III-VI: d vec(σ(S)) / d vec(S)^T is the diagonal matrix diag(vec(σ'(S)))")
    def kron(self, dy, x, params):
        D = sp.diags(vec(self.dsigma(x)))
        return {"x": mat(D @ vec(dy), x.shape)}

    @form("correlation", seed="003 §1: ΔL = <dY, σ'(X) ⊙ ΔX> = <dY ⊙ σ'(X), ΔX>")
    def correlation(self, dy, x, params):
        return {"x": dy * self.dsigma(x)}


@register("relu")
class ReLU(Elementwise):
    summary = "y = max(x, 0); derivative 1 where x > 0, else 0 (seed 001 I[S])"

    @staticmethod
    def sigma(x):
        return np.maximum(x, 0)

    @staticmethod
    def dsigma(x):
        return (x > 0).astype(x.dtype)

    def kink_distance(self, x, params):
        return np.abs(x)                                    # the kink is at x = 0

    def frozen_forward(self, x, params, at):
        """x where ``at`` > 0, else 0: the mask of every form (ReLU'(0) = 0)."""
        on = at > 0
        if x.shape[0] != at.shape[0]:                            # x: copies of the batch, stacked
            on = np.tile(on, (x.shape[0] // at.shape[0],) + (1,) * (at.ndim - 1))
        return np.where(on, x, np.zeros_like(x))

    @form("spray", seed="002 eq. (12): dL/dx = x > 0 ? dL/dy : 0, a binary mask computed from x")
    def spray(self, dy, x, params):
        return {"x": np.where(x > 0, dy, np.zeros_like(dy))}


@register("sigmoid")
class Sigmoid(Elementwise):
    summary = "y = 1 / (1 + exp(-x)); sigma' = sigma (1 - sigma)"
    na = {"spray": "elementwise: each output has one input, so spraying is the Hadamard product of the correlation form"}

    @staticmethod
    def sigma(x):
        return 0.5 * (1 + np.tanh(0.5 * x))                 # overflow-free logistic

    @classmethod
    def dsigma(cls, x):
        s = cls.sigma(x)
        return s * (1 - s)


@register("tanh")
class Tanh(Elementwise):
    summary = "y = tanh(x); sigma' = 1 - tanh^2"
    na = {"spray": "elementwise: each output has one input, so spraying is the Hadamard product of the correlation form"}

    @staticmethod
    def sigma(x):
        return np.tanh(x)

    @staticmethod
    def dsigma(x):
        return 1 - np.tanh(x) ** 2


# ==========================================================================================
# add: y = x + w, w of one sample's shape (seed 003 §5)
# ==========================================================================================
@register("add")
class Add(Layer):
    summary = "y = x + w, w one sample's shape, broadcast over the batch (seed 003 §5)"
    param_names = ("w",)

    def param_shapes(self, in_shape):
        return {"w": tuple(in_shape[1:])}

    def init_params(self, in_shape, rng):
        return {"w": rng.standard_normal(in_shape[1:])}

    def forward(self, x, params):
        return x + params["w"]

    def structure(self, in_shape, name):
        return sparsity.identity(int(np.prod(in_shape[1:])))

    def forward_stacked(self, x, params, name, values):
        return x[None] + values[:, None]

    @form("kron", seed="001 eq. (5) pattern: vec(Y) = vec(X) + (I_D ⊗ 1_N) vec(w), so dw = (I_D ⊗ 1_N)^T vec(dY)")
    def kron(self, dy, x, params):
        N = dy.shape[0]
        G = dy.reshape(N, -1)
        I_D = sp.identity(G.shape[1], format="csr")
        dw = sp.kron(I_D, sp.csr_matrix(np.ones((N, 1)))).T @ vec(G)
        return {"x": dy.copy(), "w": dw.reshape(params["w"].shape)}

    @form("correlation", seed="003 §5.2-5.3: ΔL = <dY, ΔX> and ΔL = <dY, Δw> (Δw repeated over the batch)")
    def correlation(self, dy, x, params):
        return {"x": dy.copy(), "w": dy.sum(axis=0)}

    @form("spray", seed="004: per-sample sum, each sample's dy_n sprays onto w")
    def spray(self, dy, x, params):
        dw = np.zeros_like(params["w"])
        for n in range(dy.shape[0]):
            dw += dy[n]
        return {"x": dy.copy(), "w": dw}


# ==========================================================================================
# flatten: (N, ...) -> (N, D)
# ==========================================================================================
@register("flatten")
class Flatten(Layer):
    summary = "(N, ...) -> (N, D), row-major as numpy reshape"
    na = {"spray": "no arithmetic: flatten moves entries, there is nothing to spray"}

    def output_shape(self, in_shape):
        need(len(in_shape) >= 1, "input", "flatten needs a batch axis")
        return (in_shape[0], int(np.prod(in_shape[1:])))

    def forward(self, x, params):
        return x.reshape(x.shape[0], -1)

    def structure(self, in_shape, name):
        return sparsity.identity(int(np.prod(in_shape[1:])))   # row-major: entry j stays j

    @form("kron", seed="001: vec(Y) = P vec(X) with P a permutation matrix (row-major flatten in column-major vec)")
    def kron(self, dy, x, params):
        idx = np.arange(x.size).reshape(x.shape)            # positions in x, laid out as x
        rows = vec(idx.reshape(x.shape[0], -1))             # vec(Y)[k] = x.flat[rows[k]]
        P = sp.csr_matrix((np.ones(x.size), (np.arange(x.size), rows)), shape=(x.size, x.size))
        return {"x": (P.T @ vec(dy)).reshape(x.shape)}      # P^T vec(dY), back in x's own layout

    @form("correlation", seed="003 §1: ΔL = <dY, reshape(ΔX)> = <reshape^-1(dY), ΔX>")
    def correlation(self, dy, x, params):
        return {"x": dy.reshape(x.shape)}
