"""The layer-local engine (local.py): each layer alone, the loss, the composition check, culprits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradcheck_cli import composition
from gradcheck_cli.check import run_case
from gradcheck_cli.layers.conv import Conv2d
from gradcheck_cli.layers.dense import Linear
from gradcheck_cli.losses import MSE
from gradcheck_cli.network import Network
from gradcheck_cli.registry import form

UL = Path(__file__).parent / "user_layers"


class WrongDxConv(Conv2d):
    """conv2d whose correlation-form dL/dx is off by 1e-3 (relative) at one entry."""

    AT = (1, 2, 3, 4)

    @form("correlation", seed="test: a wrong input gradient")
    def correlation(self, dy, x, params):
        g = super().correlation(dy, x, params)
        g["x"] = g["x"].copy()
        g["x"][self.AT] *= 1 + 1e-3
        return g


class WrongWLinear(Linear):
    """linear whose correlation-form dL/dW is off by 1e-4 (relative) at one entry; dL/dx right."""

    AT = (3, 1)

    @form("correlation", seed="test: a wrong weight gradient")
    def correlation(self, dy, x, params):
        g = super().correlation(dy, x, params)
        g["W"] = g["W"].copy()
        g["W"][self.AT] *= 1 + 1e-4
        return g


def _net(conv="conv2d", linear="linear", extra=()):
    return [{"type": conv, "out_channels": 3, "kernel": 3, "padding": 1}, {"type": "tanh"},
            {"type": "maxpool2d", "size": 2}, *extra, {"type": "flatten"},
            {"type": linear, "out_features": 7}, {"type": "relu"}, {"type": "linear", "out_features": 4}]


def test_two_bugs_are_both_named_and_nothing_else(make_case, temp_layer):
    temp_layer("test-wrong-dx-conv", WrongDxConv)
    temp_layer("test-wrong-w-linear", WrongWLinear)
    case = make_case(input=[2, 3, 8, 8], loss="cross_entropy", seed=3,
                     layers=_net("test-wrong-dx-conv", "test-wrong-w-linear"))
    res = run_case(case)
    assert res.mode == "local" and not res.passed
    assert res.culprits == [(0, "x"), (4, "W")]
    bad = {(r.layer, r.tensor, r.form) for r in res.rows if not r.passed}
    assert bad == {(0, "x", "correlation"), (4, "W", "correlation")}
    rows = {(r.layer, r.tensor, r.form): r for r in res.rows}
    assert rows[(0, "x", "correlation")].worst_index == WrongDxConv.AT
    assert rows[(4, "W", "correlation")].worst_index == WrongWLinear.AT
    assert rows[(4, "W", "correlation")].failed == 1


def test_a_parameter_only_bug_is_named_alone(make_case, temp_layer):
    temp_layer("test-wrong-w-linear", WrongWLinear)
    case = make_case(input=[3, 6], loss="mse", seed=1,
                     layers=[{"type": "linear", "out_features": 5}, {"type": "tanh"},
                             {"type": "test-wrong-w-linear", "out_features": 4}, {"type": "sigmoid"}])
    res = run_case(case)
    assert res.culprits == [(2, "W")]
    assert [d.passed for d in res.composition if d.form != "correlation"] == [True, True, True, True]


def test_correct_deep_net_mixing_builtin_and_custom_layers_names_none(tmp_path, make_case):
    (tmp_path / "activations.py").write_text((UL / "activations.py").read_text())
    (tmp_path / "dense.py").write_text((UL / "dense.py").read_text())
    layers = [{"type": "conv2d", "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1},
              {"type": "custom", "impl": "activations.py:LeakyReLU", "options": {"slope": 0.1}},
              {"type": "maxpool2d", "size": 2, "stride": 1}, {"type": "conv2d", "out_channels": 3, "kernel": 2},
              {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "out_features": 6},
              {"type": "custom", "impl": "dense.py:SquareLinear"}, {"type": "tanh"},
              {"type": "linear", "out_features": 3}]
    res = run_case(make_case(input=[3, 2, 9, 9], loss="cross_entropy", seed=5, layers=layers,
                             regularization={"l2": 0.01}))
    assert res.passed, [(r.label, r.form, r.note) for r in res.rows if not r.passed]
    assert res.culprits == []
    assert len(res.composition) == 2 * 4        # two directions x (kron, correlation, spray, custom)
    assert res.loss_rows and all(r.passed for r in res.loss_rows)


def test_a_user_layer_bug_deep_in_a_net_is_named(tmp_path, make_case):
    (tmp_path / "dense.py").write_text((UL / "dense.py").read_text())
    layers = [{"type": "linear", "out_features": 5}, {"type": "custom", "impl": "dense.py:BiasFromOneSample"},
              {"type": "relu"}, {"type": "linear", "out_features": 3}]
    res = run_case(make_case(input=[4, 3], loss="mse", layers=layers))
    assert res.culprits == [(1, "b")]


def test_dead_column_is_caught_only_with_the_random_cotangent(tmp_path, make_case, temp_layer):
    """Upstream g = 0 below a ReLU that is off: a bug at those entries is invisible to g alone."""
    class WrongDeadColumn(Linear):
        @form("kron", seed="test: dW wrong in column 0")
        def kron(self, dy, x, params):
            g = super().kron(dy, x, params)
            g["W"] = g["W"].copy()
            g["W"][:, 0] = 2.0 * g["W"][:, 0]          # right wherever dy[:, 0] = 0
            return g

    temp_layer("test-wrong-dead-column", WrongDeadColumn)
    b = np.array([-50.0, 0.2, 0.1])
    np.save(tmp_path / "b.npy", b)
    case = make_case(input=[4, 3], forms=["kron"],
                     layers=[{"type": "test-wrong-dead-column", "out_features": 3, "params": {"b": "b.npy"}},
                             {"type": "relu"}])
    res = run_case(case)
    row = next(r for r in res.rows if (r.layer, r.tensor) == (0, "W"))
    assert not row.passed and row.worst_index[1] == 0 and row.cotangent == "random"
    assert "fails only with a random cotangent" in row.note
    assert (0, "W") in res.culprits
    assert run_case(case, mode="network").passed       # the whole loss cannot see it


def test_composition_catches_a_wiring_mistake(make_case, monkeypatch):
    """A chain that hands layer 1 a scaled dL/dy: every layer-local row is still right (each
    layer's rule holds for any cotangent), the whole gradient is not."""
    case = make_case(input=[3, 5], loss="mse", seed=4,
                     layers=[{"type": "linear", "out_features": 4}, {"type": "tanh"},
                             {"type": "linear", "out_features": 2}])
    original = Network.backward

    def miswired(self, form, xs, dtype=np.float64):
        grads = original(self, form, xs, dtype)
        if len(self.layers) > 1:               # the whole network only, not a layer alone
            grads[0] = {k: 1.01 * v for k, v in grads[0].items()}
        return grads

    monkeypatch.setattr(Network, "backward", miswired)
    res = run_case(case)
    assert all(r.passed for r in res.rows)
    assert res.composition and not any(d.passed for d in res.composition)
    assert not res.passed and res.culprits == []


def test_composition_passes_right_gradients_and_fails_scaled_ones(make_case):
    case = make_case(input=[3, 5], loss="cross_entropy", seed=8, regularization={"l2": 0.1},
                     layers=[{"type": "linear", "out_features": 4}, {"type": "sigmoid"},
                             {"type": "linear", "out_features": 3}])
    net = Network.build(case)
    xs = net.forward()
    grads = {"kron": net.backward("kron", xs)}
    rtol, atol = 1e-6, 1e-9
    assert all(d.passed for d in composition.check(net, grads, rtol, atol))
    wrong = {"kron": [{k: v * (1 + 1e-4) for k, v in g.items()} for g in grads["kron"]]}
    assert not any(d.passed for d in composition.check(net, wrong, rtol, atol))


def test_a_wrong_loss_gradient_fails_the_loss_row(make_case, monkeypatch):
    case = make_case(input=[3, 4], loss="mse", layers=[{"type": "linear", "out_features": 2}])
    monkeypatch.setattr(MSE, "grad", lambda self, y, t: 1.001 * (y - t))
    res = run_case(case)
    assert [r.passed for r in res.loss_rows] == [False]
    assert res.loss_rows[0].label == "loss.y"
    assert (1, "y") in res.culprits


def test_every_case_in_the_repo_passes_in_local_mode():
    from gradcheck_cli.cases import load

    root = Path(__file__).parent.parent / "cases"
    for f in sorted(root.glob("*.yaml")):
        case = load(f)
        assert run_case(case, mode="local").passed, f.name


@pytest.mark.parametrize("mode", ["local", "network"])
def test_mode_from_the_case_file(make_case, mode):
    res = run_case(make_case(input=[2, 3], mode=mode, layers=[{"type": "tanh"}]))
    assert res.mode == mode
    assert bool(res.composition) == (mode == "local")
