"""The README and the documentation site stay true: the Quickstart commands, a README of one or two
screens whose links resolve, every registered layer in the forms table, every page in the site's
nav, the README's examples run, and `mkdocs build --strict` passes without torch or jax.

(The output blocks: tests/test_api.py reads the leaky-buggy output, the pytest example and the
user-code errors wherever their marker is; tests/test_torch_layer.py reads docs/torch.md.)
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gradcheck_cli.catalog import layers
from gradcheck_cli.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"
MARKER = re.compile(r"<!-- ((?:output|case)[^>]*?|[\w-]+-example) -->")


def block(marker: str, text: str = README) -> str:
    """The first fenced block after ``<!-- marker -->`` in ``text``."""
    m = re.compile(r"```\w*\n(.*?)```", re.S).search(text, text.index(f"<!-- {marker} -->"))
    assert m, marker
    return m.group(1)


def test_quickstart_commands():
    assert "pip install -e . && gradcheck run cases/" in README
    assert "pip install -e '.[test]' && pytest" in README


def test_readme_fits_one_or_two_screens():
    assert len(README.splitlines()) <= 200


def test_readme_links_resolve():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [ln for ln in links if "://" not in ln]
    assert local and not [ln for ln in local if not (ROOT / ln).exists()]
    pages = {p.name for p in DOCS.glob("*.md")}
    linked = {Path(ln).name for ln in local if ln.startswith("docs/") and ln.endswith(".md")}
    assert linked == pages - {"index.md"}, (pages - {"index.md"}) ^ linked   # the README indexes the site


def test_every_layer_is_in_the_forms_table():
    table = (DOCS / "layers.md").read_text(encoding="utf-8")
    missing = [name for name in layers() if f"`{name}`" not in table]
    assert not missing, f"docs/layers.md's layers x forms table lacks {missing}"


def _nav_pages(nav) -> list[str]:
    out = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        out += _nav_pages(value) if isinstance(value, list) else [value]
    return out


def test_every_page_is_in_the_nav():
    """A page of another branch fails here until it is added to mkdocs.yml's nav (see its comment)."""
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *a: None)   # Material's !!python/name
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    nav = _nav_pages(config["nav"])
    assert sorted(nav) == sorted(p.name for p in DOCS.glob("*.md"))


def test_each_tested_block_has_one_home():
    """A block a test reads is in exactly one file (the others include it with a snippet)."""
    seen: dict[str, list[str]] = {}
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for m in MARKER.finditer(page.read_text(encoding="utf-8")):
            seen.setdefault(m.group(1), []).append(page.name)
    assert {m for m, where in seen.items() if len(where) > 1} == set()
    assert {"output: gradcheck run examples/leaky-buggy.yaml", "pytest-example", "output: user-code errors",
            "output: gradcheck run examples/torch/cnn-buggy.yaml", "torch-example", "jax-example"} <= set(seen)


# ------------------------------------------------------------------------------------------
# the README's examples run
# ------------------------------------------------------------------------------------------
def test_readme_case_is_the_example_file():
    shown = yaml.safe_load(block("case: examples/leaky-buggy.yaml"))
    assert {"seed": 0, **shown} == yaml.safe_load((ROOT / "examples" / "leaky-buggy.yaml").read_text())


def test_readme_functions_example_runs(tmp_path, monkeypatch):
    (tmp_path / "case.yaml").write_text(block("functions-example"), encoding="utf-8")
    shutil.copy(ROOT / "examples" / "cs231n" / "layers.py", tmp_path / "layers.py")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["run", "case.yaml"])
    assert res.exit_code == 0, res.output
    assert "layers[0].w" in CliRunner().invoke(main, ["run", "case.yaml", "-v"]).output


def test_readme_ci_step_runs(tmp_path, monkeypatch):
    (step,) = yaml.safe_load(block("ci-example"))
    argv = step["run"].split()
    (tmp_path / "cases").mkdir()
    shutil.copy(ROOT / "cases" / "linear-mse.yaml", tmp_path / "cases")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, argv[1:])
    assert argv[:3] == ["gradcheck", "run", "cases/"] and res.exit_code == 0, res.output
    assert all((tmp_path / argv[argv.index(opt) + 1]).is_file() for opt in ("--junit-xml", "--html"))


@pytest.mark.parametrize("name, folder, module", [("torch-example", "torch", "my_modules"),
                                                  ("jax-example", "jax", "my_layers")])
def test_readme_framework_examples_run(name, folder, module, monkeypatch):
    pytest.importorskip(folder, reason=f"{folder} is an optional extra ([{folder}])")
    monkeypatch.syspath_prepend(str(ROOT / "examples" / folder))
    monkeypatch.delitem(sys.modules, module, raising=False)
    namespace: dict = {}
    exec(compile(block(name), f"README.md:{name}", "exec"), namespace)
    tests = [f for n, f in namespace.items() if n.startswith("test_")]
    assert len(tests) == 1
    tests[0]()                                             # raises AssertionError if gradients disagree


# ------------------------------------------------------------------------------------------
# the site builds, strictly, without importing torch or jax
# ------------------------------------------------------------------------------------------
def test_mkdocs_build_strict_imports_no_framework(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is in the [docs] extra")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is in the [docs] extra")
    pytest.importorskip("material", reason="mkdocs-material is in the [docs] extra")
    fake = tmp_path / "fake"
    fake.mkdir()
    for name in ("torch", "jax"):            # importing either would fail the build
        (fake / f"{name}.py").write_text(f"raise ImportError('the docs build imported {name}')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(ROOT)]), "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for obj in ("gradcheck_cli.api.check_case", "gradcheck_cli.torch.assert_module_gradients",
                "gradcheck_cli.jax.assert_function_gradients"):
        assert f'id="{obj}"' in api, obj
    assert 'class="arithmatex"' in (tmp_path / "site" / "layers" / "index.html").read_text(encoding="utf-8")
