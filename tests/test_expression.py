"""`type: expression` layers (gradcheck_cli/layers/expression.py, gradcheck_cli/exprlang): the
issue's linear example, its two broken variants, forms, composition with built-in layers in
both modes, kinks, float32, the memory limit, the language's functions, and examples/seeds."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from scipy import signal

from gradcheck_cli.cli import main
from gradcheck_cli.exprlang import A, Expr, ExprError
from gradcheck_cli.layers.conv_ops import dilate as conv_dilate

ROOT = Path(__file__).resolve().parents[1]
SEEDS = sorted((ROOT / "examples" / "seeds").glob("*.yaml"))


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def starter() -> str:
    res = invoke("new", "expression")
    assert res.exit_code == 0, res.output
    return res.output


def write(tmp_path, text: str, name: str = "case.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def run_json(path, *args) -> tuple[int, dict]:
    res = invoke("run", path, "--format", "json", *args)
    assert res.exit_code in (0, 1), res.output + res.stderr
    return res.exit_code, json.loads(res.output)["cases"][0]


def failing(case: dict) -> set[tuple[int, str, str]]:
    return {(r["layer"], r["tensor"], r["form"]) for r in case["checks"] if not r["passed"]}


# -- the "Done when" -----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["local", "network"])
def test_linear_example_passes_with_both_derivations(tmp_path, mode):
    code, case = run_json(write(tmp_path, starter()), "--mode", mode)
    assert code == 0 and case["passed"]
    forms = {r["form"] for r in case["checks"] if r["layer"] == 0}
    assert forms == {"correlation", "kron"}
    agree = {a["tensor"]: a for a in case["form_agreement"]}
    assert set(agree) == {"x", "W", "b"}
    assert all(a["max_rel_diff"] <= 1e-15 for a in agree.values()), agree


def test_transposed_weight_gradient_is_a_shape_error(tmp_path):
    path = write(tmp_path, starter().replace("W: x.T @ dy,", "W: dy.T @ x,"))
    for command in ("run", "validate"):
        res = invoke(command, path)
        assert res.exit_code == 2
        lines = res.stderr.splitlines()
        assert lines[0] == (f"error: {path}: layers[0].backward.correlation.W, column 1: "
                            "gives shape (3, 6), but W has shape (6, 3)")
        assert lines[1:] == ["    dy.T @ x", "    ^"]
        assert "Traceback" not in res.output


@pytest.mark.parametrize("mode", ["local", "network"])
def test_scaled_weight_gradient_fails_in_its_form_only(tmp_path, mode):
    path = write(tmp_path, starter().replace("W: x.T @ dy,", "W: x.T @ dy / N,"))
    code, case = run_json(path, "--mode", mode)
    assert code == 1
    assert case["culprits"] == [{"layer": 0, "tensor": "W"}]
    assert failing(case) == {(0, "W", "correlation")}


def test_define_names_sub_expressions_in_order(tmp_path):
    text = starter().replace("    forward: x @ W + b", "    define: {S: x @ W, T: sum(S, 1)}\n    forward: S + b")
    code, case = run_json(write(tmp_path, text))
    assert code == 0
    bad = write(tmp_path, starter().replace("    forward: x @ W + b", "    define: {T: S, S: x}\n    forward: x @ W + b"),
                "bad.yaml")
    assert "layers[0].define.T, column 1: unknown name `S`" in invoke("validate", bad).stderr


def test_forms_key_selects_derivations(tmp_path):
    text = starter().replace("loss: projection", "loss: projection\nforms: [kron]")
    code, case = run_json(write(tmp_path, text))
    assert code == 0 and {r["form"] for r in case["checks"]} == {"kron"}
    bad = invoke("run", write(tmp_path, starter() + "forms: [kronn]\n", "bad.yaml"))
    assert bad.exit_code == 2
    assert "forms[0]: unknown value 'kronn'; one of: kron, correlation, spray, custom (did you mean `kron`?)" \
        in bad.stderr


def test_named_forms_are_selectable(tmp_path):
    text = starter().replace("correlation: {", "paper: {").replace("      kron:", "      exact:")
    text = text.replace("loss: projection", "loss: projection\nforms: [exact]")
    code, case = run_json(write(tmp_path, text))
    assert code == 0 and {r["form"] for r in case["checks"]} == {"exact"}


def test_form_option_takes_named_derivations(tmp_path):
    path = write(tmp_path, starter().replace("      kron:", "      exact:"))
    code, case = run_json(path, "--form", "exact")
    assert code == 0 and {r["form"] for r in case["checks"]} == {"exact"}
    res = invoke("run", path, "--form", "exakt")
    assert res.exit_code == 2
    assert "unknown form 'exakt'; one of: kron, correlation, spray, custom, exact" in res.output


NETWORK = """
input: [5, 4]
seed: 3
layers:
  - {type: linear, out_features: 6}
  - type: expression
    axes: [N, C]
    forward: maximum(x, 0)
    kinks: x
    per_sample: true
    backward:
      correlation: {x: dy * step(x)}
      kron: {x: "mat(diag(vec(step(x))) @ vec(dy), N, C)"}
  - {type: linear, out_features: 3}
