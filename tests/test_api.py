"""Python API (gradcheck_cli/api.py), the README's pytest and CI examples, and `run --jobs`."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import gradcheck_cli
from gradcheck_cli import assert_gradients, check_case
from gradcheck_cli.cli import main
from gradcheck_cli.errors import CaseError, UserCodeError

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
UL = Path(__file__).parent / "user_layers"


# ------------------------------------------------------------------------------------------
# check_case / assert_gradients
# ------------------------------------------------------------------------------------------
def test_check_case_from_a_path():
    r = check_case(EXAMPLES / "leaky.yaml")
    assert r.passed and r.name == "leaky-relu"
    assert [(row.layer, row.tensor, row.form) for row in r.rows][:1] == [(0, "x", "custom")]
    a, n = r.arrays["layer0.x.custom.analytic"], r.arrays["layer0.x.custom.numerical"]
    assert a.shape == n.shape == (4, 6)
    np.testing.assert_allclose(a, n, rtol=1e-6, atol=1e-9)


def test_check_case_from_a_dict_finds_impl_from_base_dir():
    d = {"input": [3, 4], "layers": [{"type": "custom", "impl": "my_layers.py:LeakyReLU"}]}
    assert check_case(d, base_dir=EXAMPLES).passed
    with pytest.raises(UserCodeError, match="impl file not found"):
        check_case(d, base_dir=UL)


def test_impl_may_be_the_class_itself():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ex_buggy", EXAMPLES / "my_layers_buggy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    d = {"input": [3, 4], "layers": [{"type": "custom", "impl": mod.LeakyReLU, "options": {"slope": 0.3}}]}
    with pytest.raises(AssertionError, match="worst entries"):
        assert_gradients(d)
    assert d["layers"][0]["impl"] is mod.LeakyReLU                    # the caller's dict is untouched
    d["layers"][0]["impl"] = type("Fixed", (mod.LeakyReLU,), {
        "backward": lambda self, dy, x, params: {"x": dy * np.where(x > 0, 1.0, self.slope)}})
    assert check_case(d).passed


class _RaisesInBackward:
    def init_params(self, input_shape, rng):
        return {}

    def forward(self, x, params):
        return 2 * x

    def backward(self, dy, x, params):
        return {"x": dy @ x}                                          # shapes do not match


def test_frames_of_a_class_given_as_an_object_are_shown():
    with pytest.raises(UserCodeError) as exc:
        check_case({"input": [3, 4], "layers": [{"type": "custom", "impl": _RaisesInBackward}]})
    msg = str(exc.value)
    assert re.match(r"<dict>: layers\[0\] \(custom <[\w.]*_RaisesInBackward>\): backward raised ValueError", msg)
    assert 'test_api.py:' in msg and 'in backward: return {"x": dy @ x}' in msg
    assert "gradcheck_cli" not in msg


def test_an_object_reference_is_not_a_path_to_anything():
    d = {"input": [3, 4], "layers": [{"type": "custom", "impl": "<never.Given>"}]}
    with pytest.raises(UserCodeError, match="is not FILE.py:Class"):
        check_case(d)


def test_check_case_sample_and_forms():
    r = check_case(ROOT / "cases" / "linear-mse.yaml", sample=2, forms=("spray",))
    assert {row.form for row in r.rows} == {"spray"} and all(row.checked <= 2 for row in r.rows)


def test_check_case_bad_input_raises_case_error():
    with pytest.raises(CaseError, match="layers"):
        check_case({"input": [3, 4]})


def test_a_mismatch_is_a_result_not_an_exception():
    r = check_case(EXAMPLES / "leaky-buggy.yaml")
    assert not r.passed and not r.rows[0].passed


def test_assert_gradients_returns_the_result_when_it_passes():
    assert assert_gradients(EXAMPLES / "leaky.yaml").passed


def test_assert_gradients_fails_with_the_cli_table():
    with pytest.raises(AssertionError) as exc:
        assert_gradients(EXAMPLES / "leaky-buggy.yaml")
    res = CliRunner().invoke(main, ["run", str(EXAMPLES / "leaky-buggy.yaml")])
    assert res.exit_code == 1
    msg = str(exc.value)
    assert untimed(msg) == untimed("gradients disagree\n" + res.stdout)     # the very same report
    assert "worst entries" in msg and "layers[0].x" in msg


def untimed(text: str) -> str:
    """The output with its wall times ("0.05 s") blanked: the one thing two runs may differ in."""
    return re.sub(r"\b\d+(\.\d+)? s\b|\d+ min \d+ s", "<t>", text)


def test_api_is_exported_lazily():
    code = "import sys, gradcheck_cli; assert 'numpy' not in sys.modules; print(gradcheck_cli.__all__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert gradcheck_cli.check_case is check_case
    with pytest.raises(AttributeError):
        gradcheck_cli.no_such_name  # noqa: B018


# ------------------------------------------------------------------------------------------
# the README's (and the docs') examples, extracted from where they are and run
# ------------------------------------------------------------------------------------------
def readme_block(marker: str, lang: str) -> str:
    """The first ```lang block after the comment <!-- marker --> in README.md or a docs/ page."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = next(t for t in (p.read_text(encoding="utf-8") for p in pages) if f"<!-- {marker} -->" in t)
    at = text.index(f"<!-- {marker} -->")
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, at)
    assert m, f"no ```{lang} block after {marker}"
    return m.group(1)


