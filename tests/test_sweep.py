"""`gradcheck sweep`: error vs eps per tensor, checked against calculus (truncation h^2/6 f''')."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import linear_off_by

from gradcheck_cli.cli import main
from gradcheck_cli.network import Network
from gradcheck_cli.sweep import EPS_GRID, sweep


OffW = linear_off_by((0, 1), 1e-3)


def test_truncation_error_matches_calculus(make_case):
    """L = sum R tanh(x): the central difference errs by R h^2/6 tanh'''(x) + O(h^4)."""
    case = make_case(seed=3, input=[4, 5], layers=[{"type": "tanh"}], loss="projection")
    res = sweep(case, eps=(1e-2, 1e-3), sample=None)
    net = Network.build(case)
    x, R = net.x0, net.loss.target
    t = np.tanh(x)
    a = R * (1 - t ** 2)
    d3 = (1 - t ** 2) * (6 * t ** 2 - 2)
    for k, e in enumerate((1e-2, 1e-3)):
        h = e * np.maximum(1, np.abs(x))
        predicted = np.max(np.abs(R * h ** 2 / 6 * d3)) / np.max(np.abs(a))
        assert res.rows[0].errors[k] == pytest.approx(predicted, rel=0.02)


def test_smooth_case_shows_truncation_then_rounding(make_case):
    case = make_case(seed=0, input=[6, 5], layers=[{"type": "linear", "out_features": 4}, {"type": "tanh"},
                                                   {"type": "linear", "out_features": 3}], loss="mse")
    res = sweep(case, sample=20)
    assert [r.tensor for r in res.rows] == ["x", "W", "b", "x", "x", "W", "b"]
    tanh_x = res.rows[3]
    assert tanh_x.eps == EPS_GRID
    slopes = tanh_x.slopes()
    assert slopes[0] == pytest.approx(2, abs=0.1)          # 1e-2 -> 1e-3: truncation, eps^2
    assert slopes[-1] < -0.3                                # 1e-9 -> 1e-10: rounding grows as eps falls
    best_eps, best = tanh_x.best
    assert 1e-7 <= best_eps <= 1e-4 and best < 1e-9
    assert tanh_x.diagnosis(1e-6).startswith("best eps")


def test_wrong_gradient_shows_a_floor(make_case, temp_layer):
    temp_layer("off_w", OffW)
    case = make_case(seed=1, input=[4, 3], layers=[{"type": "off_w", "out_features": 2}])
    res = sweep(case, sample=None, form="correlation")
    w = next(r for r in res.rows if r.tensor == "W")
    net = Network.build(case)
    a = net.x0.T @ net.loss.target                          # dL/dW = X^T R for L = sum R (XW + b)
    floor = 1e-3 * abs(a[0, 1]) / np.abs(a).max()
    assert min(w.errors) == pytest.approx(floor, rel=1e-3)
    assert w.diagnosis(1e-6).startswith("floor")
    assert all(r.diagnosis(1e-6).startswith("best") for r in res.rows if r.tensor != "W")


def test_entries_on_a_kink_are_left_out(tmp_path, make_case):
    x = np.random.default_rng(0).standard_normal((3, 4))
    x[0] = 0.0
    np.save(tmp_path / "x.npy", x)
    res = sweep(make_case(input={"data": "x.npy"}, layers=[{"type": "relu"}]), sample=None)
    assert res.rows[0].on_kink == 4 and res.rows[0].checked == 8
    assert max(res.rows[0].errors) < 1e-6


def test_cli_table_json_and_plot(tmp_path):
    case = tmp_path / "c.yaml"
    case.write_text("input: [3, 4]\nlayers:\n  - {type: linear, out_features: 2}\n  - {type: sigmoid}\n")
    runner = CliRunner()
    res = runner.invoke(main, ["sweep", str(case), "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    assert "1e-02" in res.output and "1e-10" in res.output and "layers[1].x" in res.output
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = runner.invoke(main, ["sweep", str(case), "--format", "json", "--eps", "1e-3", "--eps", "1e-5"])
    doc = json.loads(res.output)
    assert doc["rows"][0]["eps"] == [1e-3, 1e-5] and len(doc["rows"]) == 4
    assert all(isinstance(e, float) for r in doc["rows"] for e in r["errors"])


def test_cli_bad_input_exit_2(tmp_path):
    res = CliRunner().invoke(main, ["sweep", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "no such file" in res.output
    res = CliRunner().invoke(main, ["sweep", str(tmp_path / "missing.yaml"), "--eps", "-1"])
    assert res.exit_code == 2


def test_nan_gradient_sweep_is_strict_json(make_case, temp_layer):
    from test_check import NaNGrad

    temp_layer("nan_grad", NaNGrad)
    res = sweep(make_case(input=[3, 4], layers=[{"type": "nan_grad"}]), eps=(1e-3, 1e-5), sample=None)
    doc = json.loads(json.dumps(res.to_json(), allow_nan=False))
    assert doc["rows"][0]["errors"] == ["nan", "nan"] and doc["rows"][0]["best_eps"] == "nan"
    assert res.rows[0].diagnosis(1e-6) == "NaN/Inf at every step"