loss: cross_entropy
"""


@pytest.mark.parametrize("mode", ["local", "network"])
def test_composes_with_built_in_layers(tmp_path, mode):
    code, case = run_json(write(tmp_path, NETWORK), "--mode", mode)
    assert code == 0 and case["passed"]
    assert {(r["layer"], r["form"]) for r in case["checks"] if r["layer"] == 1} == \
        {(1, "correlation"), (1, "kron")}
    assert {r["form"] for r in case["checks"] if r["layer"] == 0} >= {"correlation", "kron", "spray"}


def test_wrong_expression_between_built_in_layers_is_named(tmp_path):
    code, case = run_json(write(tmp_path, NETWORK.replace("{x: dy * step(x)}", "{x: dy * step(-x)}")))
    assert code == 1
    assert case["culprits"] == [{"layer": 1, "tensor": "x"}]
    assert failing(case) == {(1, "x", "correlation")}


def test_kinks_feed_the_kink_rule(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 4))
    x[0, 1] = x[2, 3] = 0.0                       # exactly on ReLU's kink
    np.save(tmp_path / "x.npy", x)
    text = """
input: {data: x.npy}
layers:
  - type: expression
    axes: [N, D]
    forward: maximum(x, 0)
    kinks: x
    backward: {mask: {x: dy * step(x)}}
