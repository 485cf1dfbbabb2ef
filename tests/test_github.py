"""GitHub Actions (gradcheck_cli/report/github.py): annotations at the layer's line, the job summary."""
from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import linear_off_by

from gradcheck_cli.cli import main
from gradcheck_cli.report import github
from gradcheck_cli.results import CaseResult, Direction

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ERROR = re.compile(r"^::error (?P<props>[^:]*)::(?P<msg>.*)$")


def run(*args, env=None):
    env = {"GITHUB_ACTIONS": None, "GITHUB_STEP_SUMMARY": None, "COLUMNS": "80", **(env or {})}
    return CliRunner().invoke(main, ["run", *map(str, args)], env=env)


def errors(text: str) -> list[dict]:
    """The ::error lines of ``text``, each as its properties plus ``msg``."""
    out = []
    for line in text.splitlines():
        m = ERROR.match(line)
        if m:
            props = dict(p.split("=", 1) for p in m["props"].split(","))
            out.append({**props, "msg": m["msg"]})
    return out


def line_of(path: Path, pattern: str, nth: int = 0) -> int:
    """The 1-based line of the nth line of ``path`` matching ``pattern``."""
    hits = [k for k, ln in enumerate(path.read_text().splitlines(), 1) if re.search(pattern, ln)]
    return hits[nth]


@pytest.fixture
def buggy_custom(tmp_path, monkeypatch):
    """A case whose third layer is the buggy LeakyReLU, written with comments and flow style."""
    shutil.copy(EXAMPLES / "my_layers_buggy.py", tmp_path / "my_layers_buggy.py")
    case = tmp_path / "net.yaml"
    case.write_text(textwrap.dedent("""\
        # a comment, so that line numbers are not just the order of keys
        name: net
        input: [4, 6]
        mode: network
        layers:
          - {type: linear, out_features: 5}

          - type: tanh
          # the layer under test
          - type: custom
            impl: my_layers_buggy.py:LeakyReLU
            options: {slope: 0.2}
        loss: mse
        """))
    monkeypatch.chdir(tmp_path)
    return case


