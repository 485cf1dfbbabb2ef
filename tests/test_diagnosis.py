"""diagnosis.py: a catalogue of wrong backward passes, each diagnosed as the kind it was built with;
right ones and bugs of no kind get no diagnosis (never a guess).

Built-in style bugs are subclasses of the built-in layers with one wrong form (registered for the
test only); `custom` bugs and `type: functions` pairs live in tests/user_layers/diag_bugs.py,
tests/user_layers/*.py and tests/cs231n/buggy.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from gradcheck_cli.cli import main
from gradcheck_cli.diagnosis import EXPLANATIONS, Evidence, diagnose
from gradcheck_cli.layers.conv import Conv2d
from gradcheck_cli.layers.dense import Linear
from gradcheck_cli.registry import form

TESTS = Path(__file__).parent
USER = TESTS / "user_layers"
CS = TESTS / "cs231n"
DIAG = USER / "diag_bugs.py"


def _wrong(base, change):
    """A built-in layer whose correlation form's gradients go through ``change(g, dy, x, params)``."""

    class Wrong(base):
        @form("correlation", seed="test: a deliberately wrong gradient")
        def correlation(self, dy, x, params):
            g = {k: np.array(v, copy=True) for k, v in super().correlation(dy, x, params).items()}
            change(g, dy, x, params)
            return g

    return Wrong


def _set(key, fn):
    def change(g, dy, x, params):
        g[key] = fn(g[key], dy, x, params)
    return change


def _border_zero(g, dy, x, params):
    g["x"][:, :, [0, -1], :] = 0
    g["x"][:, :, :, [0, -1]] = 0


def _dx_cols_shifted(g, dy, x, params):
    dx = g["x"].copy()
    g["x"][...] = 0
    g["x"][..., 1:] = dx[..., :-1]


def _rows_doubled(g, dy, x, params):
    g["W"][:2] *= 2


def _one_entry(g, dy, x, params):
    g["W"][2, 1] *= 1.001


def _sample_one_negated(g, dy, x, params):
    g["x"][1] *= -1


BUILTIN = {
    "diag_lin_mean": _wrong(Linear, _set("W", lambda w, dy, x, p: w / x.shape[0])),
    "diag_lin_transposed": _wrong(Linear, _set("W", lambda w, dy, x, p: (dy.T @ x).reshape(w.shape))),
    "diag_lin_decay": _wrong(Linear, _set("W", lambda w, dy, x, p: w - 0.01 * p["W"])),
    "diag_lin_sample": _wrong(Linear, _sample_one_negated),
    "diag_lin_entry": _wrong(Linear, _one_entry),
    "diag_lin_rows": _wrong(Linear, _rows_doubled),
    "diag_conv_swapped": _wrong(Conv2d, _set("W", lambda w, dy, x, p: np.swapaxes(w, 0, 1))),
    "diag_conv_flipped": _wrong(Conv2d, _set("W", lambda w, dy, x, p: w[:, :, :, ::-1])),
    "diag_conv_shifted": _wrong(Conv2d, _dx_cols_shifted),
    "diag_conv_border": _wrong(Conv2d, _border_zero),
}


def builtin(name, shape, **opts):
    return {"seed": 1, "input": shape, "forms": ["correlation"], "layers": [{"type": name, **opts}]}


def custom(impl, shape, file=DIAG, **opts):
    layer = {"type": "custom", "impl": f"{file}:{impl}"}
    if opts:
        layer["options"] = opts
    return {"seed": 1, "input": shape, "layers": [layer]}


def pair(fwd, bwd, shape, params=None, args=None, ffile=DIAG, bfile=DIAG, per_sample=True):
    layer = {"type": "functions", "forward": f"{ffile}:{fwd}", "backward": f"{bfile}:{bwd}", "per_sample": per_sample}
    if params:
        layer["params"] = params
    if args:
        layer["args"] = args
    return {"seed": 1, "input": shape, "layers": [layer]}