"""
    code, case = run_json(write(tmp_path, text))
    assert code == 0
    row = next(r for r in case["checks"] if r["layer"] == 0)
    assert row["kinks"] == 2
    assert case["kink_distance"]["layers"][0]["at_kink"] == 2


def test_false_per_sample_promise_is_refused(tmp_path):
    text = starter().replace("forward: x @ W + b", "forward: (x - mean(x, 0)) @ W + b\n    per_sample: true")
    res = invoke("run", write(tmp_path, text))
    assert res.exit_code == 2
    assert "layers[0].per_sample: is true, but the output is not one row per sample" in res.stderr


def test_float32_case_passes(tmp_path):
    code, case = run_json(write(tmp_path, starter().replace("dtype: float64", "dtype: float32")))
    assert code == 0 and case["dtype"] == "float32"


def test_max_memory_refuses_an_intermediate_before_it_is_made(tmp_path):
    text = starter().replace("forward: x @ W + b", "forward: x @ W + b + 0 * sum(ones(6000, 6000))")
    path = write(tmp_path, text)
    res = invoke("run", path, "--max-memory", "200MB")
    assert res.exit_code == 2
    line = res.stderr.splitlines()[0]
    assert "layers[0].forward, column 21: ones(...) would have shape (6000, 6000)" in line
    assert "over the memory limit (--max-memory) of 190.7 MiB" in line


def test_list_and_new():
    out = invoke("list").output
    assert "expression: equations as written" in out
    assert "option backward (required)" in out
    assert starter().startswith("# gradcheck case: a layer typed as equations")


@pytest.mark.parametrize("text,field,says", [
    ("x @ W + bb", "forward", "column 9: unknown name `bb` (did you mean `b`?)"),
    ("x @ W +", "forward", "column 8: syntax error"),
    ("x @ W.T + b", "forward", "column 3: shapes (4, 6) and (3, 6) do not match for @ (6 != 3)"),
    ("mat(x, 5, 5) @ W + b", "forward", "column 5: mat: mat(v, 5, 5) needs 25 entries"),
])
def test_errors_name_file_layer_field_and_column(tmp_path, text, field, says):
    path = write(tmp_path, starter().replace("forward: x @ W + b", f"forward: {text}"))
    res = invoke("validate", path)
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert lines[0].startswith(f"error: {path}: layers[0].{field}, ") and says in lines[0], lines[0]
    col = int(re.search(r"column (\d+)", lines[0]).group(1))
    assert lines[2].index("^") - 4 == col - 1


def test_missing_and_unknown_gradients_are_named(tmp_path):
    res = invoke("validate", write(tmp_path, starter().replace(", b: sum(dy, 0)}", "}")))
    assert "layers[0].backward.correlation: gives no `b`" in res.stderr
    res = invoke("validate", write(tmp_path, starter().replace("b: sum(dy, 0)}", "b: sum(dy, 0), c: x}")))
    assert "layers[0].backward.correlation.c: not a tensor of this layer" in res.stderr


# -- the language ----------------------------------------------------------------------------
RNG = np.random.default_rng(7)
ENV = {"a": RNG.standard_normal((3, 4)), "v": RNG.standard_normal(12), "k": RNG.standard_normal((2, 2)),
       "s": RNG.standard_normal(9), "w": RNG.standard_normal(3), "N": 3, "D": 4}


def value(text):
    return Expr(text).value(dict(ENV))


def test_vec_and_mat_are_column_major_as_seed_001():
    a = ENV["a"]
    assert np.array_equal(value("vec(a)"), a.T.reshape(-1))
    assert np.array_equal(value("mat(vec(a), N, D)"), a)
    assert np.array_equal(value("vec(kron(I(2), a))"), np.kron(np.eye(2), a).reshape(-1, order="F"))


@pytest.mark.parametrize("mode", ["full", "valid", "same"])
def test_correlate_and_convolve_are_scipy_signal(mode):
    for name in ("correlate", "convolve"):
        assert np.allclose(value(f"{name}(s, w, '{mode}')"), getattr(signal, name)(ENV["s"], ENV["w"], mode=mode))
        assert np.allclose(value(f"{name}(a, k, '{mode}')"), getattr(signal, name)(ENV["a"], ENV["k"], mode=mode))


def test_dilate_step_sigmoid_flip_pad():
    assert np.array_equal(value("dilate(a, (2, 3), (0, 1))"), conv_dilate(ENV["a"], (2, 3)))
    assert np.array_equal(value("step(a)"), (ENV["a"] > 0).astype(float))
    assert np.allclose(value("sigmoid(a)"), 1 / (1 + np.exp(-ENV["a"])))
    assert np.array_equal(value("flip(k)"), ENV["k"][::-1, ::-1])
    assert np.array_equal(value("pad(a, [[1, 0], 2])"), np.pad(ENV["a"], ((1, 0), (2, 2))))


SHAPED = ["a @ a.T", "kron(a, k)", "outer(a, w)", "einsum('ij,kj->ik', a, a)", "inv(k) @ k", "pinv(a)",
          "solve(k, k)", "reshape(a, -1, 2)", "transpose(reshape(a, 2, 3, 2), (1, 2, 0))", "diag(w)",
          "diag(a)", "sum(a, (0, 1))", "mean(a, 1)", "max(a, 0)", "std(a)", "argmax(a, 1)", "a[1:, ::2]",
          "a[None, 0]", "where(a > 0, a, 0)", "maximum(a, w[0])", "dilate(s, 3)", "correlate(a, k, 'valid')",
          "ones(N, 1) * 2", "zeros((N, D)) + a", "P_phi(2, 4, 5, 2, 1)", "P_pad(2, 4, 5, 1)", "arange(D) % 2",
          "a // 2", "trace(k)", "abs(sign(a)) * exp(a) * tanh(a)", "sqrt(abs(a)) + log(1 + a ** 2)"]


@pytest.mark.parametrize("text", SHAPED)
def test_shape_pass_predicts_the_value_shape(text):
    shapes = {k: A(v.shape) if isinstance(v, np.ndarray) else v for k, v in ENV.items()}
    assert Expr(text).shape(shapes) == np.shape(value(text))


def test_p_phi_p_pad_follow_the_vec_form_note():
    d, a, b, h, s, p = 2, 4, 5, 2, 1, 1
    Z = RNG.standard_normal((d, a, b))
    env = {"Z": Z, "d": d, "a": a, "b": b}
    padded = Expr("P_pad(d, a, b, 1) @ vec(Z)").value(env)
    Zp = np.pad(Z, ((0, 0), (p, p), (p, p)))
    assert np.array_equal(padded, Zp.reshape(-1, order="F"))
    phi = Expr("mat(P_phi(d, a + 2, b + 2, 2, 1) @ P_pad(d, a, b, 1) @ vec(Z), 8, 30)").value(env)
    ac = a + 2 * p - h + 1
    for (i, j, c, P, Q) in [(0, 0, 0, 0, 0), (1, 0, 1, 2, 3), (1, 1, 0, 3, 5)]:
        assert phi[i + j * h + c * h * h, P + Q * ac] == Zp[c, P * s + i, Q * s + j]


def test_nan_is_located_where_it_starts():
    with pytest.raises(ExprError) as e:
        Expr("exp(a) + log(a - 10) * 2").value(dict(ENV))
    assert "NaN or Inf" in e.value.message and e.value.col == 9
    assert np.all(np.isfinite(value("where(a > 0, log(abs(a)), 0)")))     # masked away: fine


# -- examples/seeds ---------------------------------------------------------------------------
def expectation(path: Path) -> set[tuple[int, str, str]] | None:
    """``# expect: pass`` -> empty set; ``# expect: fail layers[0].W eq7, ...`` -> those rows."""
    line = next(ln for ln in path.read_text().splitlines() if ln.startswith("# expect:"))
    what = line.split(":", 1)[1].strip()
    if what == "pass":
        return set()
    assert what.startswith("fail ")
    rows = set()
    for item in what[5:].split(","):
        m = re.fullmatch(r"\s*layers\[(\d+)\]\.(\w+) (\w+)\s*", item)
        assert m, f"{path.name}: cannot read {item!r}"
        rows.add((int(m.group(1)), m.group(2), m.group(3)))
    return rows


def test_every_seed_has_a_case():
    assert {p.name[:3] for p in SEEDS} >= {"000", "001", "002", "003", "004"}


@pytest.mark.parametrize("path", SEEDS, ids=[p.stem for p in SEEDS])
def test_seed_case_behaves_as_its_comment_says(path):
    text = path.read_text()
    assert re.search(r"^# Seed \d{3} ", text, re.M) and re.search(r"[Ee]qs?\. ?\(?\d|section \d|[AB]\) ", text)
    want = expectation(path)
    code, case = run_json(path)
    assert code == (1 if want else 0)
    assert failing(case) == want
    assert {(c["layer"], c["tensor"]) for c in case["culprits"]} == {(i, t) for i, t, _ in want}


def test_seed_cases_are_valid_yaml_with_expression_layers():
    for path in SEEDS:
        doc = yaml.safe_load(path.read_text())
        assert any(layer["type"] == "expression" for layer in doc["layers"])
