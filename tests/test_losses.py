"""Losses: values as documented, gradients against central differences in plain loops."""
from __future__ import annotations

import numpy as np
import pytest

from gradcheck_cli.losses import BoundLoss, get_loss


def _numgrad(f, y, h=1e-6):
    g = np.zeros_like(y)
    for j in np.ndindex(y.shape):
        e = np.zeros_like(y)
        e[j] = h
        g[j] = (f(y + e) - f(y - e)) / (2 * h)
    return g


@pytest.mark.parametrize("name", ["projection", "sum", "mse", "cross_entropy"])
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