CONV = {"conv_param": {"stride": 1, "pad": 1}}
# id: (case, (layer, tensor) of the wrong row, kind, detail it must hold)
CATALOGUE = {
    "builtin-mean": (builtin("diag_lin_mean", [4, 6], out_features=5), (0, "W"), "scale", {"factor": 0.25}),
    "custom-1e-4": (custom("WeightGradOff1e4", [4, 6], USER / "dense.py"), (0, "W"), "scale", {"factor": 1.0001}),
    "pair-bias-mean": (pair("affine_forward", "affine_backward", [4, 5], {"w": [5, 6], "b": [6]},
                            ffile=CS / "buggy.py", bfile=CS / "buggy.py"), (0, "b"), "scale", {"factor": 0.25}),
    "pair-layernorm-half": (pair("layernorm_forward", "layernorm_backward", [4, 5], {"gamma": [5], "beta": [5]},
                                 {"ln_param": {}}, CS / "buggy.py", CS / "buggy.py"), (0, "gamma"), "scale", {"factor": 0.5}),
    "pair-dropout-no-1/p": (pair("dropout_forward", "dropout_backward", [4, 6], None,
                                 {"dropout_param": {"p": 0.6, "mode": "train", "seed": 0}}, CS / "buggy.py",
                                 CS / "buggy.py", per_sample=False), (0, "x"), "scale", {"factor": 0.6}),
    "custom-sign": (custom("TanhSign", [4, 6]), (0, "x"), "scale", {"factor": -1}),
    "loss-softmax-no-1/N": ({**pair("affine_forward", "affine_backward", [4, 5], {"w": [5, 3], "b": [3]},
                                    ffile=CS / "layers.py", bfile=CS / "layers.py"),
                             "loss": {"type": "function", "impl": f"{CS / 'buggy.py'}:softmax_loss"}},
                            (1, "y"), "scale", {"factor": 4}),
    "custom-transposed": (custom("WeightGradTransposed", [4, 6], USER / "dense.py"), (0, "W"), "transpose", {"axes": [0, 1]}),
    "pair-rnn-Wh": (pair("rnn_step_forward", "rnn_step_backward", [3, 4], {"prev_h": [3, 5], "Wx": [4, 5], "Wh": [5, 5], "b": [5]},
                         ffile=CS / "buggy.py", bfile=CS / "buggy.py", per_sample=False), (0, "Wh"), "transpose", {"axes": [0, 1]}),
    "builtin-reshaped": (builtin("diag_lin_transposed", [4, 6], out_features=4), (0, "W"), "transpose", {"reshaped": True}),
    "builtin-conv-oc": (builtin("diag_conv_swapped", [2, 3, 5, 5], out_channels=3, kernel=3), (0, "W"), "transpose", {"axes": [0, 1]}),
    "pair-conv-w": (pair("conv_forward_naive", "conv_backward_naive", [2, 3, 5, 5], {"w": [4, 3, 3, 3], "b": [4]}, CONV,
                         CS / "buggy.py", CS / "buggy.py"), (0, "w"), "flip", {"axes": [2, 3]}),
    "builtin-conv-cols": (builtin("diag_conv_flipped", [2, 2, 5, 5], out_channels=3, kernel=3), (0, "W"), "flip", {"axes": [3]}),
    "custom-corr-reversed": (custom("Corr1dReversed", [3, 12]), (0, "w"), "flip", {"axes": [0]}),
    "builtin-conv-dx-cols": (builtin("diag_conv_shifted", [2, 2, 6, 6], out_channels=3, kernel=3, padding=1), (0, "x"),
                             "shift", {"axis": 3, "by": 1}),
    "custom-corr-offset": (custom("Corr1dOffset", [3, 12]), (0, "w"), "shift", {"axis": 0, "by": -1}),
    "custom-tanh-offset": (custom("TanhShifted", [4, 8]), (0, "x"), "shift", {"axis": 1, "by": 2}),
    "pair-conv-dx-rows": (pair("conv_forward_naive", "conv_backward_rows_shifted", [2, 2, 6, 6], {"w": [3, 2, 3, 3], "b": [3]},
                               CONV), (0, "x"), "shift", {"axis": 2, "by": 1}),
    "builtin-decay": (builtin("diag_lin_decay", [4, 6], out_features=5), (0, "W"), "missing-term", {"tensor": "W", "factor": -0.01}),
    "custom-decay-twice": (custom("DenseWeightDecayTwice", [4, 6]), (0, "W"), "missing-term", {"tensor": "W", "factor": 0.5}),
    "pair-tanh-plus-x": (pair("tanh_forward", "tanh_backward_plus_x", [4, 6]), (0, "x"), "missing-term", {"tensor": "x", "factor": 0.3}),
    "custom-sigmoid-minus-y": (custom("SigmoidMinusOutput", [4, 6]), (0, "x"), "missing-term", {"tensor": "y", "factor": -1}),
    "custom-bias-one-sample": (custom("BiasFromOneSample", [4, 6], USER / "dense.py"), (0, "b"), "batch", {"samples": [0]}),
    "custom-scale-last-sample": (custom("ScaleNotSummed", [4, 6], USER / "dense.py"), (0, "g"), "batch", {"samples": [3]}),
    "pair-affine-but-last": (pair("affine_forward", "affine_backward_but_last", [4, 5], {"w": [5, 3], "b": [3]}), (0, "w"),
                             "batch", {"samples": [0, 1, 2]}),
    "builtin-sample-negated": (builtin("diag_lin_sample", [4, 6], out_features=5), (0, "x"), "batch", {"samples": [0, 2, 3]}),
    "custom-conv-last-row": (custom("ConvBorderRowDropped", [2, 2, 5, 5], USER / "conv.py", out_channels=3, padding=1),
                             (0, "x"), "zeros", {"region": "rows", "indices": [4]}),
    "builtin-conv-border": (builtin("diag_conv_border", [2, 2, 6, 6], out_channels=3, kernel=3, padding=1), (0, "x"),
                            "zeros", {"region": "border"}),
    "pair-relu-channel": (pair("relu_forward", "relu_backward_channel_dropped", [2, 3, 4, 4]), (0, "x"), "zeros",
                          {"region": "channels", "indices": [1]}),
    "custom-mask-ignored": (custom("MaskedCopy", [4, 6]), (0, "x"), "zeros", {"region": "features", "zero": "numerical"}),
    "builtin-one-entry": (builtin("diag_lin_entry", [4, 8], out_features=5), (0, "W"), "entries", {"count": 1, "entries": [[2, 1]]}),
    "custom-conv-corner": (custom("ConvCorner", [2, 2, 5, 5]), (0, "x"), "entries", {"count": 1, "borders": 1}),
    "pair-tanh-two": (pair("tanh_forward", "tanh_backward_two_entries", [6, 10]), (0, "x"), "entries", {"count": 2}),
}

