"""CS231n-style function pairs and losses from YAML (``type: functions``, ``loss: {type: function}``).

tests/cs231n/layers.py holds the right functions, tests/cs231n/buggy.py one seeded bug per backward
(and per loss): each right one passes, each buggy one exits 1 with exactly the tensor its bug
touches failing. A loss's bug sits in dscores: the engine's local mode names the loss's own tensor
(``y`` of the loss, layer index len(layers)); network mode fails every tensor before it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from gradcheck_cli import check_case
from gradcheck_cli.cli import main

HERE = Path(__file__).parent / "cs231n"
CONV = {"conv_param": {"stride": 1, "pad": 1}}
POOL = {"pool_param": {"pool_height": 2, "pool_width": 2, "stride": 2}}

# name: (input shape, params, args, per_sample, the tensor the buggy backward gets wrong)
LAYERS = {
    "affine": ([4, 5], {"w": [5, 3], "b": [3]}, {}, True, "b"),
    "relu": ([4, 6], {}, {}, True, "x"),
    "conv": ([2, 3, 5, 5], {"w": [4, 3, 3, 3], "b": [4]}, CONV, True, "w"),
    "max_pool": ([2, 3, 4, 4], {}, POOL, True, "x"),
    "batchnorm": ([5, 4], {"gamma": [4], "beta": [4]}, {"bn_param": {"mode": "train"}}, False, "x"),
    "layernorm": ([4, 5], {"gamma": [5], "beta": [5]}, {"ln_param": {}}, True, "gamma"),
    "dropout": ([4, 6], {}, {"dropout_param": {"p": 0.6, "mode": "train", "seed": 0}}, False, "x"),
    "rnn_step": ([3, 4], {"prev_h": [3, 5], "Wx": [4, 5], "Wh": [5, 5], "b": [5]}, {}, False, "Wh"),
}
NAIVE = {"conv", "max_pool"}


def layer(name: str, file: str) -> dict:
    shape, params, args, per_sample, _ = LAYERS[name]
    suffix = "_naive" if name in NAIVE else ""
    entry = {"type": "functions", "forward": f"{file}:{name}_forward{suffix}",
             "backward": f"{file}:{name}_backward{suffix}", "per_sample": per_sample}
    if params:
        entry["params"] = params
    if args:
        entry["args"] = args
    return entry


def run(tmp_path: Path, doc: dict):
    case = tmp_path / "case.yaml"
    case.write_text(yaml.safe_dump(doc, sort_keys=False))   # params keep their order
    res = CliRunner().invoke(main, ["run", str(case), "--format", "json"])
    return res.exit_code, (json.loads(res.output) if res.exit_code in (0, 1) else res.output)


def failing(report: dict) -> set[tuple[int, str]]:
    return {(c["layer"], c["tensor"]) for c in report["cases"][0]["checks"] if not c["passed"]}


def case_of(name: str, file: str) -> dict:
    return {"seed": 2, "input": LAYERS[name][0], "layers": [layer(name, str(HERE / file))]}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_right_pair_passes(tmp_path, name):
    code, report = run(tmp_path, case_of(name, "layers.py"))
    assert code == 0, report


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_seeded_bug_fails_exactly_its_tensor(tmp_path, name):
    code, report = run(tmp_path, case_of(name, "buggy.py"))
    assert code == 1, report
    assert failing(report) == {(0, LAYERS[name][4])}


@pytest.mark.parametrize("loss", ["svm_loss", "softmax_loss"])
@pytest.mark.parametrize("file, code", [("layers.py", 0), ("buggy.py", 1)])
def test_loss_functions(tmp_path, loss, file, code):
    doc = case_of("affine", "layers.py")
    doc["loss"] = {"type": "function", "impl": str(HERE / file) + f":{loss}"}
    got, report = run(tmp_path, doc)
    assert got == code, report
    if code == 1:
        case = report["cases"][0]
        if case.get("mode") == "local":     # the loss is checked on its own: its tensor y is named
            assert case["culprits"] == [{"layer": 1, "tensor": "y"}], case["culprits"]
        else:                               # network mode: dscores reaches every tensor before it
            assert failing(report) == {(0, "x"), (0, "w"), (0, "b")}


def test_loss_function_matches_cross_entropy_with_mean(tmp_path):
    """An independent oracle: CS231n's softmax_loss is cross_entropy with reduction: mean."""
    labels = np.array([0, 2, 1, 2])
    np.save(tmp_path / "y.npy", labels)
    doc = case_of("affine", "layers.py")
    doc["loss"] = {"type": "function", "impl": str(HERE / "layers.py") + ":softmax_loss", "target": "y.npy"}
    ours = check_case(doc, base_dir=tmp_path)
    doc["loss"] = {"type": "cross_entropy", "target": "y.npy", "reduction": "mean"}
    ref = check_case(doc, base_dir=tmp_path)
    for key in ("layer0.w.custom.analytic", "layer0.w.custom.numerical", "layer0.x.custom.analytic"):
        np.testing.assert_allclose(ours.arrays[key], ref.arrays[key], rtol=1e-12, atol=1e-14)


