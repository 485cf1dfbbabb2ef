"""Property-based: random YAML structures never produce a traceback, only a CaseError / exit 2.

Example counts are modest so the suite stays fast; every example is one load (and a few go
through the CLI's validate and run).
"""
from __future__ import annotations

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradcheck_cli.cases import from_dict, load
from gradcheck_cli.cli import main
from gradcheck_cli.errors import GradcheckError

KEYS = ["name", "seed", "dtype", "input", "layers", "loss", "regularization", "forms", "tolerance",
        "numerical", "type", "out_features", "bias", "kernel", "stride", "padding", "channels",
        "out_channels", "shape", "data", "params", "l2", "rtol", "atol", "eps", "target",
        "reduction", "w", "W", "b", "layer", "x"]
WORDS = ["linear", "relu", "tanh", "sigmoid", "add", "flatten", "conv2d", "conv1d", "correlation1d",
         "mse", "sum", "projection", "cross_entropy", "kron", "spray", "correlation", "float32",
         "float64", "mean", "x.npy", "", "nan", "1e-6", "-1"]

scalars = (st.none() | st.booleans() | st.integers(-3, 9) | st.sampled_from([0.0, -1.5, 1e-6, 1e300])
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(WORDS)
           | st.text(max_size=6))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4), max_leaves=12)

layer = st.fixed_dictionaries(
    {"type": st.sampled_from(WORDS[:9]) | scalars},
    optional={k: values for k in ("out_features", "bias", "kernel", "stride", "padding",
                                   "out_channels", "params", "channels")})
near_valid = st.fixed_dictionaries(
    {"input": st.lists(st.integers(-1, 5), max_size=4) | values,
     "layers": st.lists(layer, max_size=3) | values},
    optional={k: values for k in ("seed", "dtype", "loss", "forms", "tolerance", "numerical",
                                   "regularization", "name")})

LAYER_CHOICES = [{"type": "relu"}, {"type": "tanh"}, {"type": "sigmoid"}, {"type": "add"},
                 {"type": "linear", "out_features": 3}, {"type": "linear", "out_features": 1, "bias": False}]
valid = st.builds(
    lambda n, d, layers, loss, dtype, seed: {"seed": seed, "dtype": dtype, "input": [n, d],
                                             "layers": [dict(x) for x in layers], "loss": loss},
    st.integers(1, 4), st.integers(1, 5), st.lists(st.sampled_from(LAYER_CHOICES), min_size=1, max_size=3),
    st.sampled_from(["projection", "sum", "mse", "cross_entropy"]), st.sampled_from(["float64", "float32"]),
    st.integers(0, 1000))


def _mutate(args):
    doc, where, key, value = args
    if where == "top":
        doc[key] = value
    elif where == "layer":
        doc["layers"][0][key] = value
    return doc


mutated = st.tuples(valid, st.sampled_from(["none", "top", "layer"]), st.sampled_from(KEYS), values).map(_mutate)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load_or_case_error(doc, tmp_path):
    try:
        return from_dict(doc, str(tmp_path / "f.yaml"), base_dir=tmp_path)
    except GradcheckError as exc:
        text = str(exc)
        assert text.startswith(str(tmp_path / "f.yaml")) and "\n" not in text
        return None


@FUZZ
@given(doc=values)
def test_any_structure_loads_or_names_the_field(tmp_path_factory, doc):
    _load_or_case_error(doc, tmp_path_factory.mktemp("f"))


@FUZZ
@given(doc=near_valid)
def test_near_valid_cases_load_or_name_the_field(tmp_path_factory, doc):
    _load_or_case_error(doc, tmp_path_factory.mktemp("f"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.lists(st.sampled_from(list("[]{}:-,'\"!&*#|>\n ab1.") + ["!!python/name:os.system ",
                                                                          "layers:\n", "input: "]),
                     max_size=30).map("".join))
def test_random_text_never_crashes_the_loader(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("t") / "case.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        load(p)
    except GradcheckError as exc:
        assert "\n" not in str(exc)


def _validate_then_run(tmp_path_factory, doc, sample):
    """`validate` the document, then `run` it when it validates: both end in a defined exit code,
    never an exception. Returns (path, validate result, run result or None), or None when the
    document cannot be written as YAML."""
    p = tmp_path_factory.mktemp("c") / "case.yaml"
    try:
        p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    except yaml.YAMLError:
        return None
    runner = CliRunner()
    v = runner.invoke(main, ["validate", str(p)])
    assert v.exception is None or isinstance(v.exception, SystemExit), v.exception
    assert v.exit_code in (0, 2)
    r = None
    if v.exit_code == 0:
        r = runner.invoke(main, ["run", "--sample", str(sample), "--format", "json", str(p)])
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        assert r.exit_code in (0, 1, 2)
    return p, v, r


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=near_valid)
def test_cli_validate_and_run_exit_0_1_or_2_without_traceback(tmp_path_factory, doc):
    out = _validate_then_run(tmp_path_factory, doc, sample=3)
    if out and out[1].exit_code == 2:
        assert "Traceback" not in out[1].output


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=valid)
def test_valid_random_dense_cases_pass_through_the_cli(tmp_path_factory, doc):
    """Random valid cases of correct built-in layers: validate says ok and run exits 0 (no false
    failure), whatever the seed, dtype, loss and layer order."""
    p = tmp_path_factory.mktemp("v") / "case.yaml"
    p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(main, ["validate", str(p)]).exit_code == 0
    r = runner.invoke(main, ["run", "--format", "json", str(p)])
    assert r.exit_code == 0, r.output


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=mutated)
def test_one_mutation_of_a_valid_case_is_a_case_or_one_line(tmp_path_factory, doc):
    out = _validate_then_run(tmp_path_factory, doc, sample=4)
    if out and out[1].exit_code == 2:
        p, v, _ = out
        assert len(v.output.strip().splitlines()) <= 2 and str(p) in v.output
