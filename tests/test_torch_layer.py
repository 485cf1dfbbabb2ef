"""``type: torch``: nn.Modules with custom autograd.Functions checked from YAML and from pytest.

The modules are examples/torch/my_modules.py (right) and my_modules_buggy.py (LayerNorm's dx and
Conv3x3's weight gradient wrong). Skipped without torch (the optional extra).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install 'gradcheck-cli[torch]'")

from gradcheck_cli import check_case  # noqa: E402
from gradcheck_cli.cli import main  # noqa: E402

EX = Path(__file__).resolve().parents[1] / "examples" / "torch"


def run(*args) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["run", *map(str, args)])
    return res.exit_code, res.output


def failing(path) -> set[tuple[int, str]]:
    res = CliRunner().invoke(main, ["run", str(path), "--format", "json"])
    report = json.loads(res.output)["cases"][0]
    return {(c["layer"], c["tensor"]) for c in report["checks"] if not c["passed"]}


@pytest.mark.parametrize("name", ["layernorm", "cnn"])
def test_right_module_passes(name):
    code, out = run(EX / f"{name}.yaml")
    assert code == 0, out


@pytest.mark.parametrize("name, culprit", [("layernorm", (0, "x")), ("cnn", (0, "weight"))])
def test_wrong_backward_fails_exactly_its_tensor(name, culprit):
    code, out = run(EX / f"{name}-buggy.yaml")
    assert code == 1, out
    assert failing(EX / f"{name}-buggy.yaml") == {culprit}


def _doc(**layer) -> dict:
    return {"seed": 4, "input": [3, 5], "layers": [{"type": "torch", **layer}]}


def test_analytic_side_equals_plain_autograd():
    """Oracle: the x and weight gradients gradcheck reports equal torch.func.vjp of a LayerNorm
    written without a custom Function, at the same values, against the same projection."""
    r = check_case(_doc(impl=str(EX / "my_modules.py") + ":LayerNorm", options={"features": 5}, init="random"))
    x = torch.tensor(r.arrays["input"])
    w, b = torch.tensor(r.arrays["layer0.weight"]), torch.tensor(r.arrays["layer0.bias"])
    ln = lambda x, w, b: torch.nn.functional.layer_norm(x, (5,), w, b, eps=1e-5)  # noqa: E731
    _, vjp = torch.func.vjp(ln, x, w, b)
    gx, gw, gb = vjp(torch.tensor(r.arrays["projection"]))
    np.testing.assert_allclose(r.arrays["layer0.x.custom.analytic"], gx.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(r.arrays["layer0.weight.custom.analytic"], gw.numpy(), rtol=1e-12, atol=1e-13)


def test_values_are_the_seeded_constructors_and_params_replace_them(tmp_path):
    doc = _doc(impl="torch.nn:Linear", options={"in_features": 5, "out_features": 2}, per_sample=True)
    a, b = check_case(doc), check_case(doc)
    assert np.array_equal(a.arrays["layer0.weight"], b.arrays["layer0.weight"])
    assert np.abs(a.arrays["layer0.weight"]).max() <= 1 / np.sqrt(5)     # Linear's own uniform init
    assert not np.array_equal(a.arrays["layer0.weight"], check_case({**doc, "seed": 5}).arrays["layer0.weight"])
    w = np.arange(10.0).reshape(2, 5)
    np.save(tmp_path / "w.npy", w)
    doc["layers"][0]["params"] = {"weight": "w.npy"}
    r = check_case(doc, base_dir=tmp_path)
    assert r.passed and np.array_equal(r.arrays["layer0.weight"], w)


def test_constant_parameters_are_noted_unless_redrawn():
    impl = str(EX / "my_modules.py") + ":LayerNorm"
    notes = {row.tensor: row.note for row in check_case(_doc(impl=impl, options={"features": 5})).rows}
    assert "weight is constant (1 everywhere" in notes["weight"] and "bias is constant (0" in notes["bias"]
    assert notes["x"] == ""
    r = check_case(_doc(impl=impl, options={"features": 5}, init="random"))
    assert all(row.note == "" for row in r.rows) and np.ptp(r.arrays["layer0.weight"]) > 0


def test_nested_parameter_names_and_dropout_repeatable(tmp_path):
    (tmp_path / "seq.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(torch.nn.Linear(5, 4), torch.nn.Dropout(0.5), torch.nn.Tanh(), torch.nn.Linear(4, 2))\n")
    r = check_case(_doc(impl="seq.py:Net"), base_dir=tmp_path)
    assert [row.tensor for row in r.rows] == ["x", "0.weight", "0.bias", "3.weight", "3.bias"]
    assert r.passed


def test_float32_case_passes():
    r = check_case({**_doc(impl=str(EX / "my_modules.py") + ":LayerNorm", options={"features": 5}, init="random"),
                    "dtype": "float32"})
    assert r.passed, [(row.tensor, row.max_rel_error) for row in r.rows]


@pytest.mark.parametrize("src, impl, msg", [
    ("class NotAModule:\n    pass\n", "m.py:NotAModule", "NotAModule is not a torch.nn.Module"),
    ("import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        return x.numpy()\n",
     "m.py:M", "forward returned ndarray, expected a torch.Tensor"),
    ("import torch\nclass M(torch.nn.Module):\n    def __init__(self, k):\n        super().__init__()\n",
     "m.py:M", "the constructor raised TypeError"),
    ("", "nope.py:M", "impl file not found"),
])
def test_bad_modules_exit_2_with_one_line(tmp_path, src, impl, msg):
    (tmp_path / "m.py").write_text(src)
    case = tmp_path / "case.yaml"
    case.write_text(yaml.safe_dump(_doc(impl=impl)))
    code, out = run(case)
    assert code == 2, out
    assert out.startswith(f"error: {case}: layers[0] (torch {impl}): ") and msg in out.splitlines()[0], out


def test_assert_module_gradients():
    import gradcheck_cli.torch as gt

    sys.path.insert(0, str(EX))
    try:
        import my_modules
        import my_modules_buggy
    finally:
        sys.path.remove(str(EX))
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    module = my_modules.LayerNorm(6)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    assert gt.assert_module_gradients(module, x).passed
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())   # not changed
    with pytest.raises(AssertionError, match=r"gradients disagree[\s\S]*layers\[0\]\.x"):
        gt.assert_module_gradients(my_modules_buggy.LayerNorm(6), x, init="random")
    r = gt.check_module(my_modules_buggy.Conv3x3(3, 2), torch.randn(2, 3, 5, 5))
    assert not r.passed and r.culprits == [(0, "weight")]



def test_readme_output_block_is_what_the_cli_prints(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.chdir(EX.parents[1])
    page = (EX.parents[1] / "docs" / "torch.md").read_text()      # moved there from the README
    marker = "<!-- output: gradcheck run examples/torch/cnn-buggy.yaml -->"
    block = page.split(marker, 1)[1].split("```", 2)[1]
    code, out = run("examples/torch/cnn-buggy.yaml")
    printed = set(out.splitlines())
    shown = [line for line in block.splitlines() if line.strip()]
    assert code == 1 and "wrong: layers[0].weight" in block
    assert shown and all(line in printed for line in shown), [s for s in shown if s not in printed]


def test_a_module_returning_a_tuple_has_every_floating_output_checked(tmp_path):
    """nn.LSTM returns (output, (h_n, c_n)): output is passed on, h_n and c_n get rows of their own;
    MaxPool1d's indices are integers, not checked."""
    r = check_case({"seed": 4, "input": [2, 3, 4], "layers": [
        {"type": "torch", "impl": "torch.nn:LSTM",
         "options": {"input_size": 4, "hidden_size": 3, "batch_first": True}}]})
    assert r.passed
    forms = {(row.tensor, row.form) for row in r.rows}
    assert {("x", "custom"), ("x", "custom:out1"), ("x", "custom:out2"), ("weight_hh_l0", "custom:out2")} <= forms
    code, out = run_doc(tmp_path, {"seed": 4, "input": [2, 3, 4], "layers": [
        {"type": "torch", "impl": "torch.nn:MaxPool1d",
         "options": {"kernel_size": 2, "return_indices": True}}]})
    assert code == 0, out
    assert ":out1" not in out


def test_an_uninitialised_lazy_module_gets_one_line(tmp_path):
    code, out = run_doc(tmp_path, {"seed": 4, "input": [3, 5], "layers": [
        {"type": "torch", "impl": "torch.nn:LazyLinear", "options": {"out_features": 2}}]})
    assert code == 2, out
    assert len(out.strip().splitlines()) == 1 and "run it once" in out, out


def run_doc(tmp_path, doc) -> tuple[int, str]:
    case = tmp_path / "case.yaml"
    case.write_text(yaml.safe_dump(doc))
    return run(case)
