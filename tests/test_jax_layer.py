"""``type: jax``: a jax.custom_vjp LayerNorm checked from YAML and from pytest.

examples/jax/my_layers.py (right) and my_layers_buggy.py (the rule's dx forgets the mean).
Skipped without jax (the optional extra).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

jax = pytest.importorskip("jax", reason="jax is an optional extra: pip install 'gradcheck-cli[jax]'")

from gradcheck_cli import check_case  # noqa: E402
from gradcheck_cli.cli import main  # noqa: E402

EX = Path(__file__).resolve().parents[1] / "examples" / "jax"


def test_right_rule_passes():
    res = CliRunner().invoke(main, ["run", str(EX / "layernorm.yaml")])
    assert res.exit_code == 0, res.output


def test_wrong_rule_fails_exactly_x():
    res = CliRunner().invoke(main, ["run", str(EX / "layernorm-buggy.yaml"), "--format", "json"])
    assert res.exit_code == 1
    checks = json.loads(res.output)["cases"][0]["checks"]
    assert {(c["layer"], c["tensor"]) for c in checks if not c["passed"]} == {(0, "x")}


def test_analytic_side_equals_jax_grad_without_the_rule():
    """Oracle: the same LayerNorm written without custom_vjp, differentiated by jax itself."""
    import jax.numpy as jnp

    r = check_case({"seed": 1, "input": [3, 5], "layers": [{"type": "jax", "impl": str(EX / "my_layers.py") + ":LayerNorm"}]})
    x, g, b, R = (jnp.asarray(r.arrays[k]) for k in ("input", "layer0.gamma", "layer0.beta", "projection"))

    def plain(x, g, b):
        xhat = (x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True) + 1e-5)
        return jnp.sum(R * (g * xhat + b))

    gx, gg, _ = jax.grad(plain, argnums=(0, 1, 2))(x, g, b)
    np.testing.assert_allclose(r.arrays["layer0.x.custom.analytic"], gx, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(r.arrays["layer0.gamma.custom.analytic"], gg, rtol=1e-12, atol=1e-13)


def test_jax_layer_between_builtin_layers_in_float32():
    doc = {"seed": 0, "dtype": "float32", "input": [4, 6],
           "layers": [{"type": "linear", "out_features": 5},
                      {"type": "jax", "impl": str(EX / "my_layers.py") + ":LayerNorm"},
                      {"type": "relu"}, {"type": "linear", "out_features": 3}], "loss": "cross_entropy"}
    r = check_case(doc)
    assert r.passed, [(row.layer, row.tensor, row.max_rel_error) for row in r.rows if not row.passed]


@pytest.mark.parametrize("src, msg", [
    ("class L:\n    def init_params(self, s, rng):\n        return {}\n", "has no method `forward`"),
    ("import numpy as np\nclass L:\n    def init_params(self, s, rng):\n        return {}\n"
     "    def forward(self, x, p):\n        return np.asarray(x) * 2\n", "forward raised"),
])
def test_bad_layers_exit_2_with_one_line(tmp_path, src, msg):
    (tmp_path / "m.py").write_text(src)
    case = tmp_path / "case.yaml"
    case.write_text(yaml.safe_dump({"input": [2, 3], "layers": [{"type": "jax", "impl": "m.py:L"}]}))
    res = CliRunner().invoke(main, ["run", str(case)])
    assert res.exit_code == 2
    assert res.output.startswith(f"error: {case}: layers[0] (jax m.py:L): ") and msg in res.output.splitlines()[0], res.output


def test_assert_function_gradients():
    import importlib.util

    import gradcheck_cli.jax as gj

    mods = {}
    for name in ("my_layers", "my_layers_buggy"):
        spec = importlib.util.spec_from_file_location(f"jax_ex_{name}", EX / f"{name}.py")
        mods[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mods[name])
    rng = np.random.default_rng(0)
    x, params = rng.standard_normal((4, 6)), {"g": rng.standard_normal(6), "b": rng.standard_normal(6)}
    right = lambda x, p: mods["my_layers"].layer_norm(x, p["g"], p["b"])  # noqa: E731
    wrong = lambda x, p: mods["my_layers_buggy"].layer_norm(x, p["g"], p["b"])  # noqa: E731
    assert gj.assert_function_gradients(right, x, params, per_sample=True).passed
    with pytest.raises(AssertionError, match=r"gradients disagree[\s\S]*layers\[0\]\.x"):
        gj.assert_function_gradients(wrong, x, params)
    assert gj.check_function(wrong, x, params).culprits == [(0, "x")]