def test_params_may_name_npy_files(tmp_path):
    w = np.random.default_rng(0).standard_normal((5, 3))
    np.save(tmp_path / "w.npy", w)
    doc = case_of("affine", "layers.py")
    doc["layers"][0]["params"] = {"w": "w.npy", "b": [3]}
    r = check_case(doc, base_dir=tmp_path)
    assert r.passed and np.array_equal(r.arrays["layer0.w"], w)


def test_args_are_copied_for_every_call(tmp_path):
    """batchnorm_forward writes its running mean into bn_param: the check must not see that."""
    doc = case_of("batchnorm", "layers.py")
    r1 = check_case(doc, base_dir=tmp_path)
    r2 = check_case(doc, base_dir=tmp_path)
    assert r1.passed and np.array_equal(r1.arrays["layer0.x.custom.analytic"], r2.arrays["layer0.x.custom.analytic"])


BROKEN = {
    "forward returns one value": ("def f(x, w):\n    return x @ w\n", "expected a pair (out, cache)"),
    "backward returns too few": ("def f(x, w):\n    return x @ w, (x, w)\n", "backward returned 1 values, expected 2"),
    "backward returns a list item": ("def f(x, w):\n    return x @ w, (x, w)\n", "is list, expected a numpy array"),
}


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_wrong_returns_exit_2_naming_file_and_field(tmp_path, what):
    src, msg = BROKEN[what]
    back = {"backward returns too few": "def g(d, c):\n    return (d @ c[1].T,)\n",
            "backward returns a list item": "def g(d, c):\n    return d @ c[1].T, [[0.0]]\n"}.get(
        what, "def g(d, c):\n    return d, d\n")
    (tmp_path / "mine.py").write_text(src + back)
    doc = {"input": [3, 4], "layers": [{"type": "functions", "forward": "mine.py:f", "backward": "mine.py:g",
                                        "params": {"w": [4, 2]}}]}
    code, out = run(tmp_path, doc)
    assert code == 2
    line = out.strip().splitlines()[0]
    assert "case.yaml: layers[0] (functions mine.py:f / mine.py:g)" in line and msg in line, out


@pytest.mark.parametrize("doc_patch, field", [
    ({"forward": "nope.py:f"}, "impl file not found"),
    ({"params": {"w": "three"}}, "layers[0].params.w"),
    ({"forward": "mine.py:missing"}, "no function `missing`"),
])
def test_bad_layer_fields_exit_2(tmp_path, doc_patch, field):
    (tmp_path / "mine.py").write_text("def f(x, w):\n    return x @ w, (x, w)\n"
                                      "def g(d, c):\n    return d @ c[1].T, c[0].T @ d\n")
    entry = {"type": "functions", "forward": "mine.py:f", "backward": "mine.py:g", "params": {"w": [4, 2]}}
    entry.update(doc_patch)
    code, out = run(tmp_path, {"input": [3, 4], "layers": [entry]})
    assert code == 2 and field in out and "Traceback" not in out, out


@pytest.mark.parametrize("loss, msg", [
    ({"type": "function"}, "loss.impl: missing"),
    ("function", "loss: loss `function` needs its code"),
    ({"type": "mse", "impl": "x.py:f"}, "loss.impl: loss `mse` takes no impl"),
])
def test_bad_loss_fields_exit_2(tmp_path, loss, msg):
    doc = case_of("affine", "layers.py")
    doc["loss"] = loss
    code, out = run(tmp_path, doc)
    assert code == 2 and msg in out, out


def test_loss_that_is_neither_sum_nor_mean_exits_2(tmp_path):
    (tmp_path / "loss.py").write_text("import numpy as np\n"
                                      "def f(x, y):\n    return float((x ** 2).sum()) ** 2, 4 * (x ** 2).sum() * x\n")
    doc = case_of("affine", "layers.py")
    doc["loss"] = {"type": "function", "impl": "loss.py:f"}
    code, out = run(tmp_path, doc)
    assert code == 2 and "case.yaml: loss (function loss.py:f): the loss of the batch" in out, out


@pytest.mark.parametrize("back, code_expected", [
    ("def relu_backward(dout, cache):\n    return dout * (cache > 0)\n", 0),       # CS231n's own
    ("def relu_backward(dout, cache):\n    return dout * (cache > -0.5)\n", 1),    # a bug still fails
])
def test_a_bare_array_from_a_backward_with_one_gradient(tmp_path, back, code_expected):
    (tmp_path / "mine.py").write_text("import numpy as np\n"
                                      "def relu_forward(x):\n    return np.maximum(0, x), x\n" + back)
    doc = {"seed": 2, "input": [4, 6], "layers": [{"type": "functions", "forward": "mine.py:relu_forward",
                                                   "backward": "mine.py:relu_backward"}]}
    code, report = run(tmp_path, doc)
    assert code == code_expected, report
    if code == 1:
        assert failing(report) == {(0, "x")}
