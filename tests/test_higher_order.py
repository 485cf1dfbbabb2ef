"""``modes: [rev, fwd]``, ``order: 2`` and tuple outputs on ``type: torch`` / ``type: jax`` layers.

The layers are examples/torch/higher.py and examples/jax/higher.py: one right, and one wrong in
exactly one of the checks (the jvp, the double backward, the second output), each failing in its
own rows only. Skipped without torch or jax (optional extras).
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gradcheck_cli import check_case
from gradcheck_cli.cli import main

EX = Path(__file__).resolve().parents[1] / "examples"
TORCH_REASON = "torch is an optional extra: pip install 'gradcheck-cli[torch]'"
JAX_REASON = "jax is an optional extra: pip install 'gradcheck-cli[jax]'"


def _torch(cls: str, **layer) -> dict:
    pytest.importorskip("torch", reason=TORCH_REASON)
    return {"seed": 4, "input": [3, 4], "layers": [
        {"type": "torch", "impl": f"{EX}/torch/higher.py:{cls}", "options": {"features": 4}, **layer}]}


def _jax(cls: str, **layer) -> dict:
    pytest.importorskip("jax", reason=JAX_REASON)
    return {"seed": 4, "input": [3, 4], "layers": [{"type": "jax", "impl": f"{EX}/jax/higher.py:{cls}", **layer}]}


def failing(result) -> set[tuple[str, str]]:
    return {(r.tensor, r.form) for r in result.rows if not r.passed}


def rows(result) -> set[tuple[str, str]]:
    return {(r.tensor, r.form) for r in result.rows}


ALL = {"modes": ["rev", "fwd"], "order": 2}
FIRST = {(t, f) for t in ("x", "weight") for f in ("custom", "fwd")}
SECOND = {("x", "gradgrad"), ("weight", "gradgrad"), ("dy", "gradgrad")}


def test_right_torch_rules_pass_in_every_mode_and_order():
    r = check_case(_torch("Swish", **ALL))
    assert r.passed and rows(r) == FIRST | SECOND


@pytest.mark.parametrize("cls, wrong", [
    ("SwishBadJvp", {("x", "fwd"), ("weight", "fwd")}),                # the jvp staticmethod
    ("SwishDetached", {("x", "gradgrad"), ("weight", "gradgrad")}),    # the backward's backward
])
def test_a_wrong_torch_rule_fails_in_its_own_rows_only(cls, wrong):
    r = check_case(_torch(cls, **ALL))
    assert rows(r) == FIRST | SECOND and failing(r) == wrong


def test_default_is_reverse_mode_at_order_one():
    """Without the fields, the wrong jvp and the wrong double backward are not looked at."""
    for cls in ("SwishBadJvp", "SwishDetached"):
        r = check_case(_torch(cls))
        assert r.passed and rows(r) == {("x", "custom"), ("weight", "custom")}


def test_forms_fwd_checks_the_forward_mode_only():
    r = check_case(_torch("SwishBadJvp", modes=["rev", "fwd"]), forms=("fwd",))
    assert rows(r) == {("x", "fwd"), ("weight", "fwd")} and failing(r) == rows(r)


def test_jax_rules():
    """A right custom_jvp passes everywhere; a wrong one fails in fwd and, since jax derives reverse
    mode from the jvp rule, in rev too; a custom_vjp whose bwd stops its residual's gradient is
    right at order 1 and wrong at order 2."""
    ok = check_case(_jax("Swish", **ALL))
    jvp_rows = {(t, f) for t in ("x", "w") for f in ("custom", "fwd")}
    assert ok.passed and rows(ok) == jvp_rows | {("x", "gradgrad"), ("w", "gradgrad"), ("dy", "gradgrad")}
    assert failing(check_case(_jax("SwishBadJvp", **ALL))) == jvp_rows
    assert failing(check_case(_jax("SinDetached", order=2))) == {("x", "gradgrad"), ("w", "gradgrad")}


def test_a_wrong_gradient_through_the_second_output_fails_and_is_named():
    r = check_case(_torch("TwoHeads"))
    assert failing(r) == {("x", "custom:out1"), ("weight", "custom:out1")}
    assert rows(r) == {("x", "custom"), ("weight", "custom"), ("x", "custom:out1"), ("weight", "custom:out1")}
    assert r.culprits == [(0, "x"), (0, "weight")]
    passed_on = check_case(_torch("TwoHeads", output=1))     # the wrong head passed on instead
    assert failing(passed_on) == {("x", "custom"), ("weight", "custom")}


def test_torch_rnn_gru_and_pool_with_indices_pass_every_output():
    pytest.importorskip("torch", reason=TORCH_REASON)
    for impl, opts, outs, shape in [("RNN", {"input_size": 4, "hidden_size": 3}, 1, [2, 3, 4]),
                                    ("GRU", {"input_size": 4, "hidden_size": 2, "batch_first": True}, 1, [2, 3, 4]),
                                    ("MaxPool2d", {"kernel_size": 2, "return_indices": True}, 0, [2, 2, 4, 4])]:
        r = check_case({"seed": 2, "input": shape, "layers": [
            {"type": "torch", "impl": f"torch.nn:{impl}", "options": opts}]})
        assert r.passed, impl
        assert len({row.form for row in r.rows}) == 1 + outs, (impl, rows(r))
    r = check_case({"seed": 2, "input": [2, 3, 4], "layers": [
        {"type": "torch", "impl": "torch.nn:RNN", "options": {"input_size": 4, "hidden_size": 3}, "order": 2}]})
    assert r.passed and {("dy", "gradgrad"), ("dy1", "gradgrad"), ("weight_hh_l0", "gradgrad")} <= rows(r)


def _run(tmp_path, doc, *args):
    case = tmp_path / "case.yaml"
    case.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(main, ["run", str(case), *map(str, args)])
    return res.exit_code, res.output


def test_every_output_has_the_rows(tmp_path):
    code, out = _run(tmp_path, _torch("SwishDetached", **ALL), "--format", "json", "--junit-xml",
                     tmp_path / "j.xml", "--html", tmp_path / "r.html")
    assert code == 1
    checks = json.loads(out)["cases"][0]["checks"]
    assert {(c["tensor"], c["form"]) for c in checks if not c["passed"]} == {("x", "gradgrad"), ("weight", "gradgrad")}
    names = {t.get("name") for t in ET.parse(tmp_path / "j.xml").iter("testcase")}
    assert {"layers[0].x[fwd]", "layers[0].x[gradgrad]", "layers[0].dy[gradgrad]"} <= names
    assert "gradgrad" in (tmp_path / "r.html").read_text()
    code, out = _run(tmp_path, _torch("SwishDetached", **ALL))
    assert code == 1 and "layers[0].x      torch gradgrad" in out, out
    code, out = _run(tmp_path, _torch("SwishDetached", **ALL), "--format", "markdown")
    assert "| 0 | torch | dy | gradgrad |" in out, out


@pytest.mark.parametrize("layer, field, msg", [
    ({"order": 3}, "layers[0].order", "must be <= 2"),
    ({"modes": ["lin"]}, "layers[0].modes[0]", "unknown value 'lin'"),
    ({"modes": ["rev", "rev"]}, "layers[0].modes", "twice"),
    ({"output": -1}, "layers[0].output", ">= 0"),
])
def test_bad_values_exit_2_naming_file_and_field(tmp_path, layer, field, msg):
    code, out = _run(tmp_path, _torch("Swish", **layer))
    assert code == 2 and len(out.strip().splitlines()) == 1, out
    assert f"case.yaml: {field}" in out and msg in out, out


def test_the_fields_on_another_layer_exit_2(tmp_path):
    doc = {"input": [2, 3], "layers": [{"type": "linear", "out_features": 2, "order": 2}]}
    code, out = _run(tmp_path, doc)
    assert code == 2 and "case.yaml: layers[0].order: unknown field" in out, out
    code, out = _run(tmp_path, _torch("Swish", output=1))
    assert code == 2 and "`output: 1` names no floating tensor" in out, out


def test_the_examples():
    pytest.importorskip("torch", reason=TORCH_REASON)
    ok = check_case(EX / "torch" / "higher.yaml")
    assert ok.passed and {"custom", "fwd", "gradgrad", "custom:out1", "custom:out2"} <= {r.form for r in ok.rows}
    bad = check_case(EX / "torch" / "higher-buggy.yaml")
    assert {(r.layer, r.tensor, r.form) for r in bad.rows if not r.passed} == {
        (0, "x", "gradgrad"), (0, "weight", "gradgrad"), (1, "x", "custom:out1"), (1, "weight", "custom:out1")}


def test_the_pytest_helpers_take_the_fields():
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    import importlib.util

    spec = importlib.util.spec_from_file_location("examples_torch_higher", EX / "torch" / "higher.py")
    higher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(higher)
    from gradcheck_cli.torch import assert_module_gradients, check_module

    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = check_module(higher.SwishBadJvp(4), x, modes=("rev", "fwd"), order=2)
    assert failing(r) == {("x", "fwd"), ("weight", "fwd")} and ("dy", "gradgrad") in rows(r)
    with pytest.raises(AssertionError, match="gradgrad"):
        assert_module_gradients(higher.SwishDetached(4), x, order=2)
    assert failing(check_module(higher.TwoHeads(4), x, output=1)) == {("x", "custom"), ("weight", "custom")}


def test_the_jax_helper_takes_the_fields():
    jax = pytest.importorskip("jax", reason=JAX_REASON)
    from gradcheck_cli.jax import check_function

    x = jax.numpy.linspace(-1.0, 1.0, 6).reshape(2, 3)
    r = check_function(lambda x, p: jax.numpy.sin(x * p["w"]), x, {"w": [0.5, 1.0, 2.0]},
                       modes=("rev", "fwd"), order=2)
    assert r.passed and {("w", "fwd"), ("dy", "gradgrad")} <= rows(r)


def test_forward_mode_batched_by_vmap_equals_the_dual_number_loop(monkeypatch):
    """Modules that take torch.func transforms get their jvps vmapped, the others (an old-style
    autograd.Function) one forward_ad forward per entry: both give the same numbers, and a wrong
    jvp of a vmappable Function is caught on the batched path too."""
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    from gradcheck_cli.layers.torch_module import TorchModule
    from gradcheck_cli.torch import check_module

    class Cube(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(z):
            return z ** 3

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            return 3 * ctx.saved_tensors[0] ** 2 * g

        @staticmethod
        def jvp(ctx, t):
            return 2 * ctx.saved_tensors[0] ** 2 * t          # bug: 3 z^2

    class CubeLinear(torch.nn.Linear):
        def forward(self, x):
            return Cube.apply(super().forward(x))

    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    module = CubeLinear(4, 2)
    loops = []
    looped_jvps = TorchModule._jvps_looped
    monkeypatch.setattr(TorchModule, "_jvps_looped", lambda *a: loops.append(1) or looped_jvps(*a))
    batched = check_module(module, x, modes=("rev", "fwd"))
    assert not loops                        # every jvp went through torch.func.vmap
    monkeypatch.setattr(TorchModule, "_jvps_vmapped", lambda *a: None)
    looped = check_module(module, x, modes=("rev", "fwd"))
    assert loops and failing(batched) == failing(looped) == {("x", "fwd"), ("weight", "fwd"), ("bias", "fwd")}
    for key in ("layer0.x.fwd.analytic", "layer0.weight.fwd.analytic"):
        assert (batched.arrays[key] == looped.arrays[key]).all()
