"""The pytest plugin: case files collected as items named after the case, failures that show the
worst entries, -k and xdist, YAML that is not a case left alone, bad cases as failing items.

The plugin is loaded with ``-p gradcheck_cli.pytest_plugin`` (installed, the pytest11 entry point
loads it). Every run is a subprocess: an inline run would re-import numpy's extension modules."""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import pytest

from gradcheck_cli import pytest_plugin

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
def _installed() -> bool:
    """Whether the pytest11 entry point loads the plugin already (the package is pip-installed)."""
    from importlib.metadata import entry_points

    return any(ep.value == "gradcheck_cli.pytest_plugin" for ep in entry_points(group="pytest11"))


# `-p` only when not installed: with the entry point too, pytest would register it twice
PLUGIN = (() if _installed() else ("-p", "gradcheck_cli.pytest_plugin")) + ("-p", "no:cacheprovider")
WORKFLOW = """\
name: gradients
on: [push]
jobs:
  check:
    runs-on: ubuntu-latest
    steps: [{run: "gradcheck run cases/"}]
"""
CONFIG = "model:\n  layers: 3\n  input: [2, 3]\n"            # `layers` not at the top: not a case
BAD = "name: bad-one\ninput: [2, 3]\nlayers:\n  - {type: linaer, out_features: 2}\n"


@pytest.fixture
def folder(pytester, monkeypatch):
    """One correct case, one buggy case (a custom layer missing its slope), two YAML non-cases."""
    shutil.copy(ROOT / "cases" / "linear-mse.yaml", pytester.path / "linear-mse.yaml")
    shutil.copy(ROOT / "examples" / "leaky-buggy.yaml", pytester.path / "leaky-buggy.yaml")
    shutil.copy(ROOT / "examples" / "my_layers_buggy.py", pytester.path / "my_layers_buggy.py")
    (pytester.path / ".github" / "workflows").mkdir(parents=True)
    (pytester.path / ".github" / "workflows" / "ci.yml").write_text(WORKFLOW, encoding="utf-8")
    (pytester.path / "config.yaml").write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return pytester.path


def run(pytester, *args, autoload: bool = False):
    """pytest in a subprocess with the plugin. Without ``autoload`` no other installed plugin is
    loaded (hypothesis, benchmark, xdist: a third of a second each to start, in every run)."""
    if autoload:
        return pytester.runpytest_subprocess(*PLUGIN, *map(str, args))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        return pytester.runpytest_subprocess("-p", "gradcheck_cli.pytest_plugin", "-p", "no:cacheprovider",
                                             *map(str, args))


def test_each_case_file_is_one_item_named_after_the_case(pytester, folder):
    (folder / "bad.yaml").write_text(BAD, encoding="utf-8")
    res = run(pytester, "--collect-only", "-q", folder / ".github", folder)
    ids = [ln for ln in res.outlines if "::" in ln]
    assert sorted(ids) == ["bad.yaml::bad", "leaky-buggy.yaml::leaky-relu-buggy", "linear-mse.yaml::linear-mse"]
    assert res.ret == 0                         # the bad case did not break collection


def test_one_pass_one_failure_showing_the_worst_entries(pytester, folder):
    res = run(pytester, folder)
    res.assert_outcomes(passed=1, failed=1)
    out = res.stdout.str()
    assert "gradients disagree" in out and "worst entries" in out and "wrong: layers[0].x" in out
    assert "[2, 0]" in out and "0.127746" in out                 # the worst entry, both sides
    assert "network check" in out                                 # local mode, the default
    assert "pytest_plugin.py" not in out                          # no plugin traceback


def test_k_selects_cases_by_name(pytester, folder):
    res = run(pytester, "-k", "mse", folder)
    res.assert_outcomes(passed=1, deselected=1)


def test_works_with_xdist(pytester, folder):
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (it is in the [test] extra)")
    res = run(pytester, "-p", "xdist.plugin", "-n", "2", folder)
    res.assert_outcomes(passed=1, failed=1)
    assert "worst entries" in res.stdout.str()


def test_a_bad_case_is_a_failing_item_with_one_line(pytester, folder):
    (folder / "bad.yaml").write_text(BAD, encoding="utf-8")
    res = run(pytester, "-k", "bad", folder)
    res.assert_outcomes(failed=1, deselected=2)
    out = res.stdout.str()
    assert "error: " in out and "layers[0].type" in out and "linear" in out
    assert "Traceback" not in out and "pytest_plugin.py" not in out


