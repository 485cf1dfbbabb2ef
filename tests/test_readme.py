"""The README stays true: the Quickstart commands, and every registered layer in its table."""
from __future__ import annotations

from pathlib import Path

from gradcheck_cli.catalog import layers

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_quickstart_commands():
    assert "pip install -e . && gradcheck run cases/" in README
    assert "pip install -e '.[test]' && pytest" in README


def test_every_layer_is_in_the_forms_table():
    table = README.split("## Layers and gradient forms", 1)[1]
    missing = [name for name in layers() if f"`{name}`" not in table]
    assert not missing, f"README's layers x forms table lacks {missing}"