def _pytest(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rN",
                           "--rootdir", str(folder), str(folder)], capture_output=True, text=True,
                          cwd=folder, env=env)


def test_readme_pytest_example_runs(tmp_path):
    code = readme_block("pytest-example", "python")
    assert len(code.strip().splitlines()) <= 12
    (tmp_path / "test_my_layers.py").write_text(code, encoding="utf-8")
    shutil.copy(EXAMPLES / "my_layers.py", tmp_path / "my_layers.py")
    out = _pytest(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"\b[1-9]\d* passed", out.stdout)
    # the same test on the buggy layer fails, showing the worst entries
    shutil.copy(EXAMPLES / "my_layers_buggy.py", tmp_path / "my_layers.py")
    out = _pytest(tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "gradients disagree" in out.stdout and "worst entries" in out.stdout


def test_readme_github_actions_job_runs(tmp_path, monkeypatch):
    wf = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text(encoding="utf-8"))  # docs/ci.md shows it
    steps = next(iter(wf["jobs"].values()))["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    cmd = next(r for r in runs if r.lstrip().startswith("gradcheck run"))
    args = shlex.split(cmd)
    assert args[:3] == ["gradcheck", "run", "cases/"] and "--junit-xml" in args
    junit = args[args.index("--junit-xml") + 1]
    (tmp_path / "cases").mkdir()
    for f in ("fc-batch-l2.yaml", "linear-mse.yaml"):          # two small cases stand in for yours
        shutil.copy(ROOT / "cases" / f, tmp_path / "cases" / f)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, args[1:])
    assert res.exit_code == 0, res.output
    suites = ET.parse(tmp_path / junit).getroot()
    assert suites.tag == "testsuites" and int(suites.get("tests")) > 0
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and junit in uploads[0]["with"]["path"]
    for name in re.findall(r"cat (\S+) >>", "\n".join(runs)):       # the step summary's file exists
        assert (tmp_path / name).is_file(), name


def _lines(text: str) -> list[str]:
    return [" ".join(ln.split()) for ln in text.splitlines() if ln.strip()]


def test_readme_sample_output_is_real(monkeypatch):
    monkeypatch.chdir(ROOT)
    res = CliRunner().invoke(main, ["run", "examples/leaky-buggy.yaml"], env={"COLUMNS": "80"})
    assert res.exit_code == 1
    got = _lines(res.stdout)
    for line in _lines(readme_block("output: gradcheck run examples/leaky-buggy.yaml", "")):
        assert line in got, line


