"""Dense layers: every form against numerical gradients, against each other, against loops."""
from __future__ import annotations

import numpy as np
import pytest

from gradcheck_cli.check import run_case
from gradcheck_cli.layers.dense import Linear
from gradcheck_cli.network import Network

NETWORKS = {
    "linear": [{"type": "linear", "out_features": 3}],
    "linear-nobias": [{"type": "linear", "out_features": 2, "bias": False}],
    "relu": [{"type": "linear", "out_features": 5}, {"type": "relu"}],
    "sigmoid": [{"type": "sigmoid"}, {"type": "linear", "out_features": 3}],
    "tanh": [{"type": "tanh"}, {"type": "linear", "out_features": 2}],
    "add": [{"type": "add"}, {"type": "tanh"}],
    "flatten": [{"type": "flatten"}, {"type": "linear", "out_features": 2}],
}


@pytest.mark.parametrize("loss", ["projection", "sum", "mse", "cross_entropy"])
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_every_form_matches_numerical(make_case, net, loss):
    shape = [3, 2, 3] if net == "flatten" else [3, 4]
    result = run_case(make_case(input=shape, layers=NETWORKS[net], loss=loss, seed=3))
    assert result.rows, "nothing was checked"
    failing = [(r.label, r.form, r.max_rel_error) for r in result.rows if not r.passed]
    assert not failing
    # every entry of every tensor was checked
    assert all(r.checked == int(np.prod(r.shape)) for r in result.rows)


@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_forms_agree_with_each_other(make_case, net):
    shape = [2, 3, 2] if net == "flatten" else [2, 5]
    result = run_case(make_case(input=shape, layers=NETWORKS[net], seed=1))
    assert result.agreement
    assert max(a.max_rel_diff for a in result.agreement) < 1e-12


def test_linear_against_loops():
    rng = np.random.default_rng(0)
    x, W, b, dy = rng.normal(size=(4, 5)), rng.normal(size=(5, 3)), rng.normal(size=3), rng.normal(size=(4, 3))
    y = np.array([[sum(x[n, d] * W[d, c] for d in range(5)) + b[c] for c in range(3)] for n in range(4)])
    dW = np.array([[sum(x[n, d] * dy[n, c] for n in range(4)) for c in range(3)] for d in range(5)])
    dx = np.array([[sum(W[d, c] * dy[n, c] for c in range(3)) for d in range(5)] for n in range(4)])
    db = np.array([sum(dy[n, c] for n in range(4)) for c in range(3)])
    layer = Linear(out_features=3, bias=True)
    p = {"W": W, "b": b}
    np.testing.assert_allclose(layer.forward(x, p), y, rtol=1e-13)
    for f in ("kron", "correlation", "spray"):
        g = layer.backward(f, dy, x, p)
        np.testing.assert_allclose(g["W"], dW, rtol=1e-12, err_msg=f)
        np.testing.assert_allclose(g["x"], dx, rtol=1e-12, err_msg=f)
        np.testing.assert_allclose(g["b"], db, rtol=1e-12, err_msg=f)


def test_l2_regularization_adds_lambda_w(make_case):
    """seed 004 A): grad_W J = O^T G + lambda W; the numerical side sees l2/2 ||W||^2 too."""
    case = make_case(input=[4, 3], layers=[{"type": "linear", "out_features": 2}],
                     loss="sum", regularization={"l2": 0.5})
    net = Network.build(case)
    xs = net.forward()
    g = net.backward("correlation", xs)[0]["W"]
    W, X = net.params[0]["W"], net.x0
    np.testing.assert_allclose(g, X.T @ np.ones((4, 2)) + 0.5 * W, rtol=1e-13)
    assert run_case(case).passed


def test_linear_flattens_trailing_axes(make_case):
    case = make_case(input=[2, 3, 4], layers=[{"type": "linear", "out_features": 5}])
    net = Network.build(case)
    assert net.shapes == [(2, 3, 4), (2, 5)]
    assert net.params[0]["W"].shape == (12, 5)
    assert run_case(case).passed
