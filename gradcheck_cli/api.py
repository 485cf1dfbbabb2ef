"""Python API: check a case from a script or a test.

    from gradcheck_cli import check_case, assert_gradients

    result = check_case("cases/my-layer.yaml")      # or a dict shaped like the YAML file
    result.passed, result.rows, result.arrays

    def test_my_layer():
        assert_gradients("cases/my-layer.yaml")      # AssertionError with the CLI's report
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .cases import Case, from_dict, load
from .check import run_case
from .results import CaseResult


def check_case(case: str | Path | Mapping[str, Any] | Case, *, base_dir: str | Path | None = None,
               sample: int | None = None, forms: tuple[str, ...] | None = None,
               mode: str | None = None) -> CaseResult:
    """Check one case and return its result (``.passed``, ``.rows``, ``.arrays``).

    ``case`` is a path to a YAML case, a dict with the same fields as the YAML file, or a loaded
    :class:`~gradcheck_cli.cases.Case`. For a dict, relative paths in it (``impl: my_layers.py:...``,
    ``.npy`` files) are found from ``base_dir`` (default: the working folder), and a custom
    layer's ``impl`` may also be the class itself (``"impl": LeakyReLU``).
    ``sample``, ``forms`` and ``mode`` are the CLI's ``--sample``, ``--form`` and ``--mode``.

    Bad input raises :class:`~gradcheck_cli.errors.GradcheckError` (``CaseError`` for the case,
    ``UserCodeError`` for a custom layer's code); a gradient mismatch is not an exception here:
    look at ``result.passed``.
    """
    if isinstance(case, Case):
        c = case
    elif isinstance(case, Mapping):
        c = from_dict(_with_object_refs(case), "<dict>", base_dir=Path(base_dir) if base_dir else Path.cwd(),
                      default_name=str(case.get("name", "case")))
    else:
        c = load(case)
    return run_case(c, sample=sample, forms=tuple(forms) if forms else None, mode=mode)


def _with_object_refs(case: Mapping[str, Any]) -> dict:
    """The dict with every custom layer's ``impl`` given as a class replaced by its reference."""
    from .layers.custom import object_ref

    doc = dict(case)
    if isinstance(doc.get("layers"), list):
        doc["layers"] = [{**layer, "impl": object_ref(layer["impl"])}
                         if isinstance(layer, Mapping) and isinstance(layer.get("impl"), type) else layer
                         for layer in doc["layers"]]
    return doc


def report(result: CaseResult) -> str:
    """The CLI's plain-text report of one result (the same renderer, no colour, at the width of
    ``COLUMNS`` or 80): a passing case is one line; a failing one shows its failing rows, the
    tensors named wrong, the worst entries and the reproduce line."""
    from .report import table

    return table.render_text([result])


def assert_gradients(case: str | Path | Mapping[str, Any] | Case, **kw: Any) -> CaseResult:
    """Check ``case`` like :func:`check_case`; raise AssertionError with the report if it fails.

    The message is the report ``gradcheck run`` prints: the failing rows, the tensors named wrong
    and the worst entries of every failing check. Returns the result when every check passes.
    """
    __tracebackhide__ = True   # pytest: show the failure at the caller
    result = check_case(case, **kw)
    if not result.passed:
        raise AssertionError("gradients disagree\n" + report(result))
    return result