def test_the_rule_reads_only_a_top_level_layers_key(tmp_path):
    files = {"case.yaml": "input: [2]\nlayers:\n  - {type: relu}\n", "case.yml": "layers: []\n",
             "flow.yaml": "{layers: []}\n", "nested.yaml": CONFIG, "ci.yml": WORKFLOW,
             "data.npy": "layers:\n", "broken.yaml": "layers: [\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    found = {name for name in files if pytest_plugin.is_case_file(tmp_path / name)}
    assert found == {"case.yaml", "case.yml", "broken.yaml"}
    assert not pytest_plugin.is_case_file(tmp_path / "missing.yaml")


def test_every_case_in_the_repo_is_collected_and_passes(pytester, folder):
    """`pytest cases/ --gradcheck-sample 5`, the issue's command. Every entry of every case is
    checked by test_cli.py::test_cases_folder_passes_with_every_json_field (and CI's Quickstart)."""
    res = run(pytester, "-q", ROOT / "cases", "--gradcheck-sample", "5", autoload=True)   # as installed
    n = len(list((ROOT / "cases").glob("*.yaml")))
    res.assert_outcomes(passed=n)


def test_the_entry_point_names_the_plugin():
    tomllib = pytest.importorskip("tomllib")            # Python 3.11+
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["entry-points"]["pytest11"] == {"gradcheck": "gradcheck_cli.pytest_plugin"}
    assert callable(pytest_plugin.pytest_collect_file)
    # the repo's own run (testpaths = tests) holds no case file to collect a second time
    assert not [p for p in (ROOT / "tests").rglob("*.y*ml") if pytest_plugin.is_case_file(p)]


# ------------------------------------------------------------------------------------------
# options: --gradcheck-sample, --gradcheck-mode, --gradcheck-form, slow cases
# ------------------------------------------------------------------------------------------
def test_sample_mode_and_form_reach_the_check(pytester, folder):
    """`pytest <cases> --gradcheck-sample 5 ...`: the buggy case's failure report shows what was
    checked: 5 entries per tensor, in network mode (no loss row, no network check, which local
    mode prints: test_one_pass_one_failure_showing_the_worst_entries), the forms asked for
    (custom for layers[0], kron for the linear layer's x, W and b: 4 rows)."""
    res = run(pytester, "-k", "leaky", "--gradcheck-sample", "5", "--gradcheck-mode", "network",
              "--gradcheck-form", "custom", "--gradcheck-form", "kron", folder)
    res.assert_outcomes(failed=1, deselected=1)
    out = res.stdout.str()
    assert "5 sampled entries per tensor" in out and "1 of 4 checks fail" in out
    assert "network check" not in out
    res = run(pytester, "-k", "leaky", "--gradcheck-form", "spray", folder)
    res.assert_outcomes(failed=1, deselected=1)   # the network check still runs through its backward
    assert "not checked: layers[0] (custom) has none of the forms asked for" in res.stdout.str()


def test_bad_option_values_are_usage_errors(pytester, folder):
    for args in (("--gradcheck-sample", "0"), ("--gradcheck-mode", "both")):
        res = run(pytester, *args, folder)
        assert res.ret == pytest.ExitCode.USAGE_ERROR, args
        assert "gradcheck" in res.stderr.str()
    with pytest.raises(argparse.ArgumentTypeError, match="whole number"):
        pytest_plugin._positive("x")
    assert pytest_plugin._positive("3") == 3


def test_slow_cases_are_marked_and_skipped_on_request(pytester, folder):
    slow = (folder / "linear-mse.yaml").read_text(encoding="utf-8") + "slow: true\n"
    (folder / "linear-mse.yaml").write_text(slow, encoding="utf-8")
    run(pytester, "-k", "mse", "--gradcheck-skip-slow", folder).assert_outcomes(skipped=1, deselected=1)
    res = run(pytester, "-k", "mse", "-m", "not slow", folder)   # marked: deselected, nothing runs
    assert res.ret == pytest.ExitCode.NO_TESTS_COLLECTED and "2 deselected" in res.stdout.str()
    (folder / "linear-mse.yaml").write_text(slow.replace("slow: true", "slow: yes please"), encoding="utf-8")
    res = run(pytester, "-k", "mse", folder)
    res.assert_outcomes(failed=1, deselected=1)
    assert "slow: expected true or false" in res.stdout.str()
