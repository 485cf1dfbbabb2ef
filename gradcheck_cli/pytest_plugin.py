"""pytest plugin: ``pytest cases/`` collects every gradcheck case file as one test item.

Registered through the ``pytest11`` entry point, so it is active wherever gradcheck is installed
(``-p gradcheck_cli.pytest_plugin`` loads it without installing; ``-p no:gradcheck`` turns it off).

Collection rule: a ``.yaml`` / ``.yml`` file is a gradcheck case when a line of it starts with
``layers:`` (a top-level ``layers`` key in block style, which every case has). Other YAML files -- CI
workflows, configs -- are never parsed, collected or errored on. The item's name is the case's
``name`` (the file's stem when it has none), so ``-k`` selects cases by name; pytest-xdist spreads
the items like any other. A case that does not load (a schema error) is still one item, which fails
with the one-line message ``gradcheck run`` would print; a case whose gradients disagree fails with
its failing rows, the tensors named wrong and the worst entries.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

CASE_MARK = re.compile(rb"^layers[ \t]*:", re.M)
MAX_SNIFF = 1 << 20         # a case file is small; a bigger YAML file is read only this far


def is_case_file(path: Path) -> bool:
    """Whether ``path`` is a gradcheck case by the collection rule (never raises)."""
    if path.suffix not in (".yaml", ".yml"):
        return False
    try:
        with open(path, "rb") as fh:
            return bool(CASE_MARK.search(fh.read(MAX_SNIFF)))
    except OSError:
        return False


def pytest_collect_file(file_path: Path, parent):
    if is_case_file(file_path):
        return CaseFile.from_parent(parent, path=file_path)
    return None


class CaseFile(pytest.File):
    """A case file: one item, named after the case."""

    def collect(self):
        from .cases import load
        from .errors import GradcheckError

        try:
            case = load(self.path)
        except GradcheckError as exc:
            yield CaseItem.from_parent(self, name=self.path.stem, case=None, error=str(exc))
            return
        yield CaseItem.from_parent(self, name=case.name, case=case, error=None)


class CaseFailed(Exception):
    """The case's gradients disagree (carries the result for the report)."""

    def __init__(self, result) -> None:
        super().__init__(result.name)
        self.result = result


class BadCase(Exception):
    """The case does not load or run: the one-line message of ``gradcheck run``."""


class CaseItem(pytest.Item):
    def __init__(self, *, case, error: str | None, **kw) -> None:
        super().__init__(**kw)
        self.case, self.error = case, error

    def runtest(self) -> None:
        from .check import run_case
        from .errors import GradcheckError

        if self.error is not None:
            raise BadCase(self.error)
        start = time.perf_counter()
        try:
            result = run_case(self.case)
        except GradcheckError as exc:
            raise BadCase(str(exc)) from None
        if not result.seconds:
            result.seconds = time.perf_counter() - start
        if not result.passed:
            raise CaseFailed(result)

    def repr_failure(self, excinfo, style=None):
        """The failing rows, the tensors named wrong, the worst entries; or the one-line error."""
        if isinstance(excinfo.value, CaseFailed):
            from .report import table

            return "gradients disagree\n" + table.render_text([excinfo.value.result], summary_line=False)
        if isinstance(excinfo.value, BadCase):
            return f"error: {excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"gradcheck case {self.name}"
