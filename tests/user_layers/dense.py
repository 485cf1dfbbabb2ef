"""A user's affine layer with a square weight and a per-feature scale, and seeded bugs."""
import numpy as np


class SquareLinear:
    """y = x W + b with W (D, D)."""

    per_sample = True

    def init_params(self, input_shape, rng):
        d = input_shape[1]
        return {"W": rng.standard_normal((d, d)) / np.sqrt(d), "b": 0.1 * rng.standard_normal(d)}

    def forward(self, x, params):
        return x @ params["W"] + params["b"]

    def backward(self, dy, x, params):
        return {"x": dy @ params["W"].T, "W": x.T @ dy, "b": dy.sum(axis=0)}


class WeightGradTransposed(SquareLinear):
    def backward(self, dy, x, params):
        g = super().backward(dy, x, params)
        g["W"] = dy.T @ x              # bug: (x^T dy)^T; same shape since W is square
        return g


class WeightGradOff1e4(SquareLinear):
    def backward(self, dy, x, params):
        g = super().backward(dy, x, params)
        g["W"] = g["W"] * 1.0001       # bug: relative error 1e-4
        return g


class BiasFromOneSample(SquareLinear):
    def backward(self, dy, x, params):
        g = super().backward(dy, x, params)
        g["b"] = dy[0].copy()          # bug: first sample only
        return g


class Scale:
    """y[n, d] = x[n, d] g[d]: one scale per feature (no per_sample attribute: the default)."""

    def init_params(self, input_shape, rng):
        return {"g": 1.0 + 0.5 * rng.standard_normal(input_shape[1:])}

    def forward(self, x, params):
        return x * params["g"]

    def backward(self, dy, x, params):
        dg = np.zeros_like(params["g"])
        for n in range(x.shape[0]):
            dg += dy[n] * x[n]
        return {"x": dy * params["g"], "g": dg}


class ScaleNotSummed(Scale):
    def backward(self, dy, x, params):
        for n in range(x.shape[0]):
            dg = dy[n] * x[n]          # bug: `=` instead of `+=`, only the last sample remains
        return {"x": dy * params["g"], "g": dg}
