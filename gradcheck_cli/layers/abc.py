"""ABC-Net binary convolution (seed 000; Lin, Zhao & Pan, NIPS 2017) and its competing backward rules.

The weights W (n = out * in * kh * kw entries) are approximated by M binary bases:

    B_m = sign(W - mean(W) + u_m std(W)),   u_m = -1 + (m - 1) * 2 / (M - 1)   (u_1 = 0 when M = 1)
    alpha = argmin ||vec(W) - B alpha||^2   (ordinary least squares, B = [vec(B_1) ... vec(B_M)])
    O = sum_m alpha_m Conv(B_m, A) = Conv(W_hat, A),   W_hat = sum_m alpha_m B_m

with sign(0) = +1. The convolution itself (and each form of its gradient) is the ``conv2d``
layer's; this module adds the binarisation and the rule that maps G = dL/dW_hat (the usual conv
weight gradient) to a gradient for W. Every rule is the exact derivative of a surrogate forward,
built around the anchor W0 (the value a check is made at) and equal to the real forward there:

    rule          dL/dW                                      exact derivative of
    exact         sum_m <G, B_m> P_m                         the real forward (B is piecewise constant)
    eq1           sum_m alpha_m G        (seed 000 Eq. 1)    W_hat = sum_m alpha0_m (B0_m + W - W0)
    eq2           eq1 + exact            (seed 000 Eq. 2)    W_hat = sum_m alpha_m(W) (B0_m + W - W0), alpha(W) = P0 vec(W)
    ste_mean_std  sum_m alpha_m J_m^T G                      W_hat = sum_m alpha0_m (B0_m + z_m(W) - z_m(W0))
    eq7_literal   sum_m alpha_m^2 G      (paper Eq. 7)       none: checked against the eq1 surrogate

where P = (B^T B)^+ B^T (rows P_m, the derivative of the OLS alphas with B frozen),
z_m(W) = W - mean(W) + u_m std(W) and J_m = dz_m/dW = I - 1 1^T / n + u_m 1 (dstd/dW)^T.
When B^T B is singular (two equal bases, or a constant W) the alphas are the minimum-norm
least-squares solution and ``Binarized.singular`` says so (the check rows carry a note).
The binarisation (bases, alphas, ``Binarized``) is in abc_bases.py; this module holds the
rules and the layer.
"""
from __future__ import annotations

import numpy as np

from ..registry import Layer, Option, form, need, pair, register
from ..vec import mat, vec
from .abc_bases import (STDS, Binarized, bases, binarize, dstd, mean_std, ols,  # noqa: F401 (API)
                        real_weights, shifts, sign)
from .conv import (Conv2d, conv2d_forward, conv2d_forward_stacked, conv2d_grads_correlation,
                   conv2d_grads_kron, conv2d_grads_spray, conv2d_structure, conv2d_workspace)

RULES = ("eq7_literal", "eq1", "eq2", "exact", "ste_mean_std")

FORMULAS = {
    "eq7_literal": "dL/dW = sum_m alpha_m dL/dB_m = sum_m alpha_m^2 G   (paper Eq. 7 read literally: alpha counted twice)",
    "eq1": "dL/dW = sum_m dL/dB_m = sum_m alpha_m G   (seed 000 Eq. 1: STE dB_m/dW = I, alpha frozen)",
    "eq2": "dL/dW = sum_m alpha_m G + sum_m <G, B_m> P_m   (seed 000 Eq. 2: STE plus the OLS alpha path)",
    "exact": "dL/dW = sum_m <G, B_m> P_m   (no STE: B is piecewise constant, only alpha = P vec(W) moves)",
    "ste_mean_std": "dL/dW = sum_m alpha_m J_m^T G,  J_m = I - 1 1^T/n + u_m 1 (dstd/dW)^T   (STE through mean and std)",
}
SURROGATES = {
    "eq7_literal": "none of its own; checked against the eq1 surrogate",
    "eq1": "W_hat(W) = sum_m alpha0_m (B0_m + W - W0)   (sign -> identity, alpha frozen)",
    "eq2": "W_hat(W) = sum_m alpha_m(W) (B0_m + W - W0),  alpha(W) = P0 vec(W)   (sign -> identity, B frozen in the OLS)",
    "exact": "the real forward W_hat(W) = sum_m alpha_m(W) B_m(W)",
    "ste_mean_std": "W_hat(W) = sum_m alpha0_m (B0_m + z_m(W) - z_m(W0))   (sign -> identity, mean and std kept)",
}
STD_FORMULAS = {
    "population": "std(W) = sqrt(sum_i (W_i - mean W)^2 / n)",
    "sample": "std(W) = sqrt(sum_i (W_i - mean W)^2 / (n - 1))",
    "seed": "std(W) = sum_i (W_i - mean W)^2 / n   (seed 000 as printed: a variance, no square root)",
}