def test_each_failing_row_points_at_its_layer_and_the_user_class(buggy_custom, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    res = run("net.yaml", env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert res.exit_code == 1, res.output
    doc = json.loads(run("net.yaml", "--format", "json").stdout)["cases"][0]
    failing = [r for r in doc["checks"] if not r["passed"]]
    assert {r["layer"] for r in failing} == {0, 1, 2}      # network mode: the layers below fail too
    got = errors(res.stdout)
    at_case = [e for e in got if e["file"] == "net.yaml"]
    at_code = [e for e in got if e["file"] == "my_layers_buggy.py"]
    assert len(at_case) == len(failing) and len(got) == len(failing) + 1   # + the user class, once
    lines = {0: line_of(buggy_custom, r"type: linear"), 1: line_of(buggy_custom, r"type: tanh"),
             2: line_of(buggy_custom, r"type: custom")}
    for row, e in zip(failing, at_case):
        assert int(e["line"]) == lines[row["layer"]]
        assert e["title"] == f"gradcheck%3A layers[{row['layer']}].{row['tensor']} wrong"
        assert f"form {row['form']}" in e["msg"]
    assert [int(e["line"]) for e in at_code] == [line_of(tmp_path / "my_layers_buggy.py", r"^class LeakyReLU")]
    assert "starts at layers[2]" in at_case[0]["msg"]
    md = run("net.yaml", "--format", "markdown").stdout
    assert summary.read_text() == "earlier step\n" + md       # appended, not overwritten


def test_built_in_layer_line_and_no_code_annotation(tmp_path, temp_layer, monkeypatch):
    temp_layer("wrong_linear", linear_off_by((2, 1), 1e-4))
    (tmp_path / "c.yaml").write_text("input: [5, 4]\nlayers:\n  - {type: relu}\n  - {type: wrong_linear, out_features: 3}\n")
    monkeypatch.chdir(tmp_path)
    got = errors(run("c.yaml", "--annotations", "github").stdout)
    assert [(e["file"], e["line"]) for e in got] == [("c.yaml", "4")]
    assert "worst at [2, 1]" in got[0]["msg"] and "form correlation" in got[0]["msg"]


def test_off_outside_github_and_with_none(buggy_custom, tmp_path):
    summary = tmp_path / "s.md"
    assert not errors(run("net.yaml").stdout)
    res = run("net.yaml", "--annotations", "none", env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert res.exit_code == 1 and not errors(res.stdout) and not summary.exists()


def test_passing_run_writes_the_summary_and_no_annotation(tmp_path):
    summary = tmp_path / "s.md"
    res = run(ROOT / "cases" / "linear-mse.yaml", env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert res.exit_code == 0 and "::error" not in res.output
    assert summary.read_text().startswith("## linear-mse — PASS")


def test_machine_formats_keep_stdout_clean(buggy_custom):
    res = run("net.yaml", "--format", "json", env={"GITHUB_ACTIONS": "true"})
    json.loads(res.stdout)                                   # nothing but the JSON
    assert errors(res.stderr)


def test_escaping():
    line = github.command("a: b, c", "50% done\nnext", "dir/x,y.yaml", 3)
    assert line == "::error file=dir/x%2Cy.yaml,line=3,title=a%3A b%2C c::50%25 done%0Anext"
    assert github.command("t", "m", "<dict>", None) == "::error title=t::m"


def test_wiring_failure_points_at_layers_key(tmp_path):
    case = tmp_path / "w.yaml"
    case.write_text("name: w\ninput: [2, 3]\n\nlayers:\n  - {type: tanh}\n")
    bad = Direction("kron", 0, 1.0, 1.1, 0.1, 0.1, 1e-6, False)
    r = CaseResult("w", str(case), 0, "float64", 1e-6, 1e-9, [], [], 0, mode="local", composition=[bad])
    (e,) = errors("\n".join(github.annotations([r])))
    assert e["line"] == "4" and "wiring" in e["msg"]


def test_summary_over_the_limit_keeps_the_failing_cases(monkeypatch):
    passing = CaseResult("ok", "ok.yaml", 0, "float64", 1e-6, 1e-9, [], [], 0)
    failing = CaseResult("bad", "bad.yaml", 0, "float64", 1e-6, 1e-9, [], [], 0,
                         composition=[Direction("kron", 0, 1.0, 1.1, 0.1, 0.1, 1e-6, False)])
    monkeypatch.setattr(github, "SUMMARY_LIMIT", 900)
    text = github.summary_text([passing] * 20 + [failing])
    assert "## bad — FAIL" in text and "## ok" not in text and "20 passing cases left out" in text


def test_locate_module_impl():
    file, line = github.locate("gradcheck_cli.layers.custom_example:LeakyReLU", ROOT)
    assert file.endswith("custom_example.py") and "class LeakyReLU" in Path(file).read_text().splitlines()[line - 1]
    assert github.locate("no_such_module_xyz:Thing", ROOT) is None
    assert github.locate("not an impl", ROOT) is None


def test_bad_case_is_annotated_at_its_layer(tmp_path, monkeypatch):
    (tmp_path / "bad.yaml").write_text("input: [2, 3]\nlayers:\n  - {type: relu}\n  - {type: linear, out_features: -2}\n")
    (tmp_path / "broken.yaml").write_text("input: [2, 3]\nlayers:\n  - {type: relu\n")
    monkeypatch.chdir(tmp_path)
    for name, line in (("bad.yaml", "4"), ("broken.yaml", "4")):
        res = run(name, env={"GITHUB_ACTIONS": "true"})
        (e,) = errors(res.stdout)
        assert res.exit_code == 2 and (e["file"], e["line"]) == (name, line)
        assert e["msg"] in res.stderr                        # the one-line error, unchanged
    assert not errors(run("bad.yaml").stdout)              # outside GitHub Actions: nothing
