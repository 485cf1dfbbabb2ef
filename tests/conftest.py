"""Shared fixtures: cases from dicts, and test-only layers that are removed afterwards."""
from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import settings

# CI replays the same examples every run (a red CI is then a regression, not a new draw); a
# developer's run keeps drawing new ones (HYPOTHESIS_PROFILE=ci to replay CI's).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI") or os.environ.get("HYPOTHESIS_PROFILE") == "ci":
    settings.load_profile("ci")

from gradcheck_cli import registry
from gradcheck_cli.cases import from_dict
from gradcheck_cli.layers.dense import Linear
from gradcheck_cli.registry import form


def linear_off_by(at: tuple[int, int], rel: float) -> type:
    """A linear layer whose correlation-form dL/dW is off by a relative ``rel`` at entry ``at``
    (the kron and spray forms stay right): a deliberately wrong gradient for tests."""

    class WrongLinear(Linear):
        @form("correlation", seed="test: a deliberately wrong gradient")
        def correlation(self, dy, x, params):
            g = super().correlation(dy, x, params)
            g["W"] = g["W"].copy()
            g["W"][at] *= 1 + rel
            return g

    return WrongLinear


@pytest.fixture
def make_case(tmp_path):
    """Build a validated Case from keyword fields (as in the YAML file)."""

    def make(**doc):
        return from_dict(doc, str(tmp_path / "case.yaml"), base_dir=tmp_path)

    return make


@pytest.fixture
def temp_layer():
    """Register Layer classes under test-only names; they are unregistered at teardown."""
    added: list[str] = []

    def add(name, cls):
        registry.register(name)(cls)
        added.append(name)
        return cls

    yield add
    for name in added:
        with contextlib.suppress(KeyError):
            del registry.LAYERS[name]


@pytest.fixture(autouse=True)
def _not_in_github_actions(monkeypatch):
    """The suite's own runs print no annotations and write no job summary, also when the suite
    itself runs in GitHub Actions (tests/test_github.py turns them on where it means to)."""
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
