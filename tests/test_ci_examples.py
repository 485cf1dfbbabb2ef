"""The CI files shipped for users: examples/ci/ (GitLab CI) and .pre-commit-hooks.yaml run as written.
(examples/ci/github-actions.yml: tests/test_api.py::test_readme_github_actions_job_runs.)"""
from __future__ import annotations

import re
import shlex
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml
from click.testing import CliRunner

from gradcheck_cli.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ("fc-batch-l2.yaml", "linear-mse.yaml")          # two small cases stand in for a project's


def _project(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "cases").mkdir()
    for f in SMALL:
        shutil.copy(ROOT / "cases" / f, tmp_path / "cases" / f)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_gitlab_job_writes_its_junit_report_and_artifacts(tmp_path, monkeypatch):
    job = yaml.safe_load((ROOT / "examples" / "ci" / "gitlab-ci.yml").read_text(encoding="utf-8"))["gradients"]
    cmd = shlex.split(next(c for c in job["script"] if c.startswith("gradcheck run")))
    _project(tmp_path, monkeypatch)
    res = CliRunner().invoke(main, cmd[1:])
    assert res.exit_code == 0, res.output
    report = job["artifacts"]["reports"]["junit"]
    assert ET.parse(tmp_path / report).getroot().tag == "testsuites"
    for path in job["artifacts"]["paths"]:
        assert (tmp_path / path).exists(), path
    assert job["artifacts"]["when"] == "always"               # kept when the job fails too


def test_pre_commit_hook_runs_on_the_changed_cases(tmp_path, monkeypatch):
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert {"id", "name", "entry", "language"} <= set(hook) and hook["id"] == "gradcheck"
    files = re.compile(hook["files"])                           # pre-commit uses re.search
    picked = [p for p in ("cases/a.yaml", "sub/cases/b.yml", "cases/data/x.npy", ".github/workflows/ci.yml",
                          "mycases/c.yaml", "cases.yaml") if files.search(p)]
    assert picked == ["cases/a.yaml", "sub/cases/b.yml"]
    _project(tmp_path, monkeypatch)
    argv = shlex.split(hook["entry"]) + [f"cases/{f}" for f in SMALL]    # pre-commit appends the files
    res = CliRunner().invoke(main, argv[1:])
    assert res.exit_code == 0, res.output
    assert all(Path(f).stem in res.output for f in SMALL)


def test_pre_commit_config_example_uses_the_hook():
    config = yaml.safe_load((ROOT / "examples" / "ci" / "pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = [h for repo in config["repos"] for h in repo["hooks"]]
    assert hooks[0]["id"] == "gradcheck" and re.compile(hooks[0]["files"]).search("tests/gradients/x.yaml")
    local = hooks[1]
    assert local["entry"].startswith("gradcheck run ") and local["pass_filenames"] is False
