"""conv2d, conv1d, correlation1d: forward against independent oracles, forms against each other
and against central differences, and wrong gradients of the usual kinds caught where they are."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.signal as sps
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck_cli import registry
from gradcheck_cli.cases import from_dict
from gradcheck_cli.check import run_case
from gradcheck_cli.layers.conv import (Conv2d, conv2d_forward, conv2d_forward_stacked,
                                       conv2d_grads_correlation, conv2d_grads_kron,
                                       conv2d_grads_spray, convolve_full, correlate_valid, dilate,
                                       kron_matrices)

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


def test_seed003_operators_match_scipy():
    """⊗ (full convolution) and ⊙ (valid correlation) of the correlation form, against scipy."""
    rng = np.random.default_rng(6)
    g, W = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((3, 2, 3, 2))
    full = convolve_full(g, W)
    want = np.array([[sum(sps.convolve2d(g[n, o], W[o, c], mode="full") for o in range(3))
                      for c in range(2)] for n in range(2)])
    np.testing.assert_allclose(full, want, rtol=1e-12, atol=1e-12)
    a = rng.standard_normal((2, 2, 7, 8))
    corr = correlate_valid(a, g, (3, 2))
    want = np.array([[sum(sps.correlate2d(a[n, c], g[n, o], mode="valid") for n in range(2))[:3, :2]
                      for c in range(2)] for o in range(3)])
    np.testing.assert_allclose(corr, want, rtol=1e-12, atol=1e-12)
    d = dilate(np.arange(1.0, 7.0).reshape(1, 1, 2, 3), (2, 3))
    assert d.shape == (1, 1, 3, 7)
    np.testing.assert_array_equal(d[0, 0, ::2, ::3], [[1, 2, 3], [4, 5, 6]])
    assert np.count_nonzero(d) == 6


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


# ------------------------------------------------------------------------------------------
# conv1d and correlation1d against scipy / numpy
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N,C,O,L,k,s,p", [(1, 1, 1, 7, 3, 1, 0), (2, 3, 2, 11, 4, 2, 1),
                                           (3, 2, 4, 6, 5, 3, 2), (2, 4, 1, 5, 1, 1, 0)])
def test_conv1d_forward_matches_scipy(N, C, O, L, k, s, p):
    from gradcheck_cli.layers.conv1d import Conv1d

    rng = np.random.default_rng(4)
    x, W, b = rng.standard_normal((N, C, L)), rng.standard_normal((O, C, k)), rng.standard_normal(O)
    lay = Conv1d(out_channels=O, kernel=k, stride=s, padding=p, bias=True)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p)))
    want = np.array([[sum(sps.correlate(xp[n, c], W[o, c], mode="valid") for c in range(C))[::s] + b[o]
                      for o in range(O)] for n in range(N)])
    y = lay.forward(x, {"W": W, "b": b})
    assert y.shape == lay.output_shape(x.shape)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    Ws = rng.standard_normal((2, O, C, k))
    np.testing.assert_allclose(lay.forward_stacked(x, {"W": W, "b": b}, "W", Ws)[1],
                               lay.forward(x, {"W": Ws[1], "b": b}), rtol=1e-12, atol=1e-12)
    bs = rng.standard_normal((2, O))
    np.testing.assert_allclose(lay.forward_stacked(x, {"W": W, "b": b}, "b", bs)[0],
                               lay.forward(x, {"W": W, "b": bs[0]}), rtol=1e-12, atol=1e-12)


def test_correlation1d_is_seed003_definition():
    from gradcheck_cli.layers.conv1d import Correlation1d

    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((3, 12)), rng.standard_normal(4)
    lay = Correlation1d(kernel=4)
    want = np.array([[sum(x[n, i + j] * w[j] for j in range(4)) for i in range(9)] for n in range(3)])
    np.testing.assert_allclose(lay.forward(x, {"w": w}), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lay.forward(x, {"w": w}), [np.correlate(r, w, "valid") for r in x], rtol=1e-12)
    ws = rng.standard_normal((3, 4))
    np.testing.assert_allclose(lay.forward_stacked(x, {"w": w}, "w", ws)[2], lay.forward(x, {"w": ws[2]}),
                               rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal((3, 9))
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for n, i, j in itertools.product(range(3), range(9), range(4)):
        dx[n, i + j] += dy[n, i] * w[j]
        dw[j] += dy[n, i] * x[n, i + j]
    for f in lay.forms:
        g = lay.backward(f, dy, x, {"w": w})
        np.testing.assert_allclose(g["x"], dx, rtol=1e-12, atol=1e-12, err_msg=f)
        np.testing.assert_allclose(g["w"], dw, rtol=1e-12, atol=1e-12, err_msg=f)


# ------------------------------------------------------------------------------------------
# the numerical check over a grid of shapes
# ------------------------------------------------------------------------------------------
GRID = [  # input (N, C, H, W), out, kernel, stride, padding — covers stride 1-3, padding 0-2,
          # kernel 1-5, rectangular inputs and kernels, 1-4 channels, batch 1-3
    ((1, 1, 5, 5), 1, 1, 1, 0),
    ((2, 2, 6, 4), 3, [2, 3], 1, 1),
    ((3, 3, 7, 8), 2, 3, 2, 0),
    ((1, 4, 9, 6), 4, [5, 2], [3, 1], [2, 0]),
    ((2, 1, 8, 9), 2, [4, 4], 3, 2),
    ((3, 2, 5, 7), 1, [1, 5], [1, 2], [0, 2]),
    ((2, 4, 10, 10), 3, 5, [2, 3], 1),
    ((1, 3, 4, 11), 2, [3, 1], [2, 1], [1, 0]),
]


@pytest.mark.parametrize("shape,out,kernel,stride,padding", GRID)
def test_numerical_check_grid(shape, out, kernel, stride, padding):
    layers = [{"type": "conv2d", "out_channels": out, "kernel": kernel, "stride": stride, "padding": padding}]
    res = run_case(case(layers, shape, seed=7))
    assert res.passed, [(r.label, r.form, r.max_rel_error) for r in res.rows if not r.passed]
    assert {(r.tensor, r.form) for r in res.rows} == {(t, f) for t in ("x", "W", "b")
                                                     for f in ("kron", "correlation", "spray")}
    assert all(r.checked == int(np.prod(r.shape)) for r in res.rows)
    assert max(a.max_rel_diff for a in res.agreement) < 1e-12


def test_numerical_check_sampled_on_a_larger_layer():
    layers = [{"type": "conv2d", "out_channels": 8, "kernel": [5, 3], "stride": [2, 1], "padding": [2, 1]}]
    res = run_case(case(layers, (3, 4, 24, 20), seed=8), sample=40)
    assert res.passed
    assert all(r.checked == min(40, int(np.prod(r.shape))) for r in res.rows)


@pytest.mark.parametrize("layer,shape", [
    ({"type": "conv1d", "out_channels": 3, "kernel": 5, "stride": 3, "padding": 2}, (3, 2, 13)),
    ({"type": "conv1d", "out_channels": 1, "kernel": 1, "bias": False}, (1, 4, 6)),
    ({"type": "correlation1d", "kernel": 1}, (2, 5)),
])
def test_numerical_check_1d(layer, shape):
    res = run_case(case([layer], shape, loss="mse", seed=9))
    assert res.passed and {r.form for r in res.rows} == {"kron", "correlation", "spray"}


def test_float32_case_passes_with_float32_tolerance():
    layers = [{"type": "conv2d", "out_channels": 2, "kernel": 3, "stride": 2, "padding": 1}]
    res = run_case(case(layers, (2, 3, 7, 7), dtype="float32"))
    assert res.passed and res.dtype == "float32"
    assert res.arrays["layer0.W.kron.analytic"].dtype == np.float64   # stored in float64
    assert 0 < max(r.max_rel_error for r in res.rows) < 1e-3          # float32 rounding shows


# ------------------------------------------------------------------------------------------
# wrong gradients of the usual kinds are caught, and the worst index points at the bug
# ------------------------------------------------------------------------------------------
@pytest.fixture
def bug(temp_layer):
    """Register a throwaway conv2d subclass under a test-only name (conftest removes it)."""

    def add(name, cls):
        temp_layer(name, cls)
        return name

    return add


def _bug_case(name, shape, stride, padding, form, kernel=3, out=2):
    layers = [{"type": name, "out_channels": out, "kernel": kernel, "stride": stride, "padding": padding}]
    return case(layers, shape, seed=11, forms=[form])


def _rows(res):
    return {r.tensor: r for r in res.rows}


def test_stride_ignored_in_backward_is_caught(bug):
    """The spray loop places each dy at window p instead of p * stride."""
    from gradcheck_cli.layers import conv as C

    class StrideIgnored(Conv2d):
        @registry.form("spray", seed="bug: stride ignored")
        def spray(self, dy, x, params):
            dx, dW, db = C.conv2d_grads_spray(dy, x, params["W"], (1, 1), self.p)   # not self.s
            return {"x": dx, "W": dW, "b": db}

    name = bug("conv2d_bug_stride", StrideIgnored)
    res = run_case(_bug_case(name, (2, 2, 9, 9), 2, 0, "spray"))
    rows = _rows(res)
    assert not rows["x"].passed and not rows["W"].passed and rows["b"].passed
    assert not res.passed
    # the first window (p = q = 0) is placed right even without stride; the error is beyond it
    r, s = rows["x"].worst_index[2:]
    assert r >= 2 or s >= 2


def test_kernel_flipped_the_wrong_way_is_caught(bug):
    """dL/dx by correlating with W (no 180-degree flip) instead of the full convolution."""
    class Flipped(Conv2d):
        @registry.form("correlation", seed="bug: kernel not flipped")
        def correlation(self, dy, x, params):
            W = params["W"]
            g = Conv2d.correlation(self, dy, x, {**params, "W": W[:, :, ::-1, ::-1]})
            g["W"] = Conv2d.correlation(self, dy, x, params)["W"]
            return g

    name = bug("conv2d_bug_flip", Flipped)
    res = run_case(_bug_case(name, (2, 3, 6, 7), 1, 1, "correlation"))
    rows = _rows(res)
    assert not rows["x"].passed and rows["W"].passed and rows["b"].passed
    worst = rows["x"].worst[0]
    assert abs(worst.analytic - worst.numerical) > 1e-3 * max(1.0, abs(worst.numerical))


def test_border_row_dropped_is_caught_at_the_border(bug):
    """An off-by-one in the spray loop skips the last output row: its window gets no gradient."""
    class DropLastRow(Conv2d):
        @registry.form("spray", seed="bug: last output row skipped")
        def spray(self, dy, x, params):
            dy = dy.copy()
            dy[:, :, -1, :] = 0.0                    # same as range(Ho - 1) in the loop
            g = Conv2d.spray(self, dy, x, params)
            return g

    name = bug("conv2d_bug_border", DropLastRow)
    H, stride, padding, kernel = 10, 2, 1, 3
    res = run_case(_bug_case(name, (2, 2, H, 8), stride, padding, "spray", kernel=kernel))
    rows = _rows(res)
    assert not rows["x"].passed and not rows["W"].passed and not rows["b"].passed
    Ho = (H + 2 * padding - kernel) // stride + 1
    first = (Ho - 1) * stride - padding               # first input row the last window reads
    assert rows["x"].worst_index[2] >= first
    assert all(e.index[2] >= first for e in rows["x"].worst)
    assert rows["x"].failed <= 2 * 2 * kernel * 8     # only the border band is wrong


def test_bias_not_summed_over_the_batch_is_caught(bug):
    class BiasFirstSample(Conv2d):
        @registry.form("kron", seed="bug: db from the first sample only")
        def kron(self, dy, x, params):
            g = Conv2d.kron(self, dy, x, params)
            g["b"] = dy[0].sum(axis=(1, 2))
            return g

    name = bug("conv2d_bug_bias", BiasFirstSample)
    res = run_case(_bug_case(name, (3, 2, 6, 6), 1, 0, "kron"))
    rows = _rows(res)
    assert rows["x"].passed and rows["W"].passed and not rows["b"].passed
    assert rows["b"].failed == rows["b"].checked == 2


# ------------------------------------------------------------------------------------------
# bad input: one line naming file and field, exit 2
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer,input_shape,field,text", [
    ("{type: conv2d, out_channels: 2, kernel: 5}", "[1, 1, 3, 3]", "layers[0].kernel", "larger than the padded input"),
    ("{type: conv2d, out_channels: 2, kernel: 3}", "[1, 9]", "layers[0]", "needs (N, C, H, W)"),
    ("{type: conv2d, out_channels: 2, kernel: [3, 3, 3]}", "[1, 1, 5, 5]", "layers[0].kernel", "pair"),
    ("{type: conv2d, out_channels: 2, kernel: 3, stride: 0}", "[1, 1, 5, 5]", "layers[0].stride", ">= 1"),
    ("{type: conv2d, out_channels: 2, kernel: 3, padding: -1}", "[1, 1, 5, 5]", "layers[0].padding", ">= 0"),
    ("{type: conv1d, out_channels: 2, kernel: 9}", "[1, 1, 5]", "layers[0].kernel", "longer than"),
    ("{type: correlation1d, kernel: 6}", "[2, 5]", "layers[0].kernel", "longer than"),
])
def test_bad_conv_options_are_one_line_errors(tmp_path, layer, input_shape, field, text):
    from click.testing import CliRunner

    from gradcheck_cli.cli import main

    p = tmp_path / "bad.yaml"
    p.write_text(f"name: bad\ninput: {input_shape}\nlayers:\n  - {layer}\n")
    res = CliRunner().invoke(main, ["run", str(p)])
    assert res.exit_code == 2, res.output
    assert "bad.yaml" in res.output and field in res.output and text in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------
# property: on random shapes, every form equals the loop gradient
# ------------------------------------------------------------------------------------------
@st.composite
def conv_shapes(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, kh - 2 * ph), 9))
    W = draw(st.integers(max(1, kw - 2 * pw), 9))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), H, W, kh, kw,
            (sh, sw), (ph, pw), draw(st.integers(0, 2**31 - 1)))


@settings(max_examples=40, deadline=None)
@given(conv_shapes())
def test_forms_equal_loop_gradient_on_random_shapes(s):
    N, C, O, H, Wd, kh, kw, stride, padding, seed = s
    rng = np.random.default_rng(seed)
    x, W, b = random_conv(rng, N, C, O, H, Wd, kh, kw)
    y = loop_conv2d(x, W, b, stride, padding)
    np.testing.assert_allclose(conv2d_forward(x, W, b, stride, padding), y, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp, dW = np.zeros_like(xp), np.zeros_like(W)
    for n, o, p, q in itertools.product(*map(range, dy.shape)):
        dxp[n, :, p * sh:p * sh + kh, q * sw:q * sw + kw] += dy[n, o, p, q] * W[o]
        dW[o] += dy[n, o, p, q] * xp[n, :, p * sh:p * sh + kh, q * sw:q * sw + kw]
    for f, g in GRADS.items():
        gx, gW, gb = g(dy, x, W, stride, padding)
        np.testing.assert_allclose(gx, dxp[:, :, ph:ph + H, pw:pw + Wd], rtol=1e-11, atol=1e-11, err_msg=f)
        np.testing.assert_allclose(gW, dW, rtol=1e-11, atol=1e-11, err_msg=f)
        np.testing.assert_allclose(gb, dy.sum(axis=(0, 2, 3)), rtol=1e-11, atol=1e-11, err_msg=f)