def surrogate_weights(rule: str, a: Binarized, V: np.ndarray) -> np.ndarray:
    """W_hat(W) of ``rule``'s surrogate around the anchor ``a`` for K stacked values V (K, *shape).

    Equal to the real W_hat at W = a.W; its derivative there is the rule's gradient
    (eq7_literal has no surrogate of its own: it gets eq1's).
    """
    K = V.shape[0]
    w, w0 = V.reshape(K, -1), a.W.reshape(-1)
    dw = w - w0
    B0, P0 = a.B.reshape(a.M, -1), a.P.reshape(a.M, -1)
    if rule in ("eq1", "eq7_literal"):
        out = (a.alpha @ B0)[None] + a.alpha.sum() * dw
    elif rule == "eq2":
        alpha = w @ P0.T                                    # (K, M), alpha(W) with B frozen
        out = alpha @ B0 + alpha.sum(axis=1, keepdims=True) * dw
    elif rule == "ste_mean_std":
        mu, s = mean_std(w, a.std_kind)
        # z_m(W) - z_m(W0) = dW - (mean - mean0) + u_m (std - std0), summed with weights alpha0_m
        shift = -(mu - a.mu) * a.alpha.sum() + (s - a.sigma) * (a.alpha @ a.u)
        out = (a.alpha @ B0)[None] + a.alpha.sum() * dw + shift[:, None]
    elif rule == "exact":
        return real_weights(V, a.M, a.std_kind)
    else:
        raise ValueError(f"unknown rule {rule!r}")
    return out.reshape(V.shape)


def rule_gradient(rule: str, G: np.ndarray, a: Binarized) -> np.ndarray:
    """dL/dW by ``rule`` from G = dL/dW_hat (a plain tensor statement of the module table)."""
    g = np.tensordot(a.B.reshape(a.M, -1), G.reshape(-1), axes=1)   # <G, B_m>
    alpha_path = np.tensordot(g, a.P, axes=1)
    if rule == "eq7_literal":
        return (a.alpha ** 2).sum() * G
    if rule == "eq1":
        return a.alpha.sum() * G
    if rule == "eq2":
        return a.alpha.sum() * G + alpha_path
    if rule == "exact":
        return alpha_path
    if rule == "ste_mean_std":
        return a.alpha.sum() * (G - G.mean()) + (a.alpha @ a.u) * G.sum() * a.dsigma
    raise ValueError(f"unknown rule {rule!r}")


