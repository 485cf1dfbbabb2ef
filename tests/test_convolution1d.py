"""convolution1d (seed 003 §6) and the padding modes valid | same | full of conv1d, conv2d,
correlation1d and convolution1d: forward against scipy.signal / numpy / plain loops, every
gradient form against plain-loop gradients and torch autograd (skipped without torch), the
structure declarations against the real dependence, and bad padding as exit 2."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.signal as sps
from click.testing import CliRunner

from gradcheck_cli.cases import from_dict
from gradcheck_cli.check import run_case
from gradcheck_cli.cli import main
from gradcheck_cli.layers.conv import Conv2d
from gradcheck_cli.layers.conv1d import Conv1d, Convolution1d, Correlation1d

FORMS = ("kron", "correlation", "spray")


def pads_of(padding, k):
    """The zeros (before, after) each mode adds, written out independently of the code."""
    return {"valid": (0, 0), "full": (k - 1, k - 1), "same": ((k - 1) // 2, k // 2)}.get(padding, (padding, padding)) \
        if isinstance(padding, str) else (padding, padding)


def loop_convolution1d(x, W, b, stride, padding):
    """y[n, o, q] = b[o] + sum_{c, j} W[o, c, j] pad(x)[n, c, q s + k - 1 - j] (seed 003 §6.1)."""
    N, C, L = x.shape
    O, _, k = W.shape
    pl, pr = pads_of(padding, k)
    xp = np.pad(x, ((0, 0), (0, 0), (pl, pr)))
    Lo = (L + pl + pr - k) // stride + 1
    y = np.zeros((N, O, Lo))
    for n in range(N):
        for o in range(O):
            for q in range(Lo):
                i = q * stride + k - 1                      # y_i = sum_j x_{i-j} w_j
                y[n, o, q] = b[o] + sum(W[o, c, j] * xp[n, c, i - j] for c in range(C) for j in range(k))
    return y


def loop_convolution1d_grads(dy, x, W, stride, padding):
    """dL/dx, dL/dW, dL/db of <dy, y> by the chain rule entry by entry (no forms involved)."""
    N, C, L = x.shape
    O, _, k = W.shape
    pl, pr = pads_of(padding, k)
    xp = np.pad(x, ((0, 0), (0, 0), (pl, pr)))
    dxp, dW = np.zeros_like(xp), np.zeros_like(W)
    for n, o, q in np.ndindex(dy.shape):
        for c in range(C):
            for j in range(k):
                m = q * stride + k - 1 - j
                dxp[n, c, m] += dy[n, o, q] * W[o, c, j]
                dW[o, c, j] += dy[n, o, q] * xp[n, c, m]
    return dxp[:, :, pl:pl + L], dW, dy.sum(axis=(0, 2))


CONV1D = [  # N, C, O, L, k, stride, padding
    (1, 1, 1, 7, 3, 1, "valid"), (2, 3, 2, 10, 4, 1, "same"), (2, 2, 3, 9, 3, 1, "same"),
    (2, 1, 2, 6, 3, 2, "full"), (3, 2, 1, 8, 2, 3, 1), (2, 2, 2, 5, 5, 1, "full"), (1, 2, 2, 4, 1, 1, "same"),
]


def _layer_and_params(cls, rng, N, C, O, L, k, s, p):
    lay = cls(out_channels=O, kernel=k, stride=s, padding=p, bias=True)
    x, W, b = rng.standard_normal((N, C, L)), rng.standard_normal((O, C, k)), rng.standard_normal(O)
    return lay, x, {"W": W, "b": b}


@pytest.mark.parametrize("N,C,O,L,k,s,p", CONV1D)
def test_convolution1d_forward_is_scipy_convolve(N, C, O, L, k, s, p):
    rng = np.random.default_rng(11)
    lay, x, prm = _layer_and_params(Convolution1d, rng, N, C, O, L, k, s, p)
    pl, pr = pads_of(p, k)
    xp = np.pad(x, ((0, 0), (0, 0), (pl, pr)))
    want = np.array([[sum(sps.convolve(xp[n, c], prm["W"][o, c], mode="valid") for c in range(C))[::s] + prm["b"][o]
                      for o in range(O)] for n in range(N)])
    y = lay.forward(x, prm)
    assert y.shape == lay.output_shape(x.shape) == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, loop_convolution1d(x, prm["W"], prm["b"], s, p), rtol=1e-12, atol=1e-12)
    Ws, bs = rng.standard_normal((2, O, C, k)), rng.standard_normal((2, O))
    np.testing.assert_allclose(lay.forward_stacked(x, prm, "W", Ws)[1], lay.forward(x, {**prm, "W": Ws[1]}),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lay.forward_stacked(x, prm, "b", bs)[0], lay.forward(x, {**prm, "b": bs[0]}),
                               rtol=1e-12, atol=1e-12)


def test_padding_modes_against_numpy_and_scipy_mode_names():
    """full = np.convolve / np.correlate 'full'; same = scipy's 'same' for an odd kernel, and for an
    even kernel scipy's 'same' is ours delayed by one entry (scipy puts the extra zero before)."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 1, 9))
    for k in (3, 4):
        w = rng.standard_normal(k)
        conv = {p: Convolution1d(out_channels=1, kernel=k, padding=p, bias=False).forward(x, {"W": w[None, None]})[0, 0]
                for p in ("valid", "same", "full")}
        corr = {p: Correlation1d(kernel=k, padding=p).forward(x[:, 0], {"w": w})[0] for p in ("valid", "same", "full")}
        for p in ("valid", "full"):
            np.testing.assert_allclose(conv[p], np.convolve(x[0, 0], w, p), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(corr[p], np.correlate(x[0, 0], w, p), rtol=1e-12, atol=1e-12)
        assert conv["same"].shape == corr["same"].shape == (9,)
        full_conv, full_corr = np.convolve(x[0, 0], w, "full"), np.correlate(x[0, 0], w, "full")
        start = (k - 1) - (k - 1) // 2                       # ours: (k-1)//2 zeros before
        np.testing.assert_allclose(conv["same"], full_conv[start:start + 9], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(corr["same"], full_corr[k // 2:k // 2 + 9], rtol=1e-12, atol=1e-12)
        if k % 2:
            np.testing.assert_allclose(conv["same"], sps.convolve(x[0, 0], w, "same"), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(corr["same"], sps.correlate(x[0, 0], w, "same"), rtol=1e-12, atol=1e-12)
        else:
            np.testing.assert_allclose(conv["same"][:-1], sps.convolve(x[0, 0], w, "same")[1:], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(corr["same"][:-1], sps.correlate(x[0, 0], w, "same")[1:], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("N,C,O,L,k,s,p", CONV1D)
def test_convolution1d_forms_equal_loop_gradients(N, C, O, L, k, s, p):
    rng = np.random.default_rng(13)
    lay, x, prm = _layer_and_params(Convolution1d, rng, N, C, O, L, k, s, p)
    dy = rng.standard_normal(lay.output_shape(x.shape))
    dx, dW, db = loop_convolution1d_grads(dy, x, prm["W"], s, p)
    for f in FORMS:
        g = lay.backward(f, dy, x, prm)
        np.testing.assert_allclose(g["x"], dx, rtol=1e-11, atol=1e-12, err_msg=f)
        np.testing.assert_allclose(g["W"], dW, rtol=1e-11, atol=1e-12, err_msg=f)
        np.testing.assert_allclose(g["b"], db, rtol=1e-11, atol=1e-12, err_msg=f)


def test_the_correlation_form_is_not_conv1d_s():
    """A wrong kernel orientation is caught: the convolution's gradients are not conv1d's."""
    rng = np.random.default_rng(14)
    conv, x, prm = _layer_and_params(Convolution1d, rng, 2, 2, 2, 8, 3, 1, "same")
    corr = Conv1d(out_channels=2, kernel=3, padding="same")
    dy = rng.standard_normal(conv.output_shape(x.shape))
    assert not np.allclose(conv.backward("correlation", dy, x, prm)["W"], corr.backward("correlation", dy, x, prm)["W"])


def _torch():
    return pytest.importorskip("torch", reason="torch not installed: the autograd oracle is skipped")


@pytest.mark.parametrize("N,C,O,L,k,s,p", CONV1D)
def test_convolution1d_and_conv1d_forms_equal_torch_autograd(N, C, O, L, k, s, p):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(15)
    for cls, flip in ((Convolution1d, True), (Conv1d, False)):
        lay, x, prm = _layer_and_params(cls, rng, N, C, O, L, k, s, p)
        xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, prm["W"], prm["b"]))
        pl, pr = pads_of(p, k)
        w_used = Wt.flip(-1) if flip else Wt
        if p == "same":                                     # torch's own 'same', not our split
            with warnings.catch_warnings():                 # even k: torch pads a copy (a notice)
                warnings.simplefilter("ignore", UserWarning)
                y = F.conv1d(xt, w_used, bt, stride=s, padding="same")
        else:
            y = F.conv1d(F.pad(xt, (pl, pr)), w_used, bt, stride=s)
        np.testing.assert_allclose(lay.forward(x, prm), y.detach().numpy(), rtol=1e-12, atol=1e-12)
        dy = rng.standard_normal(tuple(y.shape))
        y.backward(torch.tensor(dy))
        for f in FORMS:
            g = lay.backward(f, dy, x, prm)
            for name, t in (("x", xt), ("W", Wt), ("b", bt)):
                np.testing.assert_allclose(g[name], t.grad.numpy(), rtol=1e-11, atol=1e-12, err_msg=f"{cls.__name__} {f} {name}")


@pytest.mark.parametrize("kernel,padding", [([3, 2], "same"), ([2, 4], "full"), ([3, 3], "valid"), ([2, 3], [1, 0])])
def test_conv2d_padding_modes_equal_torch_autograd(kernel, padding):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(16)
    lay = Conv2d(out_channels=3, kernel=kernel, stride=1, padding=padding, bias=True)
    x, W, b = rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, *kernel)), rng.standard_normal(3)
    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    if isinstance(padding, str) and padding != "full":
        y = F.conv2d(xt, Wt, bt, padding=padding)
    else:
        ph, pw = (kernel[0] - 1, kernel[1] - 1) if padding == "full" else padding
        y = F.conv2d(xt, Wt, bt, padding=(ph, pw))
    assert lay.output_shape(x.shape) == tuple(y.shape)
    np.testing.assert_allclose(lay.forward(x, {"W": W, "b": b}), y.detach().numpy(), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(tuple(y.shape))
    y.backward(torch.tensor(dy))
    for f in FORMS:
        g = lay.backward(f, dy, x, {"W": W, "b": b})
        for name, t in (("x", xt), ("W", Wt), ("b", bt)):
            np.testing.assert_allclose(g[name], t.grad.numpy(), rtol=1e-11, atol=1e-12, err_msg=f"{f} {name}")


@pytest.mark.parametrize("padding", ["valid", "same", "full", 2])
def test_correlation1d_padding_forms_equal_loop_gradients(padding):
    rng = np.random.default_rng(17)
    k, L = 4, 7
    lay = Correlation1d(kernel=k, padding=padding)
    x, w = rng.standard_normal((3, L)), rng.standard_normal(k)
    pl, pr = pads_of(padding, k)
    xp = np.pad(x, ((0, 0), (pl, pr)))
    y = lay.forward(x, {"w": w})
    np.testing.assert_allclose(y, [[xp[n, i:i + k] @ w for i in range(L + pl + pr - k + 1)] for n in range(3)],
                               rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dxp, dw = np.zeros_like(xp), np.zeros(k)
    for n, i in np.ndindex(dy.shape):
        dxp[n, i:i + k] += dy[n, i] * w
        dw += dy[n, i] * xp[n, i:i + k]
    for f in FORMS:
        g = lay.backward(f, dy, x, {"w": w})
        np.testing.assert_allclose(g["x"], dxp[:, pl:pl + L], rtol=1e-11, atol=1e-12, err_msg=f)
        np.testing.assert_allclose(g["w"], dw, rtol=1e-11, atol=1e-12, err_msg=f)


@pytest.mark.parametrize("cls,padding,stride", [(Convolution1d, "same", 1), (Convolution1d, "full", 2),
                                                (Conv1d, "same", 1), (Convolution1d, 1, 3)])
def test_structure_is_the_real_dependence(cls, padding, stride):
    """Each entry of x, W, b reaches exactly the outputs its perturbation changes (no under-claim,
    and for these layers no over-claim either)."""
    rng = np.random.default_rng(18)
    lay, x, prm = _layer_and_params(cls, rng, 1, 2, 2, 9, 4 if padding == "same" else 3, stride, padding)
    y0 = lay.forward(x, prm)
    for name, v in (("x", x), *prm.items()):
        S = lay.structure(x.shape, name).toarray()
        real = np.zeros_like(S)
        for j in range(v[0].size if name == "x" else v.size):
            moved = v.copy().reshape(v.shape[0], -1) if name == "x" else v.copy().ravel()
            moved[(0, j) if name == "x" else j] += 1.0
            args = (moved.reshape(x.shape), prm) if name == "x" else (x, {**prm, name: moved.reshape(v.shape)})
            real[:, j] = (lay.forward(*args) != y0)[0].ravel()
        np.testing.assert_array_equal(S, real, err_msg=name)


@pytest.mark.parametrize("layer,shape", [
    ({"type": "convolution1d", "out_channels": 2, "kernel": 4, "padding": "same"}, (2, 3, 9)),
    ({"type": "convolution1d", "out_channels": 3, "kernel": 3, "stride": 2, "padding": "full"}, (2, 2, 7)),
    ({"type": "conv2d", "out_channels": 2, "kernel": [2, 3], "padding": "same"}, (2, 2, 5, 4)),
    ({"type": "conv1d", "out_channels": 2, "kernel": 2, "stride": 2, "padding": "full"}, (2, 2, 6)),
    ({"type": "correlation1d", "kernel": 4, "padding": "same"}, (3, 8)),
])
def test_cases_with_padding_modes_pass_in_every_form(layer, shape):
    res = run_case(from_dict({"name": "t", "seed": 1, "input": list(shape), "layers": [layer]}, "<test>"))
    assert res.passed
    assert {r.form for r in res.rows} == set(FORMS)
    assert all(a.max_rel_diff < 1e-12 for a in res.agreement)


@pytest.mark.parametrize("layer, field, expect", [
    ("{type: convolution1d, out_channels: 2, kernel: 3, padding: sam}", "layers[0].padding",
     "unknown value 'sam'; an integer or one of: valid, same, full (did you mean `same`?)"),
    ("{type: conv1d, out_channels: 2, kernel: 3, stride: 2, padding: same}", "layers[0].padding",
     "padding 'same' needs stride 1"),
    ("{type: conv2d, out_channels: 2, kernel: 3, stride: [1, 2], padding: same}", "layers[0].padding",
     "padding 'same' needs stride 1"),
    ("{type: conv2d, out_channels: 2, kernel: 3, padding: [same, 1]}", "layers[0].padding[0]",
     "expected an integer"),
    ("{type: conv2d, out_channels: 2, kernel: 3, padding: Full}", "layers[0].padding",
     "an integer, a pair [a, b] or one of: valid, same, full"),
    ("{type: correlation1d, kernel: 3, padding: -1}", "layers[0].padding", "must be >= 0"),
    ("{type: convolution1d, out_channels: 2, kernel: 9, padding: valid}", "layers[0].kernel",
     "kernel 9 is longer than the padded input 6"),
])
def test_bad_padding_is_one_line_exit_2(tmp_path, layer, field, expect):
    shape = "[2, 3, 6, 6]" if "conv2d" in layer else "[2, 6]" if "correlation1d" in layer else "[2, 3, 6]"
    f = tmp_path / "bad.yaml"
    f.write_text(f"input: {shape}\nlayers:\n  - {layer}\n")
    res = CliRunner().invoke(main, ["run", str(f)])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and str(f) in lines[0] and field in lines[0] and expect in lines[0], res.output


def test_list_and_new_show_convolution1d_and_padding_modes(tmp_path):
    out = CliRunner().invoke(main, ["list"]).output
    lines = out[out.index("convolution1d:"):].splitlines()
    block = "\n".join([lines[0], *[line for line in lines[1:9] if line.startswith("  ")]])
    assert "seed 003 §6.2 eq. (4)" in block and "seed 001" in block and "seed 002" in block
    assert block.count("valid | same | full") == 1 and "n/a" not in block
    new = CliRunner().invoke(main, ["new", "convolution1d"]).output
    assert "padding: same" in new and "type: convolution1d" in new
