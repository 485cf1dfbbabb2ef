"""The CLI through click's CliRunner: exit codes, JSON fields, renderers, bad input."""
from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import linear_off_by

from gradcheck_cli.cli import main
from gradcheck_cli.layers.dense import Linear
from gradcheck_cli.catalog import layers

ROOT = Path(__file__).resolve().parents[1]
ROW_FIELDS = {"layer", "type", "tensor", "form", "shape", "max_abs_error", "max_rel_error",
              "worst_index", "failed", "kinks", "passed"}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def write(tmp_path, text, name="case.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


WrongLinear = linear_off_by((2, 1), 1e-4)


def test_cases_folder_passes_with_every_json_field():
    res = invoke("run", ROOT / "cases", "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["passed"] is True and doc["version"]
    assert doc["cases"]
    for case in doc["cases"]:
        assert {"name", "file", "passed", "checks"} <= set(case)
        assert case["passed"] is True
        for row in case["checks"]:
            assert ROW_FIELDS <= set(row)
            assert row["passed"] is True


def test_wrong_gradient_fails_with_its_index(tmp_path, temp_layer):
    temp_layer("wrong_linear", WrongLinear)
    case = write(tmp_path, """
        name: wrong
        input: [5, 4]
        layers:
          - {type: wrong_linear, out_features: 3}
        """)
    res = invoke("run", case, "--format", "json")
    assert res.exit_code == 1, res.output
    rows = {(r["tensor"], r["form"]): r for r in json.loads(res.output)["cases"][0]["checks"]}
    bad = rows[("W", "correlation")]
    assert not bad["passed"] and bad["failed"] == 1 and bad["worst_index"] == [2, 1]
    assert bad["max_rel_error"] == pytest.approx(1e-4, rel=0.05)
    assert rows[("W", "kron")]["passed"] and rows[("W", "spray")]["passed"]

    table = invoke("run", case)
    assert table.exit_code == 1
    assert "worst entries" in table.output and "reproduce: gradcheck run" in table.output
    assert "[2, 1]" in table.output


def test_broken_case_is_one_line_and_exit_2(tmp_path):
    case = write(tmp_path, """
        input: [4, 6]
        layers:
          - type: linear
            out_features: 0
        """)
    res = CliRunner().invoke(main, ["run", str(case)])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "layers[0].out_features" in lines[0] and str(case) in lines[0]
    assert "Traceback" not in res.output


@pytest.mark.parametrize("text, expect", [
    ("input: [4\nlayers: []\n", ":2: broken YAML"),
    ("input: [4, 6]\nlayers:\n  - type: lineer\n", "did you mean `linear`"),
    ("input: [4, 6]\nlayers:\n  - {type: relu}\nloss: !!python/object/apply:os.system [ls]\n", "refused YAML tag"),
    ("input: [4, 6]\nlayer: []\n", "unknown field (did you mean `layers`?)"),
    ("- 1\n- 2\n", "top level must be a mapping"),
    ("", "empty file"),
])
def test_bad_input_messages(tmp_path, text, expect):
    res = invoke("run", write(tmp_path, text))
    assert res.exit_code == 2 and expect in res.output, res.output


def test_missing_file_exit_2(tmp_path):
    res = invoke("run", tmp_path / "nope.yaml")
    assert res.exit_code == 2 and "no such file" in res.output


def test_markdown_junit_and_arrays(tmp_path):
    case = ROOT / "cases" / "linear-mse.yaml"
    md, xml = tmp_path / "r.md", tmp_path / "r.xml"
    res = invoke("run", case, "--format", "markdown", "--output", md, "--junit-xml", xml,
                 "--save-arrays", tmp_path / "arrays")
    assert res.exit_code == 0, res.output
    assert "| layer | type | tensor | form |" in md.read_text()
    suite = ET.parse(xml).getroot()
    cases = suite.findall(".//testcase")
    assert len(cases) == int(suite.get("tests")) > 0 and not suite.findall(".//failure")
    z = np.load(tmp_path / "arrays" / "linear-mse.npz")
    for key in ("input", "target", "layer0.W", "layer1.w", "layer0.W.kron.analytic",
                "layer0.W.kron.numerical", "layer1.w.spray.analytic"):
        assert key in z.files, key
    np.testing.assert_allclose(z["layer0.W.kron.analytic"], z["layer0.W.kron.numerical"], rtol=1e-6)


def test_junit_reports_failures(tmp_path, temp_layer):
    temp_layer("wrong_linear", WrongLinear)
    case = write(tmp_path, "input: [3, 4]\nlayers:\n  - {type: wrong_linear, out_features: 3}\n")
    xml = tmp_path / "r.xml"
    assert invoke("run", case, "--junit-xml", xml).exit_code == 1
    failures = ET.parse(xml).getroot().findall(".//failure")
    rows = [f for f in failures if "[2, 1]" in f.get("message")]
    assert len(rows) == 1                       # the W row; the rest are the network check's
    assert all("<grad" in f.get("message") or f in rows for f in failures), [f.get("message") for f in failures]


def test_sample_checks_k_entries(tmp_path):
    case = write(tmp_path, "input: [6, 5]\nlayers:\n  - {type: linear, out_features: 4}\n")
    res = invoke("run", case, "--sample", 3, "--format", "json")
    rows = json.loads(res.output)["cases"][0]["checks"]
    assert res.exit_code == 0
    assert {r["tensor"]: r["checked"] for r in rows} == {"x": 3, "W": 3, "b": 3}


def test_list_shows_forms_and_na_reasons():
    res = invoke("list")
    assert res.exit_code == 0
    assert "linear:" in res.output and "n/a:" in res.output and "seed 001" in res.output
    assert "option out_features (required): number of outputs C" in res.output
    assert "option bias (default true): add b" in res.output


@pytest.mark.parametrize("name", sorted(layers()))
def test_new_prints_a_case_that_validates_and_passes(tmp_path, name):
    if name in ("torch", "jax"):
        pytest.importorskip(name, reason=f"the `{name}` layer's starter case needs {name} (optional extra)")
    res = invoke("new", name)
    assert res.exit_code == 0
    case = write(tmp_path, res.output)
    assert invoke("validate", case).exit_code == 0
    run = invoke("run", case)
    assert run.exit_code == 0, run.output


def test_new_unknown_layer_suggests():
    res = invoke("new", "lineer")
    assert res.exit_code == 2 and "linear" in res.output


def test_validate_reports_every_bad_file(tmp_path):
    write(tmp_path, "input: [2, 3]\nlayers:\n  - {type: relu}\n", "good.yaml")
    write(tmp_path, "input: [2, 3]\nlayers:\n  - {type: relu, slope: 1}\n", "bad.yaml")
    res = invoke("validate", tmp_path)
    assert res.exit_code == 2
    assert "ok:" in res.output and "layers[0].slope" in res.output


def test_version_and_help():
    assert invoke("--version").exit_code == 0
    for cmd in ("run", "list", "validate", "new"):
        res = invoke(cmd, "--help")
        assert res.exit_code == 0 and "Usage" in res.output


class WrongDxLinear(Linear):
    """A linear layer whose dL/dx (all forms) is off by 1e-3 relative at entry [0, 1]."""

    def backward(self, form_name, dy, x, params):
        g = super().backward(form_name, dy, x, params)
        g["x"] = g["x"].copy()
        g["x"][0, 1] *= 1 + 1e-3
        return g


def test_culprit_is_the_last_failing_layer(tmp_path, temp_layer):
    temp_layer("wrong_dx_linear", WrongDxLinear)
    case = write(tmp_path, """
        input: [3, 4]
        layers:
          - {type: linear, out_features: 5}
          - {type: tanh}
          - {type: wrong_dx_linear, out_features: 2}
        """)
    res = invoke("run", case, "--format", "json", "--mode", "network")
    doc = json.loads(res.output)["cases"][0]
    assert res.exit_code == 1
    assert doc["disagreement_starts_at"] == 2
    failing_layers = {r["layer"] for r in doc["checks"] if not r["passed"]}
    assert failing_layers == {0, 1, 2}          # its wrong dx reaches every layer before it
    assert {r["tensor"] for r in doc["checks"] if r["layer"] == 2 and not r["passed"]} == {"x"}
    table = " ".join(invoke("run", case, "--mode", "network").output.split())   # wrapped lines joined
    assert "wrong: layers[2].x" in table
    assert "the disagreement starts at layers[2] (wrong_dx_linear) (the layers before it fail too" in table
    local = json.loads(invoke("run", case, "--format", "json").output)["cases"][0]
    assert local["mode"] == "local"
    assert local["culprits"] == [{"layer": 2, "tensor": "x"}]       # the layers below pass alone
    assert {(r["layer"], r["tensor"]) for r in local["checks"] if not r["passed"]} == {(2, "x")}


def test_passing_case_has_no_culprit():
    res = invoke("run", ROOT / "cases" / "linear-mse.yaml", "--format", "json")
    assert json.loads(res.output)["cases"][0]["disagreement_starts_at"] is None


def test_layers_without_the_asked_form_are_named_not_dropped(tmp_path):
    case = write(tmp_path, "input: [3, 4]\nlayers:\n  - {type: tanh}\n  - {type: linear, out_features: 2}\n")
    res = invoke("run", case, "--form", "spray", "--format", "json")
    doc = json.loads(res.output)["cases"][0]
    assert res.exit_code == 0
    assert doc["unchecked_layers"] == [{"layer": 0, "type": "tanh"}]
    assert {r["layer"] for r in doc["checks"]} == {1}
    assert "not checked: layers[0] (tanh)" in invoke("run", case, "--form", "spray").output


def test_a_form_no_layer_has_is_bad_input(tmp_path):
    case = write(tmp_path, "input: [3, 4]\nlayers:\n  - {type: sigmoid}\n")
    res = invoke("run", case, "--form", "spray")
    assert res.exit_code == 2 and "forms: no layer of this case has the form(s) asked for (spray)" in res.output


def test_unwritable_output_is_one_line_exit_2(tmp_path):
    res = invoke("run", ROOT / "cases" / "linear-mse.yaml", "--format", "json",
                 "--output", tmp_path / "missing" / "r.json")
    assert res.exit_code == 2
    assert res.output.strip() == f"error: {tmp_path / 'missing' / 'r.json'}: No such file or directory"


class BrokenBuiltin(Linear):
    """Stands in for a bug inside gradcheck itself (not the user's code, not bad input)."""

    def forward(self, x, params):
        raise ValueError("shapes (3,4) and (5,2) not aligned")


def test_internal_error_is_exit_3_not_1(tmp_path, temp_layer, monkeypatch):
    monkeypatch.delenv("GRADCHECK_DEBUG", raising=False)
    temp_layer("broken_builtin", BrokenBuiltin)
    case = write(tmp_path, "input: [3, 4]\nlayers:\n  - {type: broken_builtin, out_features: 2}\n")
    res = invoke("run", case)
    assert res.exit_code == 3
    assert res.output.startswith("internal error: ValueError: shapes (3,4) and (5,2) not aligned")
    assert "Traceback" not in res.output


@pytest.mark.parametrize("array, expect", [
    (np.array(["a", "b"]), "input.data: x.npy holds <U1 values; real numbers are needed"),
    (np.array(1.0 + 2.0j).reshape(1, 1), "input.data: x.npy holds complex128 values"),
    (np.array(3.0), "input.data: expected a non-empty list of sizes"),
])
def test_unusable_npy_data_is_bad_input(tmp_path, array, expect):
    np.save(tmp_path / "x.npy", array)
    case = write(tmp_path, "input: {data: x.npy}\nlayers:\n  - {type: tanh}\n")
    for cmd in ("validate", "run"):
        res = invoke(cmd, case)
        assert res.exit_code == 2 and expect in res.output, (cmd, res.output)


@pytest.mark.parametrize("args, expect", [
    (["run", "--max-memory", "1e400"], "not a positive finite size"),
    (["sweep", "--plot", "p.xyz"], "--plot"),
    (["sweep", "--form", "spray"], "no layer of this case has the form asked for (spray)"),
])
def test_bad_options_are_exit_2(tmp_path, args, expect):
    case = write(tmp_path, "input: [2, 3]\nlayers:\n  - {type: sigmoid}\n")
    res = invoke(*args, case)
    assert res.exit_code == 2 and expect in res.output, res.output


def test_unchecked_layers_in_markdown_and_junit(tmp_path):
    case = write(tmp_path, "input: [3, 4]\nlayers:\n  - {type: tanh}\n  - {type: linear, out_features: 2}\n")
    md, xml = tmp_path / "r.md", tmp_path / "r.xml"
    res = invoke("run", case, "--form", "spray", "--format", "markdown", "--output", md, "--junit-xml", xml)
    assert res.exit_code == 0
    assert "Not checked: layers[0] (tanh)" in md.read_text()
    skipped = ET.parse(xml).getroot().findall(".//skipped")
    assert len(skipped) == 1 and "layers[0] (tanh)" in skipped[0].get("message")


def test_saved_arrays_never_overwrite_each_other(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        write(tmp_path / sub, "name: same/name\ninput: [2, 3]\nlayers:\n  - {type: tanh}\n")
    res = invoke("run", tmp_path, "--save-arrays", tmp_path / "out", "--format", "json")
    assert res.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["same_name-2.npz", "same_name.npz"]


def test_list_names_the_losses_and_new_prints_a_loss_starter(tmp_path):
    from gradcheck_cli.losses import LOSSES

    listed = invoke("list").output
    for name in LOSSES:
        assert f"loss {name}: " in listed
    res = invoke("new", "hinge")
    assert res.exit_code == 0 and "type: hinge" in res.output
    (tmp_path / "h.yaml").write_text(res.output, encoding="utf-8")
    assert invoke("run", tmp_path / "h.yaml").exit_code == 0
    bad = invoke("new", "hing")
    assert bad.exit_code == 2 and "did you mean `hinge`" in bad.output