RIGHT = {
    "builtin-lenet": {"seed": 0, "input": [2, 1, 8, 8], "loss": "cross_entropy",
                      "layers": [{"type": "conv2d", "out_channels": 2, "kernel": 3}, {"type": "relu"},
                                 {"type": "maxpool2d", "size": 2}, {"type": "flatten"},
                                 {"type": "linear", "out_features": 3}]},
    "builtin-tanh-sigmoid": {"input": [3, 5], "layers": [{"type": "tanh"}, {"type": "linear", "out_features": 4},
                                                         {"type": "sigmoid"}], "loss": "mse"},
    "builtin-conv1d": {"input": [2, 2, 9], "layers": [{"type": "convolution1d", "out_channels": 2, "kernel": 3},
                                                      {"type": "tanh"}]},
    "custom-dense": custom("Dense", [4, 6]),
    "custom-corr": custom("Corr1d", [3, 12]),
    "custom-conv": custom("Conv", [2, 2, 5, 5]),
    "custom-leaky": custom("LeakyReLU", [4, 6], USER / "activations.py", slope=0.2),
    "custom-square": custom("SquareLinear", [4, 6], USER / "dense.py"),
    "pair-affine": pair("affine_forward", "affine_backward", [4, 5], {"w": [5, 6], "b": [6]}, None, CS / "layers.py", CS / "layers.py"),
    "pair-conv": pair("conv_forward_naive", "conv_backward_naive", [2, 3, 5, 5], {"w": [4, 3, 3, 3], "b": [4]}, CONV,
                      CS / "layers.py", CS / "layers.py"),
    "pair-batchnorm": {**pair("batchnorm_forward", "batchnorm_backward", [5, 4], {"gamma": [4], "beta": [4]},
                              {"bn_param": {"mode": "train"}}, CS / "layers.py", CS / "layers.py", per_sample=False)},
}

NO_KIND = {
    "custom-leaky-slope-missing": custom("LeakyReLU", [4, 6], TESTS.parent / "examples" / "my_layers_buggy.py",
                                         slope=0.2),
    "custom-sigmoid-on-input": custom("SigmoidDerivOnInput", [4, 6], USER / "activations.py"),
    "custom-conv-stride-ignored": custom("ConvStrideIgnored", [2, 2, 7, 7], USER / "conv.py", out_channels=3, stride=2),
    "custom-dense-noise": custom("DenseNoisy", [4, 6]),
    "custom-dense-x-squared": custom("DenseSquaredInput", [4, 6]),
    "custom-tanh-derivative": custom("TanhWrongDerivative", [4, 6]),
    "builtin-rows-doubled": builtin("diag_lin_rows", [4, 6], out_features=5),
    "pair-relu-leaks": pair("relu_forward", "relu_backward", [4, 6], ffile=CS / "buggy.py", bfile=CS / "buggy.py"),
    "pair-maxpool-first": pair("max_pool_forward_naive", "max_pool_backward_naive", [2, 3, 4, 4], None,
                               {"pool_param": {"pool_height": 2, "pool_width": 2, "stride": 2}},
                               CS / "buggy.py", CS / "buggy.py"),
    "pair-batchnorm-mean-path": pair("batchnorm_forward", "batchnorm_backward", [5, 4], {"gamma": [4], "beta": [4]},
                                     {"bn_param": {"mode": "train"}}, CS / "buggy.py", CS / "buggy.py", per_sample=False),
    "pair-centred-dout": pair("affine_forward", "affine_backward", [5, 8], {"w": [8, 6], "b": [6]}, None,
                              TESTS.parent / "examples" / "cs231n" / "layers_buggy.py",
                              TESTS.parent / "examples" / "cs231n" / "layers_buggy.py"),
}


