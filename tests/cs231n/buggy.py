"""One seeded bug per backward of layers.py (whose forwards are used as they are), and wrong losses.

Each comment names the tensor whose gradient the bug makes wrong. gradcheck loads a file by its
path without touching sys.path, so layers.py is loaded here by its path too.
"""
import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("cs231n_layers_correct", Path(__file__).with_name("layers.py"))
L = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(L)

affine_forward, relu_forward, conv_forward_naive = L.affine_forward, L.relu_forward, L.conv_forward_naive
max_pool_forward_naive, batchnorm_forward = L.max_pool_forward_naive, L.batchnorm_forward
layernorm_forward, dropout_forward, rnn_step_forward = L.layernorm_forward, L.dropout_forward, L.rnn_step_forward


def affine_backward(dout, cache):          # b: divided by the batch size
    dx, dw, db = L.affine_backward(dout, cache)
    return dx, dw, db / dout.shape[0]


def relu_backward(dout, cache):            # x: lets the gradient through for x > -0.5 too
    return (dout * (cache > -0.5),)


def conv_backward_naive(dout, cache):      # w: the filter gradient flipped in both spatial axes
    dx, dw, db = L.conv_backward_naive(dout, cache)
    return dx, dw[:, :, ::-1, ::-1], db


def max_pool_backward_naive(dout, cache):  # x: routed to the window's first entry, not its max
    x, pool_param = cache
    s = pool_param["stride"]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dx[:, :, i * s, j * s] += dout[:, :, i, j]
    return (dx,)


def batchnorm_backward(dout, cache):       # x: the mean's path forgotten (as if mu were constant)
    xhat, gamma, var, eps = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    dx = (N * dxhat - xhat * (dxhat * xhat).sum(axis=0)) / (N * np.sqrt(var + eps))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def layernorm_backward(dout, cache):       # gamma: half of it
    dx, dgamma, dbeta = L.layernorm_backward(dout, cache)
    return dx, dgamma * 0.5, dbeta


def dropout_backward(dout, cache):         # x: the mask applied without the 1/p scale
    dropout_param, mask = cache
    return (dout * (mask > 0),)


def rnn_step_backward(dnext_h, cache):     # Wh: transposed
    dx, dprev_h, dWx, dWh, db = L.rnn_step_backward(dnext_h, cache)
    return dx, dprev_h, dWx, dWh.T, db


def svm_loss(x, y):                        # dscores: the correct class's count off by one
    loss, dx = L.svm_loss(x, y)
    N = x.shape[0]
    dx = dx.copy()
    dx[np.arange(N), y] -= 1.0 / N
    return loss, dx


def softmax_loss(x, y):                    # dscores: the 1/N forgotten
    loss, dx = L.softmax_loss(x, y)
    return loss, dx * x.shape[0]
