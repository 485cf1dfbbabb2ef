"""conv2d, conv1d, correlation1d: forward against independent oracles, forms against each other
and against central differences, and wrong gradients of the usual kinds caught where they are."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.signal as sps

from gradcheck_cli import registry
from gradcheck_cli.cases import from_dict
from gradcheck_cli.check import run_case
from gradcheck_cli.layers.conv import (Conv2d, conv2d_forward, conv2d_forward_stacked,
                                       conv2d_grads_correlation, conv2d_grads_kron,
                                       conv2d_grads_spray, kron_matrices)

GRADS = {"kron": conv2d_grads_kron, "correlation": conv2d_grads_correlation,
         "spray": conv2d_grads_spray}


# ------------------------------------------------------------------------------------------
# oracles: plain loops and scipy, never the code under test
# ------------------------------------------------------------------------------------------
def loop_conv2d(x, W, b, stride, padding):
    """y by four nested loops over the definition."""
    N, C, H, Wd = x.shape
    O, _, kh, kw = W.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.zeros((N, C, H + 2 * ph, Wd + 2 * pw))
    xp[:, :, ph:ph + H, pw:pw + Wd] = x
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (Wd + 2 * pw - kw) // sw + 1
    y = np.zeros((N, O, Ho, Wo))
    for n, o, p, q in itertools.product(range(N), range(O), range(Ho), range(Wo)):
        y[n, o, p, q] = np.sum(W[o] * xp[n, :, p * sh:p * sh + kh, q * sw:q * sw + kw])
        if b is not None:
            y[n, o, p, q] += b[o]
    return y


def scipy_conv2d(x, W, b, stride, padding):
    """y by scipy.signal.correlate2d ('valid') on the padded input, then sampled every stride."""
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    N, O = x.shape[0], W.shape[0]
    full = np.array([[sum(sps.correlate2d(xp[n, c], W[o, c], mode="valid") for c in range(x.shape[1]))
                      for o in range(O)] for n in range(N)])
    y = full[:, :, ::sh, ::sw]
    return y + b[None, :, None, None] if b is not None else y


def random_conv(rng, N, C, O, H, Wd, kh, kw):
    return (rng.standard_normal((N, C, H, Wd)), rng.standard_normal((O, C, kh, kw)),
            rng.standard_normal(O))


SHAPES = [  # N, C, O, H, W, kh, kw, stride, padding
    (1, 1, 1, 5, 5, 3, 3, (1, 1), (0, 0)),
    (2, 3, 4, 7, 6, 3, 2, (2, 2), (1, 1)),
    (3, 2, 3, 9, 5, 5, 1, (3, 1), (2, 0)),
    (1, 4, 2, 6, 8, 1, 4, (1, 3), (0, 2)),
    (2, 1, 2, 4, 4, 4, 4, (2, 3), (2, 2)),
    (3, 2, 1, 10, 7, 2, 5, (3, 2), (1, 2)),
]


@pytest.mark.parametrize("N,C,O,H,Wd,kh,kw,stride,padding", SHAPES)
def test_forward_matches_loops_and_scipy(N, C, O, H, Wd, kh, kw, stride, padding):
    rng = np.random.default_rng(1)
    x, W, b = random_conv(rng, N, C, O, H, Wd, kh, kw)
    y = conv2d_forward(x, W, b, stride, padding)
    np.testing.assert_allclose(y, loop_conv2d(x, W, b, stride, padding), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, scipy_conv2d(x, W, b, stride, padding), rtol=1e-12, atol=1e-12)
    Ws = rng.standard_normal((3, *W.shape))
    stacked = conv2d_forward_stacked(x, Ws, b, stride, padding)
    for k in range(3):
        np.testing.assert_allclose(stacked[k], loop_conv2d(x, Ws[k], b, stride, padding),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("N,C,O,H,Wd,kh,kw,stride,padding", SHAPES)
def test_kron_matrices_build_phi(N, C, O, H, Wd, kh, kw, stride, padding):
    """P_phi P_pad vec(Z) is vec of the im2col matrix of seed 001, read off by loops."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((C, H, Wd))
    P_phi, P_pad = kron_matrices(C, H, Wd, (kh, kw), stride, padding)
    vecZ = np.array([x[c, r, q] for q in range(Wd) for r in range(H) for c in range(C)])
    phi = P_phi @ (P_pad @ vecZ)
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (Wd + 2 * pw - kw) // sw + 1
    expect = [xp[c, p * sh + i, q * sw + j]
              for q in range(Wo) for p in range(Ho)          # column p + q Ho
              for c in range(C) for j in range(kw) for i in range(kh)]   # row i + j kh + c kh kw
    np.testing.assert_array_equal(phi, expect)
    assert P_phi.nnz == kh * kw * C * Ho * Wo and P_pad.nnz == C * H * Wd


@pytest.mark.parametrize("N,C,O,H,Wd,kh,kw,stride,padding", SHAPES)
def test_forms_agree_and_match_loop_gradients(N, C, O, H, Wd, kh, kw, stride, padding):
    """Every form equals the gradient of <dy, y> computed by loops over the definition."""
    rng = np.random.default_rng(3)
    x, W, b = random_conv(rng, N, C, O, H, Wd, kh, kw)
    (sh, sw), (ph, pw) = stride, padding
    dy = rng.standard_normal(loop_conv2d(x, W, b, stride, padding).shape)
    # y is linear in x and in W: d<dy, y>/dx[n,c,r,s] = sum over windows that read (r, s)
    dxp = np.zeros((N, C, H + 2 * ph, Wd + 2 * pw))
    dW = np.zeros_like(W)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    for n, o, p, q in itertools.product(*map(range, dy.shape)):
        dxp[n, :, p * sh:p * sh + kh, q * sw:q * sw + kw] += dy[n, o, p, q] * W[o]
        dW[o] += dy[n, o, p, q] * xp[n, :, p * sh:p * sh + kh, q * sw:q * sw + kw]
    dx = dxp[:, :, ph:ph + H, pw:pw + Wd]
    db = dy.sum(axis=(0, 2, 3))
    got = {f: g(dy, x, W, stride, padding) for f, g in GRADS.items()}
    for f, (gx, gW, gb) in got.items():
        np.testing.assert_allclose(gx, dx, rtol=1e-12, atol=1e-12, err_msg=f)
        np.testing.assert_allclose(gW, dW, rtol=1e-12, atol=1e-12, err_msg=f)
        np.testing.assert_allclose(gb, db, rtol=1e-12, atol=1e-12, err_msg=f)
    for a, c in itertools.combinations(got, 2):
        for k in range(3):
            assert np.max(np.abs(got[a][k] - got[c][k])) <= 1e-12 * max(1.0, np.max(np.abs(got[a][k])))


def case(layers, input_shape, loss="projection", seed=0, **extra):
    doc = {"name": "t", "seed": seed, "input": list(input_shape), "layers": layers, "loss": loss, **extra}
    return from_dict(doc, "<test>")


@pytest.mark.parametrize("layer,shape", [
    ({"type": "conv2d", "out_channels": 3, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 0]}, (2, 2, 6, 5)),
    ({"type": "conv1d", "out_channels": 2, "kernel": 3, "stride": 2, "padding": 1}, (2, 3, 9)),
    ({"type": "correlation1d", "kernel": 4}, (3, 10)),
])
def test_single_layer_cases_pass_in_every_form(layer, shape):
    res = run_case(case([layer], shape))
    assert res.passed
    assert {r.form for r in res.rows} == {"kron", "correlation", "spray"}
    assert all(a.max_rel_diff < 1e-12 for a in res.agreement)
