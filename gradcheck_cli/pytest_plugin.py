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

Options (as ``gradcheck run``'s): ``--gradcheck-sample K`` checks K random entries per tensor,
``--gradcheck-mode local|network``, ``--gradcheck-form F`` (repeatable) only these forms.
A case with ``slow: true`` is marked ``slow`` (``-m "not slow"`` deselects it) and
``--gradcheck-skip-slow`` skips it.
"""
from __future__ import annotations

import argparse
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


FORMS = ("kron", "correlation", "spray", "custom")


def _positive(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return k


def pytest_addoption(parser) -> None:
    group = parser.getgroup("gradcheck", "gradcheck case files")
    group.addoption("--gradcheck-sample", type=_positive, metavar="K",
                    help="check K random entries per tensor instead of all (as `gradcheck run --sample`)")
    group.addoption("--gradcheck-mode", choices=("local", "network"),
                    help="local or network (as `gradcheck run --mode`); default: the case's `mode:`, else local")
    group.addoption("--gradcheck-form", action="append", choices=FORMS, metavar="FORM",
                    help=f"check only this form (repeatable; one of {', '.join(FORMS)})")
    group.addoption("--gradcheck-skip-slow", action="store_true",
                    help="skip the cases marked `slow: true`")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: a gradcheck case with `slow: true` (deselect with -m 'not slow')")


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
        item = CaseItem.from_parent(self, name=case.name, case=case, error=None)
        if _is_slow(self.path):
            item.add_marker(pytest.mark.slow)
            if self.config.getoption("gradcheck_skip_slow"):
                item.add_marker(pytest.mark.skip(reason="slow: true (--gradcheck-skip-slow)"))
        yield item


def _is_slow(path: Path) -> bool:
    """Whether the case sets ``slow: true`` (the file has loaded, so it parses)."""
    from .yamlfile import parse_yaml, read_case_text

    doc = parse_yaml(read_case_text(path), str(path))
    return doc.get("slow") is True


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
            opt = self.config.getoption
            result = run_case(self.case, sample=opt("gradcheck_sample"), mode=opt("gradcheck_mode"),
                              forms=tuple(opt("gradcheck_form") or ()) or None)
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
        return self.path, 0, f"gradcheck case {self.name}"
