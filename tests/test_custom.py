"""Custom layers (gradcheck_cli/layers/custom.py): the user's own layers in a case.

The user layers live in tests/user_layers/ (plain numpy). Correct layers must pass in float64 and
float32; each seeded bug must fail with exit 1 and a worst index at the bug; broken user code
must give exit 2 and a message naming the case file, the layer and the user's file.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from scipy import signal

from gradcheck_cli import check_case
from gradcheck_cli.cli import main
from gradcheck_cli.errors import CaseError, UserCodeError

UL = Path(__file__).parent / "user_layers"
CONV = {"input": [2, 2, 5, 5], "options": {"out_channels": 3, "kernel": 3, "stride": 2, "padding": 1}}
SMALL = {"input": [4, 5], "options": {}}


def doc(impl: str, input, options=None, dtype="float64", seed=3, before=(), after=()) -> dict:
    layer = {"type": "custom", "impl": impl}
    if options:
        layer["options"] = options
    return {"name": impl.rpartition(":")[2], "seed": seed, "dtype": dtype, "input": list(input),
            "layers": [*before, layer, *after]}


def write_case(tmp_path: Path, d: dict, name="case.yaml") -> Path:
    """A case file in tmp_path whose impl names the file in tests/user_layers by absolute path."""
    d = json.loads(json.dumps(d))
    for layer in d["layers"]:
        file, _, cls = layer.get("impl", "").rpartition(":")
        if file.endswith(".py"):
            layer["impl"] = f"{UL / file}:{cls}"
    p = tmp_path / name
    p.write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
    return p


def run_json(path: Path, *args: str):
    res = CliRunner().invoke(main, ["run", str(path), "--format", "json", *args])
    return res, (json.loads(res.stdout) if res.stdout.strip() else None)


# ------------------------------------------------------------------------------------------
# correct user layers pass
# ------------------------------------------------------------------------------------------
CORRECT = [
    ("conv.py:Conv2d", CONV),
    ("activations.py:LeakyReLU", {"input": [4, 6], "options": {"slope": 0.2}}),
    ("dense.py:Scale", SMALL),
    ("activations.py:Sigmoid", {"input": [4, 6], "options": {}}),
    ("dense.py:SquareLinear", SMALL),
    ("batch.py:CenterBatch", {"input": [4, 3], "options": {}}),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("impl,spec", CORRECT, ids=[c[0] for c in CORRECT])
def test_correct_layer_passes(impl, spec, dtype):
    r = check_case(doc(impl, spec["input"], spec["options"], dtype), base_dir=UL)
    assert r.passed, [(row.tensor, row.max_rel_error) for row in r.rows]
    params = {k.split(".")[1] for k in r.arrays if k.startswith("layer0.") and k.count(".") == 1}
    assert {row.tensor for row in r.rows} == {"x"} | params          # x and every parameter
    assert {row.form for row in r.rows} == {"custom"}
    assert all(row.checked == int(np.prod(row.shape)) for row in r.rows)


def test_conv_fixture_matches_scipy():
    """The fixture conv itself, against scipy: forward by correlate, dL/dW by correlate of x and dy."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ul_conv", UL / "conv.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    layer = mod.Conv2d(out_channels=3, kernel=3, stride=2, padding=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 5, 5))
    p = layer.init_params(x.shape, rng)
    y = layer.forward(x, p)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.stack([[sum(signal.correlate2d(xp[n, c], p["W"][o, c], mode="valid") for c in range(2))[::2, ::2]
                     + p["b"][o] for o in range(3)] for n in range(2)])
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    g = layer.backward(dy, x, p)
    up = np.zeros((2, 3, 5, 5))                       # dy dilated by the stride
    up[:, :, ::2, ::2] = dy
    dW = np.stack([[sum(signal.correlate2d(xp[n, c], up[n, o], mode="valid") for n in range(2))
                    for c in range(2)] for o in range(3)])
    dxp = np.stack([[sum(signal.convolve2d(up[n, o], p["W"][o, c], mode="full") for o in range(3))
                     for c in range(2)] for n in range(2)])
    np.testing.assert_allclose(g["W"], dW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g["x"], dxp[:, :, 1:6, 1:6], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g["b"], dy.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_custom_layer_inside_a_network_of_builtin_layers(tmp_path):
    d = doc("conv.py:Conv2d", CONV["input"], CONV["options"], seed=1,
            after=[{"type": "tanh"}, {"type": "linear", "out_features": 3}])
    d["loss"] = "mse"
    res, out = run_json(write_case(tmp_path, d))
    assert res.exit_code == 0, res.output
    rows = out["cases"][0]["checks"]
    assert {(r["layer"], r["form"]) for r in rows if r["layer"] == 0} == {(0, "custom")}
    assert {r["tensor"] for r in rows if r["layer"] == 0} == {"x", "W", "b"}
    assert {r["form"] for r in rows if r["layer"] == 2} == {"kron", "correlation", "spray"}


def test_a_layer_defined_on_part_of_the_line_is_probed_without_error():
    """Shapes are found on standard-normal draws, where log gives NaN; the real input is > 0."""
    d = doc("activations.py:Log", [3, 4], before=[{"type": "sigmoid"}])
    assert check_case(d, base_dir=UL).passed
    with pytest.raises(UserCodeError, match="forward\\(\\) output holds NaN or Inf"):
        check_case(doc("activations.py:Log", [3, 4]), base_dir=UL)      # real input < 0 somewhere


def test_table_shows_form_custom(tmp_path):
    p = write_case(tmp_path, doc("activations.py:LeakyReLU", [3, 4], {"slope": 0.3}))
    res = CliRunner().invoke(main, ["run", str(p), "-v"], env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith("layers[0].x "))
    assert line.split()[1:3] == ["custom", "custom"]                # type, form


def test_float32_case_gives_the_user_float32_arrays():
    # the probe raises unless backward receives `expect` arrays; float64 shows the probe can fail
    assert check_case(doc("batch.py:DtypeProbe", [4, 3], {"expect": "float32"}, "float32"), base_dir=UL).passed
    with pytest.raises(UserCodeError, match="expected float32 arrays, got \\['float64'\\]"):
        check_case(doc("batch.py:DtypeProbe", [4, 3], {"expect": "float32"}, "float64"), base_dir=UL)


def test_per_sample_defaults_to_false():
    """A layer that mixes samples passes by default; a false per_sample claim is caught."""
    assert check_case(doc("batch.py:CenterBatch", [4, 3]), base_dir=UL).passed
    with pytest.raises(UserCodeError, match="per_sample = True, but the output is not one row per sample"):
        check_case(doc("batch.py:CenterBatchClaimsPerSample", [4, 3]), base_dir=UL)


def test_impl_as_module_on_sys_path(monkeypatch):
    monkeypatch.syspath_prepend(str(UL))
    r = check_case(doc("activations:LeakyReLU", [3, 4], {"slope": 0.5}))
    assert r.passed and r.rows[0].form == "custom"


def test_loading_does_not_touch_sys_path():
    before = list(sys.path)
    check_case(doc("dense.py:Scale", [3, 4]), base_dir=UL)
    assert sys.path == before


# ------------------------------------------------------------------------------------------
# seeded bugs: exit 1, and the worst index points at the bug
# ------------------------------------------------------------------------------------------
def _correct_grad(impl_ok: str, spec: dict, tensor: str, dtype: str) -> np.ndarray:
    """The correct layer's gradient at the same draws (same seed): where the bug is not."""
    r = check_case(doc(impl_ok, spec["input"], spec["options"], dtype), base_dir=UL)
    assert r.passed
    return r.arrays[f"layer0.{tensor}.custom.analytic"]


def _last_row(idx, a, b):
    return idx[2] == 4                                           # H - 1 of the 5x5 input


def _off_diagonal(idx, a, b):
    return idx[0] != idx[1]


def _largest_entry(idx, a, b):
    return tuple(idx) == np.unravel_index(np.argmax(np.abs(b)), b.shape)


BUGS = [  # buggy impl, correct impl, spec, failing tensors, the tensor to locate, extra location rule
    ("conv.py:ConvStrideIgnored", "conv.py:Conv2d", CONV, {"x", "W"}, "x", None),
    ("conv.py:ConvKernelFlipped", "conv.py:Conv2d", CONV, {"x"}, "x", None),
    ("conv.py:ConvBorderRowDropped", "conv.py:Conv2d", CONV, {"x"}, "x", _last_row),
    ("dense.py:BiasFromOneSample", "dense.py:SquareLinear", SMALL, {"b"}, "b", None),
    ("dense.py:WeightGradTransposed", "dense.py:SquareLinear", SMALL, {"W"}, "W", _off_diagonal),
    ("dense.py:WeightGradOff1e4", "dense.py:SquareLinear", SMALL, {"W"}, "W", _largest_entry),
    ("activations.py:SigmoidDerivOnInput", "activations.py:Sigmoid", {"input": [4, 6], "options": {}},
     {"x"}, "x", None),
    ("dense.py:ScaleNotSummed", "dense.py:Scale", SMALL, {"g"}, "g", None),
]
BUG_RUNS = [(*b, dt) for b in BUGS for dt in ("float64", "float32") if not (b[0].endswith("1e4") and dt == "float32")]


@pytest.mark.parametrize("impl,ok,spec,failing,tensor,rule,dtype", BUG_RUNS,
                         ids=[f"{b[0].split(':')[1]}-{b[-1]}" for b in BUG_RUNS])
def test_seeded_bug_is_caught_at_its_index(tmp_path, impl, ok, spec, failing, tensor, rule, dtype):
    res, out = run_json(write_case(tmp_path, doc(impl, spec["input"], spec["options"], dtype)))
    assert res.exit_code == 1, res.output
    rows = out["cases"][0]["checks"]
    assert {r["tensor"] for r in rows if not r["passed"]} == failing
    row = next(r for r in rows if r["tensor"] == tensor)
    idx = tuple(row["worst_index"])
    bad = np.asarray(row["worst"][0]["analytic"])
    good = _correct_grad(ok, spec, tensor, dtype)
    # the worst entry is one the bug changed: there the buggy value misses the correct one by
    # ten times the dtype's tolerance (atol + rtol |g|) or more
    atol, rtol = (1e-9, 1e-6) if dtype == "float64" else (1e-5, 1e-3)
    assert abs(bad - good[idx]) > 10 * (atol + rtol * abs(good[idx])), (idx, bad, good[idx])
    if rule is not None:
        assert rule(idx, bad, good), idx


def test_off_by_1e4_is_within_float32_tolerance(tmp_path):
    """Documents the limit: float32's rtol 1e-3 cannot see a relative 1e-4 error."""
    res, _ = run_json(write_case(tmp_path, doc("dense.py:WeightGradOff1e4", [4, 5], dtype="float32")))
    assert res.exit_code == 0, res.output


def test_border_row_bug_fails_exactly_the_last_row(tmp_path):
    res, out = run_json(write_case(tmp_path, doc("conv.py:ConvBorderRowDropped", CONV["input"], CONV["options"])))
    row = next(r for r in out["cases"][0]["checks"] if r["tensor"] == "x")
    assert row["failed"] == 2 * 2 * 5                            # N * C * W entries of row H-1
    assert all(e["index"][2] == 4 for e in row["worst"])


def test_transposed_gradient_fails_every_off_diagonal_entry(tmp_path):
    res, out = run_json(write_case(tmp_path, doc("dense.py:WeightGradTransposed", [4, 5])))
    row = next(r for r in out["cases"][0]["checks"] if r["tensor"] == "W")
    assert row["failed"] == 5 * 5 - 5


# ------------------------------------------------------------------------------------------
# broken user code: exit 2 and a clear message
# ------------------------------------------------------------------------------------------
BROKEN = [  # impl, options, words the message must contain
    ("nope.py:X", {}, ["impl file not found", "nope.py"]),
    ("broken.py:Nope", {}, ["no class `Nope`", "broken.py", "it defines:", "ForwardRaises"]),
    ("broken.py:not_a_class", {}, ["`not_a_class`", "is not a class"]),
    ("broken.py:StrictOptions", {"slop": 1}, ["constructor raised TypeError", "'slop'", "options given"]),
    ("broken.py:ForwardRaises", {}, ["forward raised ValueError", "broken.py:25 in forward",
                                      "broken.py:29 in helper"]),
    ("broken.py:BackwardRaises", {}, ["backward raised RuntimeError: not written yet",
                                       "broken.py:34 in backward"]),
    ("broken.py:MissingKey", {}, ["backward returned keys 'x'", "missing 'g'"]),
    ("broken.py:ExtraKey", {}, ["unknown 'G'"]),
    ("broken.py:WrongShape", {}, ["backward()['g'] has shape [3, 4], expected [4]"]),
    ("broken.py:WrongDtype", {}, ["backward()['x'] has dtype int64, expected floating point (float64)"]),
    ("broken.py:HalfPrecision", {}, ["float16, less precise than the case's float64"]),
    ("broken.py:NanGradient", {}, ["backward()['g'] holds NaN or Inf (first at index [1])"]),
    ("broken.py:InfForward", {}, ["forward() output holds NaN or Inf"]),
    ("broken.py:NotADict", {}, ["backward returned ndarray, expected a dict"]),
    ("broken.py:ListOutput", {}, ["forward() output is list, expected a numpy array"]),
    ("broken.py:BadParams", {}, ["init_params returned list"]),
    ("broken.py:IntParams", {}, ["init_params()['g'] has dtype int64, expected floating point"]),
    ("broken.py:NoBackward", {}, ["has no method `backward`"]),
    ("broken.py:GlobalRandomInit", {}, ["init_params gave different values for the same rng seed"]),
    ("broken.py:RandomForward", {}, ["forward gave different outputs for the same x and params"]),
    ("broken.py:ExitsInForward", {}, ["forward raised SystemExit: 3", "broken.py:"]),
    ("syntax_error.py:Oops", {}, ["loading the file raised SyntaxError", "syntax_error.py:2"]),
    ("import_error.py:Layer", {}, ["ModuleNotFoundError", "import_error.py:2 in <module>"]),
    ("no_such_pkg.mod:X", {}, ["cannot find module `no_such_pkg.mod`"]),
    ("justtext", {}, ["is not FILE.py:Class or package.module:Class"]),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("impl,options,words", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_user_code_exits_2_with_a_clear_message(tmp_path, impl, options, words):
    d = doc(impl, [3, 4], options, before=[{"type": "linear", "out_features": 4}])
    p = write_case(tmp_path, d)
    res = CliRunner().invoke(main, ["run", str(p)])
    assert res.exit_code == 2, res.output
    err = res.stderr
    assert err.startswith(f"error: {p}: layers[1] (custom "), err
    for w in words:
        assert w in err, (w, err)
    assert "Traceback" not in err and "gradcheck_cli" not in err     # only the user's frames
    assert res.stdout == ""


def test_validate_reports_user_code_errors_too(tmp_path):
    p = write_case(tmp_path, doc("broken.py:ForwardRaises", [3, 4]))
    res = CliRunner().invoke(main, ["validate", str(p)])
    assert res.exit_code == 2 and "forward raised ValueError" in res.stderr


@pytest.mark.parametrize("layer,field,words", [
    ({"type": "custom"}, "layers[0].impl", "missing (required)"),
    ({"type": "custom", "impl": 3}, "layers[0].impl", "expected a string"),
    ({"type": "custom", "impl": "dense.py:Scale", "options": [1]}, "layers[0].options", "expected a mapping"),
    ({"type": "custom", "impl": "dense.py:Scale", "slope": 1}, "layers[0].slope", "unknown field"),
])
def test_case_errors_of_a_custom_layer_name_the_field(layer, field, words):
    with pytest.raises(CaseError) as exc:
        check_case({"input": [3, 4], "layers": [layer]}, base_dir=UL)
    assert exc.value.field == field and words in str(exc.value)


def test_list_and_new_know_the_custom_layer(tmp_path):
    res = CliRunner().invoke(main, ["list"])
    assert res.exit_code == 0 and "custom:" in res.stdout
    res = CliRunner().invoke(main, ["new", "custom"])
    assert res.exit_code == 0 and "backward(dy, x, params)" in res.stdout
    (tmp_path / "c.yaml").write_text(res.stdout, encoding="utf-8")
    res = CliRunner().invoke(main, ["run", str(tmp_path / "c.yaml"), "-v"])
    assert res.exit_code == 0, res.output
    assert " custom " in res.stdout


def test_shipped_example_layer_is_the_examples_one():
    import inspect

    from gradcheck_cli.layers import custom_example

    src = (Path(__file__).parent.parent / "examples" / "my_layers.py").read_text(encoding="utf-8")
    assert inspect.getsource(custom_example.LeakyReLU) in src


def test_parameter_files_work_for_custom_layers(tmp_path):
    g = np.array([0.5, -1.0, 2.0, 0.25])
    np.save(tmp_path / "g.npy", g)
    d = doc("dense.py:Scale", [3, 4])
    d["layers"][0]["params"] = {"g": "g.npy"}
    p = write_case(tmp_path, d)
    res, out = run_json(p, "--save-arrays", str(tmp_path / "arrays"))
    assert res.exit_code == 0, res.output
    saved = np.load(tmp_path / "arrays" / "Scale.npz")
    np.testing.assert_array_equal(saved["layer0.g"], g)
    d["layers"][0]["params"] = {"h": "g.npy"}
    res = CliRunner().invoke(main, ["run", str(write_case(tmp_path, d))])
    assert res.exit_code == 2 and "layers[0].params.h" in res.stderr and "it has: g" in res.stderr


# ------------------------------------------------------------------------------------------
# optional members: structure and kink_distance (tests/user_layers/structured.py)
# ------------------------------------------------------------------------------------------
PAIRS = {"input": [3, 12], "loss": "projection"}


def _pairs(impl, **kw):
    return check_case({**doc(f"structured.py:{impl}", PAIRS["input"], seed=kw.pop("seed", 5)),
                       "loss": PAIRS["loss"], **kw}, base_dir=UL)


def _values(r):
    return {row.tensor: r.arrays[f"layer0.{row.tensor}.custom.numerical"] for row in r.rows}


def _brute_structure(layer, x, p):
    """Outputs of sample 0 that move when one entry of x (sample 0) or w moves: a plain loop."""
    y0 = layer.forward(x, p)[0]
    out = {}
    for name, base in (("x", x[0]), ("w", p["w"])):
        S = np.zeros((y0.size, base.size), dtype=bool)
        for j in range(base.size):
            xx, pp = x.copy(), {"w": p["w"].copy()}
            (xx[0] if name == "x" else pp["w"])[j] += 0.5
            S[:, j] = layer.forward(xx, pp)[0] != y0
        out[name] = S
    return out


@pytest.mark.parametrize("impl", ["StructuredPairs", "SparseStructuredPairs"])
def test_a_declared_structure_colours_the_check(impl):
    """The declared structure is used (far fewer evaluations than without), gives the values of
    the plain per-entry check, and holds what moves (brute force)."""
    plain, coloured = _pairs("Pairs"), _pairs(impl)
    assert plain.passed and coloured.passed
    assert coloured.evaluations < plain.evaluations / 2, (coloured.evaluations, plain.evaluations)
    for t, v in _values(plain).items():
        np.testing.assert_allclose(_values(coloured)[t], v, rtol=1e-6, atol=1e-9)
    from gradcheck_cli.layers.custom import Custom

    layer = Custom(impl=f"{UL / 'structured.py'}:{impl}")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 12))
    p = layer.init_params(x.shape, rng)
    for name, moved in _brute_structure(layer, x, p).items():
        declared = layer.structure(x.shape, name).toarray()
        assert moved.any() and not np.any(moved & ~declared), name


def test_a_structure_too_small_is_caught_by_the_probes_and_the_verdict_is_right():
    plain, wrong = _pairs("Pairs"), _pairs("TooSmallStructure")
    assert wrong.passed                                  # no false FAIL from the wrong claim
    np.testing.assert_allclose(_values(wrong)["x"], _values(plain)["x"], rtol=1e-6, atol=1e-9)
    # and a wrong gradient is still found at its entry: a wrong structure hides nothing
    import importlib.util

    spec = importlib.util.spec_from_file_location("structured_t", UL / "structured.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class Buggy(mod.TooSmallStructure):
        def backward(self, dy, x, params):
            g = super().backward(dy, x, params)
            g["x"][:, 7] *= 1.001
            return g

    r = check_case({**doc("Buggy", [3, 12], seed=5), "loss": "projection",
                    "layers": [{"type": "custom", "impl": Buggy}]})
    row = next(row for row in r.rows if row.tensor == "x")
    assert not row.passed and {e.index[1] for e in row.worst} == {7}


def test_kink_distance_is_used_for_kinks_and_the_margin(tmp_path):
    """x with z exactly 0 twice (given data: left alone): the layer's kink_distance puts the
    three entries that reach those z in the kink report and the kink count; generated inputs
    keep the margin."""
    x = np.random.default_rng(1).standard_normal((3, 12))
    x[0, 4] = -0.5 * x[0, 5]                  # z_4 = x_4 + 0.5 x_5 = 0: x_4 and x_5 sit on a kink
    x[2, 11] = 0.0                            # z_11 = x_11 = 0: x_11 too
    np.save(tmp_path / "x.npy", x)
    r = check_case({**doc(f"{UL / 'structured.py'}:StructuredPairs", [3, 12], seed=5), "loss": "projection",
                    "input": {"data": "x.npy"}}, base_dir=tmp_path)
    assert r.passed
    (k,) = r.kink_layers
    assert k.layer == 0 and k.at_kink == 3 and k.nearest == 0.0
    row = next(row for row in r.rows if row.tensor == "x")
    assert row.kinks >= 3
    assert not _pairs("Pairs").kink_layers                            # no hook, no report
    gen = check_case({**doc("structured.py:StructuredPairs", [64, 12], seed=5), "loss": "projection"},
                     base_dir=UL)
    (k,) = gen.kink_layers
    assert gen.passed and gen.resampled >= 1 and k.within_margin == 0     # redrawn away from kinks


@pytest.mark.parametrize("impl,words", [
    ("StructureList", "structure([3, 4], 'x') returned list, expected None, a boolean numpy array or a scipy.sparse matrix"),
    ("StructureWrongShape", "structure([3, 4], 'x') has shape [4, 5], expected [4, 4]"),
    ("StructureFloat", "has dtype float64, expected bool"),
    ("StructureRaises", "structure raised KeyError"),
    ("KinkWrongShape", "kink_distance() output has shape [3, 3], expected x's [3, 4]"),
    ("KinkNaN", "kink_distance() output holds NaN (first at index [0, 0])"),
    ("KinkList", "kink_distance() output is list, expected a numpy array"),
])
def test_wrong_optional_members_exit_2(tmp_path, impl, words):
    p = write_case(tmp_path, doc(f"structured.py:{impl}", [3, 4]))
    res = CliRunner().invoke(main, ["run", str(p)])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith(f"error: {p}: layers[0] (custom "), res.stderr
    assert words in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