@pytest.fixture
def builtins(temp_layer):
    for name, cls in BUILTIN.items():
        temp_layer(name, cls)


def run(tmp_path: Path, doc: dict, *args: str) -> tuple[int, dict]:
    case = tmp_path / "case.yaml"
    case.write_text(yaml.safe_dump(doc, sort_keys=False))
    res = CliRunner().invoke(main, ["run", str(case), "--format", "json", *args])
    assert res.exit_code in (0, 1), res.output
    return res.exit_code, json.loads(res.output)


def checks(report: dict) -> list[dict]:
    case = report["cases"][0]
    return case["checks"] + case["loss_checks"]


def test_catalogue_covers_every_kind_several_times():
    kinds = [k for _, _, k, _ in CATALOGUE.values()]
    assert len(kinds) >= 20 and all(kinds.count(k) >= 3 for k in EXPLANATIONS)
    styles = {name.split("-")[0] for name in CATALOGUE}
    assert styles >= {"builtin", "custom", "pair"}


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_wrong_backward_gets_its_kind(tmp_path, builtins, name):
    doc, (layer, tensor), kind, detail = CATALOGUE[name]
    code, report = run(tmp_path, doc)
    assert code == 1
    row = next(c for c in checks(report) if (c["layer"], c["tensor"]) == (layer, tensor) and not c["passed"])
    d = row["diagnosis"]
    assert d is not None and d["kind"] == kind, d
    for key, value in detail.items():
        assert d["detail"][key] == (value if isinstance(value, list) else pytest.approx(value)), d
    assert d["text"]


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_right_backward_gets_no_diagnosis(tmp_path, name):
    code, report = run(tmp_path, RIGHT[name])
    assert code == 0
    assert all("diagnosis" in c and c["diagnosis"] is None for c in checks(report))


@pytest.mark.parametrize("name", sorted(NO_KIND))
def test_bug_of_no_kind_gets_no_diagnosis(tmp_path, builtins, name):
    code, report = run(tmp_path, NO_KIND[name])
    assert code == 1
    failing = [c for c in checks(report) if not c["passed"]]
    assert failing and all(c["diagnosis"] is None for c in failing), [c["diagnosis"] for c in failing]


def _doc(name):
    return CATALOGUE[name][0]


def test_sampled_rows_are_judged_on_the_sampled_entries(tmp_path):
    code, report = run(tmp_path, _doc("pair-conv-w"), "--sample", "30")
    row = next(c for c in checks(report) if c["tensor"] == "w")
    assert code == 1 and row["checked"] == 30
    assert row["diagnosis"]["kind"] == "flip" and "judged on the 30 sampled entries" in row["diagnosis"]["text"]


def test_table_markdown_and_html_print_the_diagnosis(tmp_path, builtins):
    case = tmp_path / "case.yaml"
    case.write_text(yaml.safe_dump(_doc("builtin-one-entry"), sort_keys=False))
    res = CliRunner().invoke(main, ["run", str(case), "--html", str(tmp_path / "r.html")], env={"COLUMNS": "100"})
    lines = res.output.splitlines()
    at = next(k for k, ln in enumerate(lines) if ln.lstrip().startswith("layers[0].W"))
    assert lines[at + 1].strip().startswith("diagnosis (entries): wrong at 1 isolated entry")
    html = (tmp_path / "r.html").read_text()
    assert "diagnosis (entries)" in html and "data-marked='[[2, 1]]'" in html
    md = CliRunner().invoke(main, ["run", str(case), "--format", "markdown"]).output
    assert "- Diagnosis of layers[0].W (correlation), `entries`: wrong at 1 isolated entry" in md


def _evidence(a, n, **kw):
    a, n = np.asarray(a, float), np.asarray(n, float)
    return Evidence(a, n.reshape(-1), np.arange(n.size), np.zeros(n.size), 1e-6, 1e-9, **kw)


def test_direct_use_never_guesses():
    rng = np.random.default_rng(0)
    n = rng.standard_normal((6, 5))
    assert diagnose(_evidence(3 * n, n)).detail == {"factor": 3.0}
    assert diagnose(_evidence(n[::-1], n, tensor="W")).detail == {"axes": [0]}
    assert diagnose(_evidence(n[::-1], n, tensor="x")) is None       # the batch axis is not flipped
    assert diagnose(_evidence(n + 1e-3 * rng.standard_normal(n.shape), n)) is None    # noise: nothing
    assert diagnose(_evidence(2 * n[:1, :3], n[:1, :3])) is None                       # 3 entries: too few
    assert diagnose(_evidence(n, n)) is None                                           # passing: nothing
