"""Losses: values as documented, gradients against central differences in plain loops."""
from __future__ import annotations

import numpy as np
import pytest

from gradcheck_cli.losses import LOSSES, BoundLoss, get_loss, starter_case


def _numgrad(f, y, h=1e-6):
    g = np.zeros_like(y)
    for j in np.ndindex(y.shape):
        e = np.zeros_like(y)
        e[j] = h
        g[j] = (f(y + e) - f(y - e)) / (2 * h)
    return g


@pytest.mark.parametrize("name", ["projection", "sum", "mse", "cross_entropy", "hinge"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradient_matches_differences(name, reduction):
    rng = np.random.default_rng(5)
    loss = get_loss(name)
    y = rng.normal(size=(3, 4))
    bound = BoundLoss(loss, loss.make_target(y.shape, rng), reduction)
    np.testing.assert_allclose(bound.grad(y), _numgrad(bound.value, y), rtol=1e-7, atol=1e-9)


def test_values_follow_their_definitions():
    rng = np.random.default_rng(0)
    y, t = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    assert BoundLoss(get_loss("mse"), t).value(y) == pytest.approx(0.5 * np.sum((y - t) ** 2))
    assert BoundLoss(get_loss("mse"), t, "mean").value(y) == pytest.approx(0.5 * np.sum((y - t) ** 2) / 3)
    assert BoundLoss(get_loss("sum"), None).value(y) == pytest.approx(y.sum())
    assert BoundLoss(get_loss("projection"), t).value(y) == pytest.approx(np.sum(t * y))
    labels = np.array([0, 3, 1])
    ce = sum(-np.log(np.exp(y[n, labels[n]]) / np.exp(y[n]).sum()) for n in range(3))
    assert BoundLoss(get_loss("cross_entropy"), labels).value(y) == pytest.approx(ce)


def test_stacked_values_equal_single_values():
    rng = np.random.default_rng(1)
    loss = get_loss("cross_entropy")
    ys = rng.normal(size=(5, 3, 4))
    bound = BoundLoss(loss, loss.make_target((3, 4), rng), "mean")
    np.testing.assert_allclose(bound.value_stacked(ys), [bound.value(y) for y in ys], rtol=1e-14)


def test_cross_entropy_rejects_bad_labels():
    loss = get_loss("cross_entropy")
    assert loss.check_target(np.array([0, 5]), (2, 4)) is not None
    assert loss.check_target(np.array([0.5, 1.0]), (2, 4)) is not None
    assert loss.check_target(np.array([0, 3]), (2, 4)) is None


# ------------------------------------------------------------------------------------------
# hinge (seed 002, CS231n's svm_loss)
# ------------------------------------------------------------------------------------------
def svm_loss_naive(y, t):
    """CS231n's svm_loss_naive with delta = 1 and no averaging: loss and dL/dscores, in loops."""
    loss, dy = 0.0, np.zeros_like(y)
    for n in range(y.shape[0]):
        for j in range(y.shape[1]):
            if j == t[n]:
                continue
            margin = y[n, j] - y[n, t[n]] + 1
            if margin > 0:
                loss += margin
                dy[n, j] += 1
                dy[n, t[n]] -= 1
    return loss, dy


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_hinge_is_cs231n_svm_loss(reduction):
    rng = np.random.default_rng(7)
    loss = get_loss("hinge")
    y = rng.normal(size=(6, 5))
    t = loss.make_target(y.shape, rng)
    assert t.dtype.kind == "i" and loss.check_target(t, y.shape) is None
    want, dy = svm_loss_naive(y, t)
    scale = 1 / 6 if reduction == "mean" else 1
    bound = BoundLoss(loss, t, reduction)
    assert 0 < dy.astype(bool).sum() < y.size               # some margins on each side of 0
    assert bound.value(y) == pytest.approx(want * scale, rel=1e-14)
    np.testing.assert_allclose(bound.grad(y), dy * scale, rtol=1e-14)
    np.testing.assert_allclose(bound.value_stacked(np.stack([y, 2 * y])),
                               [want * scale, svm_loss_naive(2 * y, t)[0] * scale], rtol=1e-14)


def test_hinge_on_4d_scores_flattens_the_classes():
    rng = np.random.default_rng(8)
    loss = get_loss("hinge")
    y = rng.normal(size=(3, 2, 2, 2))
    t = np.array([0, 7, 3])
    want, dy = svm_loss_naive(y.reshape(3, 8), t)
    assert BoundLoss(loss, t).value(y) == pytest.approx(want, rel=1e-14)
    np.testing.assert_allclose(BoundLoss(loss, t).grad(y), dy.reshape(y.shape))


def test_hinge_kink_distance_and_the_derivative_on_a_kink():
    loss = get_loss("hinge")
    y, t = np.array([[0.0, -0.5, 0.2], [1.0, 0.0, 3.0]]), np.array([0, 2])
    # margins: sample 0: [., 0.5, 1.2]; sample 1: [-1.0, -2.0, .]
    np.testing.assert_allclose(loss.kink_distance(y, t), [[0.5, 0.5, 1.2], [1.0, 2.0, 1.0]])
    for n, j in np.ndindex(y.shape):                       # a smaller move keeps l linear in the entry
        d = loss.kink_distance(y, t)[n, j]
        left, right = y.copy(), y.copy()
        left[n, j] -= 0.9 * d
        right[n, j] += 0.9 * d
        f = lambda z: BoundLoss(loss, t).value(z)          # noqa: E731
        assert f(right) - f(y) == pytest.approx(f(y) - f(left), abs=1e-12)
    on = np.array([[2.0, 1.0, 0.5]])                       # margin of class 1 exactly 0
    assert loss.kink_distance(on, np.array([0]))[0, 1] == 0
    np.testing.assert_array_equal(BoundLoss(loss, np.array([0])).grad(on), [[0.0, 0.0, 0.0]])  # as ReLU at 0


def test_hinge_rejects_bad_labels():
    loss = get_loss("hinge")
    assert "labels must lie in 0..3" in loss.check_target(np.array([0, 4]), (2, 4))
    assert "integer labels" in loss.check_target(np.array([0.0, 1.0]), (2, 4))
    assert loss.check_target(np.array([0, 1, 2]), (2, 4)) is not None


def test_hinge_equals_torch_multi_margin_loss():
    torch = pytest.importorskip("torch", reason="torch not installed: the autograd oracle is skipped")
    rng = np.random.default_rng(9)
    y, t = rng.normal(size=(5, 4)), np.array([0, 3, 1, 1, 2])
    yt = torch.tensor(y, requires_grad=True)
    # torch divides each sample's sum by the number of classes
    L = torch.nn.functional.multi_margin_loss(yt, torch.tensor(t), p=1, margin=1.0, reduction="sum") * 4
    L.backward()
    bound = BoundLoss(get_loss("hinge"), t)
    assert bound.value(y) == pytest.approx(L.item(), rel=1e-14)
    np.testing.assert_allclose(bound.grad(y), yt.grad.numpy(), rtol=1e-14)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_has_a_starter_case_that_passes(tmp_path, name):
    from gradcheck_cli.api import check_case

    f = tmp_path / "case.yaml"
    f.write_text(starter_case(name))
    res = check_case(f)
    assert res.passed and {r.form for r in res.rows} == {"kron", "correlation", "spray"}
