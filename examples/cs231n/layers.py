"""CS231n-style layers as a student writes them: forward -> (out, cache), backward(dout, cache).

Nothing here knows about gradcheck: `gradcheck run net.yaml` checks them.
"""
import numpy as np


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    return (dout * (cache > 0),)


def dropout_forward(x, dropout_param):
    np.random.seed(dropout_param["seed"])          # a fixed seed: the same mask on every call
    p = dropout_param["p"]
    mask = (np.random.rand(*x.shape) < p) / p
    return x * mask, mask


def dropout_backward(dout, mask):
    return (dout * mask,)


def svm_loss(x, y):
    N = x.shape[0]
    margins = np.maximum(0, x - x[np.arange(N), y][:, None] + 1.0)
    margins[np.arange(N), y] = 0
    dx = (margins > 0).astype(float)
    dx[np.arange(N), y] -= dx.sum(axis=1)
    return margins.sum() / N, dx / N
