"""Wrong backward passes for tests/test_diagnosis.py: custom classes and CS231n-style function pairs,
each with one bug of a known kind (the comment names it), and bugs that match no kind."""
import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("cs231n_layers_diag", Path(__file__).parent.parent / "cs231n" / "layers.py")
L = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(L)
affine_forward, relu_forward, conv_forward_naive = L.affine_forward, L.relu_forward, L.conv_forward_naive


class Dense:
    """y = x W + b, W (D, C)."""

    per_sample = True

    def __init__(self, out=5):
        self.out = out

    def init_params(self, input_shape, rng):
        d = input_shape[1]
        return {"W": rng.standard_normal((d, self.out)) / np.sqrt(d), "b": 0.1 * rng.standard_normal(self.out)}

    def forward(self, x, params):
        return x @ params["W"] + params["b"]

    def backward(self, dy, x, params):
        return {"x": dy @ params["W"].T, "W": x.T @ dy, "b": dy.sum(axis=0)}


class DenseWeightDecayTwice(Dense):       # missing-term: W, +0.5 (a decay added by hand)
    def backward(self, dy, x, params):
        g = super().backward(dy, x, params)
        return {**g, "W": g["W"] + 0.5 * params["W"]}


class DenseNoisy(Dense):                   # no kind: W plus seeded noise
    def backward(self, dy, x, params):
        g = super().backward(dy, x, params)
        return {**g, "W": g["W"] + 1e-3 * np.random.default_rng(0).standard_normal(g["W"].shape)}


class DenseSquaredInput(Dense):            # no kind: dW from x**2
    def backward(self, dy, x, params):
        return {**super().backward(dy, x, params), "W": (x ** 2).T @ dy}


class Tanh:
    per_sample = True

    def init_params(self, input_shape, rng):
        return {}

    def forward(self, x, params):
        return np.tanh(x)

    def backward(self, dy, x, params):
        return {"x": dy * (1 - np.tanh(x) ** 2)}


class TanhSign(Tanh):                      # scale: -1
    def backward(self, dy, x, params):
        return {"x": -super().backward(dy, x, params)["x"]}


class TanhWrongDerivative(Tanh):           # no kind: 1 - y instead of 1 - y^2
    def backward(self, dy, x, params):
        return {"x": dy * (1 - np.tanh(x))}


class TanhShifted(Tanh):                   # shift: axis 1, by 2 (an offset of two features)
    def backward(self, dy, x, params):
        g = super().backward(dy, x, params)["x"]
        out = np.zeros_like(g)
        out[:, 2:] = g[:, :-2]
        return {"x": out}


class SigmoidMinusOutput:                  # missing-term: y, -1
    per_sample = True

    def init_params(self, input_shape, rng):
        return {}

    def forward(self, x, params):
        return 1.0 / (1.0 + np.exp(-x))

    def backward(self, dy, x, params):
        y = self.forward(x, params)
        return {"x": dy * y * (1 - y) - y}


class MaskedCopy:                          # zeros (numerical zero): feature 0 is cut, dx passes it
    per_sample = True

    def init_params(self, input_shape, rng):
        return {}

    def forward(self, x, params):
        y = x.copy()
        y[:, 0] = 0.0
        return y

    def backward(self, dy, x, params):
        return {"x": dy.copy()}


class Corr1d:
    """y[n, i] = sum_j x[n, i + j] w[j] (valid), w (k,)."""

    per_sample = True

    def __init__(self, k=6):
        self.k = k

    def init_params(self, input_shape, rng):
        return {"w": rng.standard_normal(self.k) / np.sqrt(self.k)}

    def forward(self, x, params):
        w, m = params["w"], x.shape[1] - self.k + 1
        return sum(x[:, j:j + m] * w[j] for j in range(self.k))

    def dw(self, dy, x, offset=0):
        m, xp = dy.shape[1], np.pad(x, ((0, 0), (0, 1)))
        return np.array([np.sum(dy * xp[:, j + offset:j + offset + m]) for j in range(self.k)])

    def backward(self, dy, x, params):
        w, m = params["w"], dy.shape[1]
        dx = np.zeros_like(x)
        for j in range(self.k):
            dx[:, j:j + m] += dy * w[j]
        return {"x": dx, "w": self.dw(dy, x)}


class Corr1dReversed(Corr1d):              # flip: the kernel gradient reversed (convolution)
    def backward(self, dy, x, params):
        g = super().backward(dy, x, params)
        return {**g, "w": g["w"][::-1].copy()}


class Corr1dOffset(Corr1d):                # shift: axis 0, by -1 (x read one entry late)
    def backward(self, dy, x, params):
        return {**super().backward(dy, x, params), "w": self.dw(dy, x, offset=1)}


class Conv:
    """A 3x3 'same' convolution through the cs231n naive pair, as a class."""

    per_sample = True
    param = {"stride": 1, "pad": 1}

    def init_params(self, input_shape, rng):
        c = input_shape[1]
        return {"w": rng.standard_normal((3, c, 3, 3)) / np.sqrt(9 * c), "b": 0.1 * rng.standard_normal(3)}

    def forward(self, x, params):
        return conv_forward_naive(x, params["w"], params["b"], self.param)[0]

    def backward(self, dy, x, params):
        dx, dw, db = L.conv_backward_naive(dy, conv_forward_naive(x, params["w"], params["b"], self.param)[1])
        return {"x": dx, "w": dw, "b": db}


class ConvCorner(Conv):                    # entries: dx wrong at one corner entry
    def backward(self, dy, x, params):
        g = super().backward(dy, x, params)
        g["x"][0, 0, 0, 0] += 1.0
        return g


# -- CS231n-style function pairs ----------------------------------------------------------------
def affine_backward_but_last(dout, cache):   # batch: dw from samples 0..N-2 only (range(N - 1))
    x, w, b = cache
    dw = np.zeros_like(w)
    for n in range(x.shape[0] - 1):
        dw += np.outer(x[n], dout[n])
    return dout @ w.T, dw, dout.sum(axis=0)


def tanh_forward(x):
    y = np.tanh(x)
    return y, (x, y)


def tanh_backward_plus_x(dout, cache):      # missing-term: x, +0.3
    x, y = cache
    return (dout * (1 - y ** 2) + 0.3 * x,)


def tanh_backward_two_entries(dout, cache):  # entries: 2 of 60 wrong
    x, y = cache
    dx = dout * (1 - y ** 2)
    dx[1, 3] *= 1.5
    dx[4, 7] = 0.0
    return (dx,)


def conv_backward_rows_shifted(dout, cache):  # shift: dx moved down one row (axis 2, by 1)
    dx, dw, db = L.conv_backward_naive(dout, cache)
    out = np.zeros_like(dx)
    out[:, :, 1:] = dx[:, :, :-1]
    return out, dw, db


def relu_backward_channel_dropped(dout, cache):  # zeros: channel 1 of dx zero
    dx = dout * (cache > 0)
    dx[:, 1] = 0.0
    return (dx,)


_conv_spec = importlib.util.spec_from_file_location("user_conv_diag", Path(__file__).with_name("conv.py"))
_conv = importlib.util.module_from_spec(_conv_spec)
_conv_spec.loader.exec_module(_conv)


class ConvWeightGradFlipped(_conv.Conv2d):  # flip: dW rotated by 180 degrees (for tests/test_shrink.py)
    def backward(self, dy, x, params):
        g = super().backward(dy, x, params)
        return {**g, "W": g["W"][:, :, ::-1, ::-1].copy()}