# ==========================================================================================
# the layer
# ==========================================================================================
@register("abc_conv2d")
class AbcConv2d(Layer):
    summary = ("ABC-Net binary conv (seed 000): O = sum_m alpha_m Conv(B_m, A), M bases with OLS "
               "alphas; `backward` picks the rule for dL/dW")
    options = (
        Option("out_channels", "int", min=1, help="number of output channels"),
        Option("kernel", "pair", min=1, help="kh, kw"),
        Option("stride", "pair", default=1, min=1, help="stride (int or pair)"),
        Option("padding", "pair", default=0, min=0, help="zero padding (int or pair)"),
        Option("bases", "int", default=3, min=1, help="number M of binary bases"),
        Option("std", "choice", default="population", choices=STDS,
               help="std in the bases: population (default), sample, or seed (the seed's literal formula, a variance)"),
        Option("backward", "choice", choices=RULES,
               help="rule for dL/dW: eq7_literal, eq1, eq2, exact, ste_mean_std"),
        Option("bias", "bool", default=False, help="add a bias b (out)"),
    )
    regularized = ("W",)
    example_input = (2, 2, 5, 5)
    example = {"out_channels": 2, "kernel": 3, "bases": 3, "backward": "eq2"}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        # the option `backward` must not shadow Layer.backward: keep it as `rule`
        self.rule: str = self.__dict__.pop("backward")
        self._conv = Conv2d(out_channels=self.out_channels, kernel=self.kernel, stride=self.stride,
                            padding=self.padding, bias=self.bias)   # shapes and initial values
        self.s, self.p = pair(self.stride), pair(self.padding)
        self._anchor: Binarized | None = None

    # -- shapes and parameters -----------------------------------------------------------
    def params(self):
        return ("W", "b") if self.bias else ("W",)

    def output_shape(self, in_shape):
        need(len(in_shape) == 4, "input", f"abc_conv2d needs input (N, C, H, W), got {list(in_shape)}")
        if self.std == "sample":
            n = self.out_channels * in_shape[1] * np.prod(pair(self.kernel))
            need(n >= 2, "std", "the sample std needs at least 2 weights")
        return self._conv.output_shape(in_shape)

    def param_shapes(self, in_shape):
        return self._conv.param_shapes(in_shape)

    def init_params(self, in_shape, rng):
        return self._conv.init_params(in_shape, rng)

    # -- the anchor: where the rule's surrogate is built -----------------------------------
    def anchor(self, params):
        """Fix W0 (the value a check is made at): forward then evaluates this rule's surrogate."""
        self._anchor = self.binarize(params["W"])

    def binarize(self, W: np.ndarray) -> Binarized:
        return binarize(W, self.bases, self.std)

    def effective_weights(self, V: np.ndarray) -> np.ndarray:
        """W_hat for K stacked W values (K, *shape): the rule's surrogate when anchored, else real."""
        if self._anchor is None or self.rule == "exact":
            return real_weights(np.asarray(V, dtype=np.float64), self.bases, self.std)
        return surrogate_weights(self.rule, self._anchor, np.asarray(V, dtype=np.float64))

    # -- what the numerical check may share (registry.Layer.structure) --------------------
    LOCAL_RULES = ("eq1", "eq7_literal")   # surrogates with W_hat[o] a function of W[o] alone

    def structure(self, in_shape, name):
        """x and b reach the outputs as in conv2d (whatever W_hat is). W[o] reaches only output
        channel o under the eq1 surrogate (W_hat = sum_m alpha0_m (B0_m + W - W0), which
        eq7_literal is checked against); every other rule moves the alphas, mean or std, which
        mix all of W into every output: no claim (None)."""
        if type(self).forward is not AbcConv2d.forward:   # a subclass computing something else
            return None
        if name == "W" and (self._anchor is None or self.rule not in self.LOCAL_RULES):
            return None
        return conv2d_structure(tuple(in_shape[1:]), self.out_channels, pair(self.kernel), self.s,
                                self.p, name)

    def workspace(self, in_shape):
        return conv2d_workspace(tuple(in_shape), self.out_channels, pair(self.kernel), self.s, self.p)

    # -- forward: O = Conv(W_hat, A) (+ b), by conv2d's forward -----------------------------
    def forward(self, x, params):
        W_hat = self.effective_weights(params["W"][None])[0].astype(x.dtype, copy=False)
        return conv2d_forward(x, W_hat, params.get("b") if self.bias else None, self.s, self.p)

    def forward_stacked(self, x, params, name, values):
        b = params.get("b") if self.bias else None
        if name == "W":
            return conv2d_forward_stacked(x, self.effective_weights(values), b, self.s, self.p)
        y = conv2d_forward(x, self.effective_weights(params["W"][None])[0], None, self.s, self.p)
        return y[None] + values[:, None, :, None, None]

    def _conv_grads(self, grads, dy, x, a: Binarized, params) -> dict[str, np.ndarray]:
        """dx and G = dL/dW_hat (and db) by one of conv2d's forms, at W_hat."""
        dx, G, db = grads(dy, x, a.W_hat.astype(dy.dtype), self.s, self.p)
        return {"x": dx, "W": G, **({"b": db} if self.bias else {})}

    # -- gradient forms ------------------------------------------------------------------
    @form("kron", seed="000 Eqs. 1, 2, 7 in vec form: vec(dW) = J^T vec(G), J = c I_n + U V^T; G by conv2d_grads_kron (001 eq. (1))")
    def kron(self, dy, x, params):
        a = self.binarize(params["W"])
        g = self._conv_grads(conv2d_grads_kron, dy, x, a, params)
        c, U, V = self.jacobian_factors(a)
        G = vec(g["W"])
        dW = c * G + (V @ (U.T @ G) if U.shape[1] else 0.0)   # J^T vec(G) = c vec(G) + V U^T vec(G)
        return {**g, "W": mat(dW, a.W.shape).astype(dy.dtype)}

    def jacobian_factors(self, a: Binarized) -> tuple[float, np.ndarray, np.ndarray]:
        """d vec(W_hat) / d vec(W)^T of the rule's surrogate as c I_n + U V^T (column-major vec)."""
        n = a.n
        B = np.stack([vec(b) for b in a.B], axis=1)           # n x M
        P = np.stack([vec(p) for p in a.P], axis=1)           # n x M, P^T
        empty = np.zeros((n, 0))
        rule = self.rule
        if rule == "eq7_literal":                              # sum_m alpha_m * (alpha_m I)
            return float((a.alpha ** 2).sum()), empty, empty
        if rule == "eq1":                                      # sum_m alpha_m dB_m/dW, dB_m/dW = I
            return float(a.alpha.sum()), empty, empty
        if rule == "exact":                                    # sum_m vec(B_m) d alpha_m / d vec(W)^T
            return 0.0, B, P
        if rule == "eq2":
            return float(a.alpha.sum()), B, P
        # ste_mean_std: sum_m alpha_m (I - 1 1^T / n + u_m 1 s^T) = (sum alpha) I + 1 v^T
        v = -a.alpha.sum() / n * np.ones(n) + (a.alpha @ a.u) * vec(a.dsigma)
        return float(a.alpha.sum()), np.ones((n, 1)), v[:, None]

    @form("correlation", seed="000 Eqs. 1, 2, 7 as inner products (003 style): ΔL = <G, ΔW_hat>, ΔW_hat = Σ α_m ΔB_m + Σ Δα_m B_m; G by conv2d_grads_correlation (003 §7)")
    def correlation(self, dy, x, params):
        a = self.binarize(params["W"])
        g = self._conv_grads(conv2d_grads_correlation, dy, x, a, params)
        G = g["W"].astype(np.float64)
        gm = np.array([np.sum(G * Bm) for Bm in a.B])         # <G, B_m> = dL/dalpha_m
        alpha_path = sum(gm[m] * a.P[m] for m in range(a.M))  # Σ <G, B_m> <P_m, ΔW>
        rule = self.rule
        if rule == "eq7_literal":
            dW = np.sum(a.alpha ** 2) * G
        elif rule == "eq1":
            dW = np.sum(a.alpha) * G                          # <G, Σ α_m ΔW>
        elif rule == "eq2":
            dW = np.sum(a.alpha) * G + alpha_path
        elif rule == "exact":
            dW = alpha_path
        else:                                                 # <G, Σ α_m (ΔW - Δmean + u_m Δstd)>
            dW = np.sum(a.alpha) * (G - np.sum(G) / a.n) + np.sum(a.alpha * a.u) * np.sum(G) * a.dsigma
        return {**g, "W": dW.astype(dy.dtype)}

    @form("spray", seed="000 Eqs. 1, 2, 7 base by base: O_m = Conv(B_m, A) sprays α_m dy onto B_m and x (002 eqs. (4), (6)); dL/dα_m = <dy, O_m>")
    def spray(self, dy, x, params):
        a = self.binarize(params["W"])
        dx = np.zeros(x.shape)
        dB, dalpha = [], np.empty(a.M)
        for m in range(a.M):
            Bm = a.B[m].astype(dy.dtype)
            dx_m, dB_m, _ = conv2d_grads_spray(a.alpha[m] * dy, x, Bm, self.s, self.p)  # dc/dO_m = alpha_m dy
            dx += dx_m
            dB.append(dB_m.astype(np.float64))                                 # true dc/dB_m
            dalpha[m] = np.sum(dy * conv2d_forward(x, Bm, None, self.s, self.p))  # <dc/dO, O_m>
        alpha_path = sum(dalpha[m] * a.P[m] for m in range(a.M))
        rule = self.rule
        if rule == "eq7_literal":
            dW = sum(a.alpha[m] * dB[m] for m in range(a.M))                    # Σ α_m dc/dB_m
        elif rule == "eq1":
            dW = sum(dB)                                                        # Σ dc/dB_m
        elif rule == "eq2":
            dW = sum(dB) + alpha_path
        elif rule == "exact":
            dW = alpha_path
        else:                                                                   # Σ J_m^T dc/dB_m
            dW = sum(d - d.sum() / a.n + a.u[m] * d.sum() * a.dsigma for m, d in enumerate(dB))
        out = {"x": dx.astype(dy.dtype), "W": dW.astype(dy.dtype)}
        if self.bias:
            out["b"] = dy.sum(axis=(0, 2, 3))                                   # 002 eq. (8), every position
        return out

    # -- notes on check rows -----------------------------------------------------------
    def row_note(self, tensor, form_name, analytic, numerical) -> str:
        """Which surrogate the W row was checked against; for eq7_literal, by how much it misses."""
        if tensor != "W":
            return ""
        a = np.asarray(analytic, np.float64).reshape(-1)
        n = np.asarray(numerical, np.float64).reshape(-1)
        notes = []
        if self.rule == "eq7_literal":
            nn, na = np.linalg.norm(n), np.linalg.norm(a)
            dist = np.linalg.norm(a - n) / nn if nn else float("inf")
            cos = float(a @ n / (na * nn)) if na and nn else float("nan")
            notes.append(f"vs eq1 surrogate: rel. L2 distance {dist:.3g}, "
                         f"norm ratio {na / nn if nn else float('inf'):.3g}, cosine {cos:.4f}")
        else:
            notes.append("checked against the real forward" if self.rule == "exact"
                         else f"checked against the {self.rule} surrogate")
        if self._anchor is not None and self._anchor.singular:
            notes.append(self._anchor.singular_note())
        return "; ".join(notes)
