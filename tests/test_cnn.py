"""Whole CNNs: the seed cases in cases/ pass through every layer and parameter in every form,
and (when torch is installed) their saved analytic gradients equal PyTorch autograd."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gradcheck_cli.cases import from_dict, load
from gradcheck_cli.check import run_case
from gradcheck_cli.cli import main

ROOT = Path(__file__).resolve().parents[1]
CNN_CASES = ["cnn-seed001-matrix", "conv-stride-seed002", "correlation1d-seed003", "cnn-deep-stride-pad"]
CONV = {"conv2d", "conv1d", "correlation1d"}


def case_file(name: str) -> Path:
    return ROOT / "cases" / f"{name}.yaml"


@pytest.fixture(scope="module")
def results():
    return {name: run_case(load(case_file(name))) for name in CNN_CASES}


@pytest.mark.parametrize("name", CNN_CASES)
def test_seed_case_passes_every_layer_and_parameter(results, name):
    res = results[name]
    case = load(case_file(name))
    assert res.passed, [(r.label, r.form) for r in res.rows if not r.passed]
    checked = {(r.layer, r.tensor) for r in res.rows}
    from gradcheck_cli.network import Network

    net = Network.build(case)
    assert checked == set(net.tensors())                    # every layer's x and parameters
    for r in res.rows:
        assert r.checked == int(np.prod(r.shape))            # every entry, no sampling
    for i, cfg in enumerate(case.layers):
        if cfg.type in CONV:
            forms = {r.form for r in res.rows if r.layer == i}
            assert forms == {"kron", "correlation", "spray"}, (i, cfg.type, forms)
    assert max(a.max_rel_diff for a in res.agreement) < 1e-12


def test_maxpool_ties_show_as_kinks_and_pass(results):
    """Padding that only zeros read makes equal values in a max window: kinks, still passed."""
    rows = [r for r in results["cnn-deep-stride-pad"].rows if r.type == "maxpool2d"]
    assert rows and all(r.passed for r in rows)
    assert all(r.kinks > 0 for r in rows)


def test_cli_runs_the_cnn_cases_and_saves_arrays(tmp_path):
    files = [str(case_file(n)) for n in CNN_CASES]
    res = CliRunner().invoke(main, ["run", *files, "--format", "json", "--save-arrays", str(tmp_path)])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["passed"] and len(report["cases"]) == len(CNN_CASES)
    for name in CNN_CASES:
        with np.load(tmp_path / f"{name}.npz") as z:
            assert "input" in z.files and any(k.endswith(".kron.analytic") for k in z.files)


def test_a_wrong_conv_deep_in_the_network_is_located():
    """A stride-ignoring backward in the second conv: the rows after it pass, its own rows fail,
    and the wrong dL/dx then spoils everything before it — the last failing layer is the bug."""
    from gradcheck_cli import registry
    from gradcheck_cli.layers.conv import Conv2d, conv2d_grads_spray

    class StrideIgnored(Conv2d):
        @registry.form("spray", seed="bug: stride ignored")
        def spray(self, dy, x, params):
            dx, dW, db = conv2d_grads_spray(dy, x, params["W"], (1, 1), self.p)
            return {"x": dx, "W": dW, "b": db}

    registry.register("conv2d_bug_cnn")(StrideIgnored)
    try:
        doc = {"name": "t", "seed": 3, "input": [2, 1, 12, 10], "loss": "cross_entropy",
               "forms": ["spray"],
               "layers": [{"type": "conv2d", "out_channels": 2, "kernel": 3, "padding": 1},
                          {"type": "tanh"},
                          {"type": "conv2d_bug_cnn", "out_channels": 3, "kernel": [3, 2], "stride": [3, 2]},
                          {"type": "flatten"},
                          {"type": "linear", "out_features": 4}]}
        res = run_case(from_dict(doc, "<test>"), sample=30)
    finally:
        registry.LAYERS.pop("conv2d_bug_cnn", None)
    failed = {(r.layer, r.tensor) for r in res.rows if not r.passed}
    assert not res.passed
    assert max(layer for layer, _ in failed) == 2
    assert {(2, "x"), (2, "W")} <= failed and (2, "b") not in failed
    assert all(r.passed for r in res.rows if r.layer > 2)


# ------------------------------------------------------------------------------------------
# independent autodiff: skipped when torch is not installed (CI has no torch)
# ------------------------------------------------------------------------------------------
def _compare_module():
    spec = importlib.util.spec_from_file_location("compare_autodiff", ROOT / "benchmarks" / "compare_autodiff.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", CNN_CASES)
def test_saved_analytic_gradients_equal_torch_autograd(tmp_path, name):
    pytest.importorskip("torch")
    res = CliRunner().invoke(main, ["run", str(case_file(name)), "--save-arrays", str(tmp_path)])
    assert res.exit_code == 0, res.output
    rows = _compare_module().compare(case_file(name), tmp_path / f"{name}.npz")
    assert len(rows) == sum(1 for r in run_case(load(case_file(name))).rows)
    worst = max(rows, key=lambda r: r["rel_diff"])
    assert worst["rel_diff"] < 1e-10, worst


def test_torch_comparison_sees_a_wrong_array(tmp_path):
    pytest.importorskip("torch")
    name = "conv-stride-seed002"
    CliRunner().invoke(main, ["run", str(case_file(name)), "--save-arrays", str(tmp_path)])
    p = tmp_path / f"{name}.npz"
    with np.load(p) as z:
        arrays = dict(z)
    arrays["layer0.W.spray.analytic"] = arrays["layer0.W.spray.analytic"] * (1 + 1e-6)
    np.savez(p, **arrays)
    rows = {r["array"]: r for r in _compare_module().compare(case_file(name), p)}
    assert rows["layer0.W.spray.analytic"]["rel_diff"] > 1e-7
    assert rows["layer0.W.kron.analytic"]["rel_diff"] < 1e-10