def test_readme_error_messages_are_real(tmp_path, monkeypatch):
    shutil.copy(UL / "broken.py", tmp_path / "broken.py")
    monkeypatch.chdir(tmp_path)
    shown = _lines(readme_block("output: user-code errors", ""))
    got = []
    for cls in re.findall(r"custom broken.py:(\w+)\)", "\n".join(shown)):
        Path("case.yaml").write_text("input: [3, 4]\nlayers:\n  - {type: linear, out_features: 4}\n"
                                     f"  - {{type: custom, impl: 'broken.py:{cls}'}}\n", encoding="utf-8")
        res = CliRunner().invoke(main, ["run", "case.yaml"])
        assert res.exit_code == 2
        got += _lines(res.stderr)
    assert shown == got


# ------------------------------------------------------------------------------------------
# --jobs: same output, same order, same bytes
# ------------------------------------------------------------------------------------------
@pytest.fixture
def suite(tmp_path) -> Path:
    """Passing and failing cases, built-in and custom, in one folder."""
    d = tmp_path / "suite"
    d.mkdir()
    for f in ("fc-batch-l2.yaml", "linear-mse.yaml"):
        shutil.copy(ROOT / "cases" / f, d / f)
    for f in ("my_layers.py", "my_layers_buggy.py", "leaky.yaml", "leaky-buggy.yaml"):
        shutil.copy(EXAMPLES / f, d / f)
    conv = {"name": "conv", "seed": 4, "input": [2, 2, 5, 5],
            "layers": [{"type": "custom", "impl": f"{UL / 'conv.py'}:Conv2d",
                        "options": {"stride": 2, "padding": 1}}, {"type": "tanh"}]}
    (d / "conv.yaml").write_text(yaml.safe_dump(conv), encoding="utf-8")
    return d


def _run(args, cwd: Path):
    res = CliRunner().invoke(main, ["run", *map(str, args)])
    return res.exit_code, res.stdout, res.stderr


def test_jobs_gives_the_same_bytes_as_a_serial_run(suite, tmp_path):
    outs = {}
    for jobs in ("1", "2"):
        xml, arrays = tmp_path / f"j{jobs}.xml", tmp_path / f"arrays{jobs}"
        code, table, err = _run([suite, "--jobs", jobs, "--junit-xml", xml, "--save-arrays", arrays], tmp_path)
        _, js, _ = _run([suite, "-j", jobs, "--format", "json"], tmp_path)
        npz = {f.name: dict(np.load(f)) for f in sorted(arrays.iterdir())}
        outs[jobs] = (code, untimed(table), err, js, xml.read_bytes(), npz)
    one, two = outs["1"], outs["2"]
    assert one[:5] == two[:5]
    assert one[5].keys() == two[5].keys() and all(
        a.keys() == two[5][f].keys() and all(np.array_equal(a[k], two[5][f][k], equal_nan=True) for k in a)
        for f, a in one[5].items())
    code, table, err, js, *_ = two
    assert code == 1 and err == ""
    names = [c["name"] for c in json.loads(js)["cases"]]
    assert names == ["conv", "fc-batch-l2", "leaky-relu-buggy", "leaky-relu", "linear-mse"]  # file order
    assert "FAIL leaky-relu-buggy" in table


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_jobs_reports_the_first_error_like_a_serial_run(suite, tmp_path, monkeypatch, start):
    from gradcheck_cli import cli_runtime

    monkeypatch.setattr(cli_runtime, "_START", start)
    # fails only when run (backward), so the error comes from a worker process
    bad = {"name": "bad", "input": [3, 4], "layers": [{"type": "custom", "impl": f"{UL / 'broken.py'}:BackwardRaises"}]}
    (suite / "b-bad.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    serial = _run([suite], tmp_path)
    parallel = _run([suite, "--jobs", "2"], tmp_path)
    assert serial == parallel
    assert serial[0] == 2 and serial[1] == ""
    assert serial[2].startswith(f"error: {suite / 'b-bad.yaml'}: layers[0] (custom ")
    assert "backward raised RuntimeError: not written yet" in serial[2]


def test_jobs_must_be_positive(suite):
    res = CliRunner().invoke(main, ["run", str(suite), "--jobs", "0"])
    assert res.exit_code == 2
