"""Issue 15 part 4, done-when: a hinge-loss network and convolution1d networks (padding 'same' and
'full') pass, and every form's gradients equal an independent reverse mode: plain-loop
backpropagation written here (always), and torch autograd (skipped when torch is not installed).
The networks are the ones of cases/."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from gradcheck_cli.cases import from_dict, load
from gradcheck_cli.check import run_case
from gradcheck_cli.network import Network

CASES = Path(__file__).resolve().parent.parent / "cases"
NETWORKS = ["hinge-svm-seed002.yaml", "convolution1d-same-seed003.yaml", "convolution1d-full-hinge.yaml"]
FORMS = ("kron", "correlation", "spray")


def _pads(padding, k):
    if padding == "same":
        return (k - 1) // 2, k // 2
    if padding == "full":
        return k - 1, k - 1
    return (0, 0) if padding == "valid" else (padding, padding)


# ------------------------------------------------------------------------------------------
# oracle 1: plain loops, written from the definitions
# ------------------------------------------------------------------------------------------
def _tap(flipped, k, j):
    """Offset in the window of tap j: correlation reads pad(x)[q s + j], convolution
    (y_i = sum_j x_{i-j} w_j at i = q s + k - 1) reads pad(x)[q s + k - 1 - j]."""
    return k - 1 - j if flipped else j


def loop_layer(o, x, p):
    """Forward of one layer and a closure giving (dL/dx, {param: dL/dparam}) from dL/dy."""
    t = o["type"]
    if t == "linear":
        X = x.reshape(x.shape[0], -1)
        return X @ p["W"] + p["b"], lambda dy: ((dy @ p["W"].T).reshape(x.shape),
                                                {"W": X.T @ dy, "b": dy.sum(axis=0)})
    if t in ("relu", "tanh"):
        y = np.maximum(x, 0) if t == "relu" else np.tanh(x)
        d = (x > 0).astype(float) if t == "relu" else 1 - y ** 2
        return y, lambda dy: (dy * d, {})
    flipped = t == "convolution1d"
    W, b, s = p["W"], p["b"], o.get("stride", 1)
    (O, C, k), (N, _, L) = W.shape, x.shape
    pl, pr = _pads(o.get("padding", 0), k)
    xp = np.pad(x, ((0, 0), (0, 0), (pl, pr)))
    Lo = (L + pl + pr - k) // s + 1
    y = np.zeros((N, O, Lo))
    for n, oo, q, c, j in np.ndindex(N, O, Lo, C, k):
        y[n, oo, q] += W[oo, c, j] * xp[n, c, q * s + _tap(flipped, k, j)]
    y += b[None, :, None]

    def back(dy):
        dxp, dW = np.zeros_like(xp), np.zeros_like(W)
        for n, oo, q, c, j in np.ndindex(N, O, Lo, C, k):
            m = q * s + _tap(flipped, k, j)
            dxp[n, c, m] += dy[n, oo, q] * W[oo, c, j]
            dW[oo, c, j] += dy[n, oo, q] * xp[n, c, m]
        return dxp[:, :, pl:pl + L], {"W": dW, "b": dy.sum(axis=(0, 2))}
    return y, back


def loop_loss_grad(name, y, target, reduction):
    scale = 1 / y.shape[0] if reduction == "mean" else 1
    if name == "mse":
        return (y - target) * scale
    assert name == "hinge"
    z, dz = y.reshape(y.shape[0], -1), np.zeros(y.size).reshape(y.shape[0], -1)
    for n, j in np.ndindex(z.shape):                        # CS231n svm_loss_naive
        if j != target[n] and z[n, j] - z[n, target[n]] + 1 > 0:
            dz[n, j] += 1
            dz[n, target[n]] -= 1
    return (dz * scale).reshape(y.shape)


def loop_gradients(net: Network):
    opts = [dict(cfg.options) | {"type": cfg.type} for cfg in net.case.layers]
    h, backs = net.x0, []
    for o, p in zip(opts, net.params):
        h, back = loop_layer(o, h, p)
        backs.append(back)
    dy = loop_loss_grad(net.case.loss, h, net.loss.target, net.case.reduction)
    grads = [None] * len(backs)
    for i in reversed(range(len(backs))):
        dy, g = backs[i](dy)
        grads[i] = {"x": dy, **g}
    return h, grads


# ------------------------------------------------------------------------------------------
# oracle 2: torch autograd
# ------------------------------------------------------------------------------------------
def torch_gradients(net: Network):
    torch = pytest.importorskip("torch", reason="torch not installed: the autograd oracle is skipped")
    F = torch.nn.functional
    x0 = torch.tensor(net.x0, requires_grad=True)
    params = [{k: torch.tensor(v, requires_grad=True) for k, v in p.items()} for p in net.params]
    h, inputs = x0, []
    for cfg, p in zip(net.case.layers, params):
        h.retain_grad()
        inputs.append(h)
        o, t = cfg.options, cfg.type
        if t == "linear":
            h = h.reshape(h.shape[0], -1) @ p["W"] + p["b"]
        elif t in ("relu", "tanh"):
            h = torch.relu(h) if t == "relu" else torch.tanh(h)
        else:
            W = p["W"].flip(-1) if t == "convolution1d" else p["W"]
            if o["padding"] == "same":                      # torch's own 'same'
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    h = F.conv1d(h, W, p["b"], stride=o["stride"], padding="same")
            else:
                h = F.conv1d(F.pad(h, _pads(o["padding"], W.shape[-1])), W, p["b"], stride=o["stride"])
    if net.case.loss == "mse":
        L = 0.5 * ((h - torch.tensor(net.loss.target)) ** 2).sum()
    else:                                                   # torch divides by the number of classes
        z = h.reshape(h.shape[0], -1)
        L = F.multi_margin_loss(z, torch.tensor(net.loss.target), reduction="sum") * z.shape[1]
    L = L / h.shape[0] if net.case.reduction == "mean" else L
    L.backward()
    grads = [{"x": a.grad.numpy(), **{k: v.grad.numpy() for k, v in p.items()}} for a, p in zip(inputs, params)]
    return h.detach().numpy(), grads


# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("oracle", [loop_gradients, torch_gradients], ids=["loops", "torch"])
def test_network_passes_and_every_form_equals_the_oracle(name, oracle):
    case = load(CASES / name)
    res = run_case(case)
    assert res.passed, name
    assert {r.form for r in res.rows} == set(FORMS)
    net = Network.build(case)
    y, want = oracle(net)
    xs = net.forward()
    np.testing.assert_allclose(xs[-1], y, rtol=1e-12, atol=1e-12)
    worst = 0.0
    for f in FORMS:
        got = net.backward(f, xs)
        for i, (g, w) in enumerate(zip(got, want)):
            assert set(g) == set(w), (f, i)
            for t in g:
                np.testing.assert_allclose(g[t], w[t], rtol=1e-11, atol=1e-13, err_msg=f"{name} {f} layers[{i}].{t}")
                worst = max(worst, float(np.max(np.abs(g[t] - w[t]))))
    assert worst < 1e-12


def test_the_networks_use_what_they_claim():
    """The cases cover hinge, convolution1d with 'same' (even kernel) and 'full' (with stride)."""
    layers = [(c.type, dict(c.options)) for n in NETWORKS for c in load(CASES / n).layers]
    losses = {load(CASES / n).loss for n in NETWORKS}
    assert "hinge" in losses
    conv = [o for t, o in layers if t == "convolution1d"]
    assert any(o["padding"] == "same" and o["kernel"] % 2 == 0 for o in conv)
    assert any(o["padding"] == "full" and o["stride"] > 1 for o in conv)
    assert any(o["padding"] == "full" and o["stride"] == 1 for o in conv)


def test_a_hinge_margin_exactly_at_zero_is_a_kink_like_relus(tmp_path):
    """Scores with one margin exactly 0 (given data, so no redraw): the analytic side takes 0 there
    (as ReLU at 0); the one-sided differences bracket it and the entry passes as a kink."""
    x = np.array([[2.0, 1.0, 0.5], [0.3, 1.7, 0.9]])        # sample 0: margin of class 1 is 0
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", np.array([0, 1]))
    case = from_dict({"name": "kink", "input": {"data": "x.npy"}, "layers": [{"type": "relu"}],
                      "loss": {"type": "hinge", "target": "t.npy"}}, str(tmp_path / "c.yaml"), base_dir=tmp_path)
    res = run_case(case)                    # local mode: the loss's own row meets the kink
    assert res.passed
    assert sum(r.kinks for r in res.loss_rows) >= 1
    res = run_case(case, mode="network")    # the whole loss: the relu's input row meets it
    assert res.passed
    assert sum(r.kinks for r in res.rows if r.tensor == "x") >= 1
