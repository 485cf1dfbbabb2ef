"""GitHub Actions: an ``::error`` annotation per failing row, the markdown report in the job summary.

On when ``gradcheck run --annotations github`` is given, or by default (``auto``) when the run is
inside GitHub Actions (``GITHUB_ACTIONS=true``). Each failing row prints one line

    ::error file=cases/x.yaml,line=7,title=gradcheck: layers[1].W wrong::...

at the line of its layer in the case file (``layers[i]``; the loss's row at ``loss:``, a failing
network check with no tensor named wrong at ``layers:``), and a row of a layer that runs the
user's code (``custom``, ``torch``, ``jax``, ``functions``; the ``function`` loss) one more at the
class or function its ``impl`` names. The markdown report (report/markdown.py) is appended to the
file ``$GITHUB_STEP_SUMMARY`` names, which GitHub shows on the run's summary page.

Line numbers come from the case file's text (YAML node marks): cases.py is not involved, and the
user's code is not run again (a file ``impl`` is read with ``ast``; a module one is looked up
with ``inspect`` when it is already imported).
"""
from __future__ import annotations

import ast
import contextlib
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from ..results import CaseResult
from . import fmt

MODES = ("auto", "github", "none")
USER_TYPES = ("custom", "torch", "jax", "functions")
SUMMARY_LIMIT = 1_000_000       # GitHub refuses a step summary over 1 MiB


def enabled(mode: str | None) -> bool:
    """Whether annotations are printed: ``github`` always, ``none`` never, ``auto`` (the default)
    when ``GITHUB_ACTIONS`` is ``true``."""
    if mode == "github":
        return True
    return mode in (None, "auto") and os.environ.get("GITHUB_ACTIONS") == "true"


def publish(results: list[CaseResult], mode: str | None, to_stderr: bool = False) -> None:
    """Print the annotations of ``results`` and append the markdown report to the job summary
    (when ``enabled(mode)``). ``to_stderr``: stdout carries a report in JSON or markdown, which
    the annotation lines must not break (the runner reads workflow commands from both streams)."""
    if not enabled(mode):
        return
    for line in annotations(results):
        click.echo(line, err=to_stderr)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(summary_text(results))


def bad_input(exc: Exception) -> str | None:
    """The ``::error`` line for a case file that does not load (exit 2) when ``GITHUB_ACTIONS``
    is ``true``: at the line the error names, else at the line of the layer its field is in."""
    from ..errors import CaseError

    if not enabled("auto") or not isinstance(exc, CaseError) or exc.file.startswith("<"):
        return None
    line = exc.line
    m = re.match(r"layers\[(\d+)\]", exc.field or "")
    if line is None and m:
        line = CaseLines.read(exc.file).layer(int(m[1]))
    elif line is None and (exc.field or "").startswith("loss"):
        line = CaseLines.read(exc.file).loss
    return command("gradcheck: bad case", str(exc), exc.file, line)


def summary_text(results: list[CaseResult]) -> str:
    """The markdown report; over GitHub's 1 MiB limit, only the failing cases (and then cut)."""
    from .markdown import render

    text = render(results)
    if len(text.encode()) <= SUMMARY_LIMIT:
        return text
    failing = [r for r in results if not r.passed]
    note = f"\n{len(results) - len(failing)} passing cases left out (GitHub's summary limit is 1 MiB).\n"
    text = render(failing) + note
    if len(text.encode()) > SUMMARY_LIMIT:
        text = text.encode()[:SUMMARY_LIMIT - 200].decode(errors="ignore") + "\n\n(cut at 1 MiB)\n"
    return text


# ------------------------------------------------------------------------------------------
# the annotations
# ------------------------------------------------------------------------------------------
def annotations(results: list[CaseResult]) -> list[str]:
    """One ``::error`` line per failing row (two for a user layer's row), in report order."""
    out = []
    for r in results:
        where = CaseLines.read(r.file)
        for row in r.checks:
            if row.passed:
                continue
            title = f"gradcheck: {row.label} wrong"
            msg = f"{r.name}: {_row_message(row, r)}"
            out.append(command(title, msg, r.file, where.loss if row.is_loss else where.layer(row.layer)))
            code = where.code(row.layer, loss=row.is_loss) if row.is_loss or row.type in USER_TYPES else None
            if code:
                out.append(command(title, f"{msg} (case {r.file})", *code))
        if not r.culprits and any(not d.passed for d in r.composition):
            failed = sum(not d.passed for d in r.composition)
            out.append(command("gradcheck: network check fails", f"{r.name}: {failed} of "
                               f"{len(r.composition)} directions fail while every layer passes alone: "
                               "the layers are right, their wiring is not", r.file, where.layers))
    return out


def _row_message(row, r: CaseResult) -> str:
    shape = "x".join(map(str, row.shape))
    text = (f"{row.label} ({row.type}, form {row.form}, shape {shape}): {row.failed} of {row.checked} "
            f"entries disagree, max rel err {fmt(row.max_rel_error)}")
    if row.worst:
        e = row.worst[0]
        text += f"; worst at {list(e.index)}: analytic {e.analytic:.6g}, numerical {e.numerical:.6g}"
    if row.note:
        text += f" ({row.note})"
    if r.mode == "network" and r.culprit is not None and row.layer < r.culprit:
        text += f"; the disagreement starts at layers[{r.culprit}], whose gradient this layer receives"
    return text


def command(title: str, message: str, file: str | None, line: int | None) -> str:
    """``::error file=F,line=N,title=T::M``, each part escaped as GitHub's toolkit escapes it."""
    props = []
    if file and not file.startswith("<"):
        props.append(f"file={_prop(_shown(file))}")
        if line:
            props.append(f"line={line}")
    props.append(f"title={_prop(title)}")
    return f"::error {','.join(props)}::{_data(message)}"


def _data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(s: str) -> str:
    return _data(s).replace(":", "%3A").replace(",", "%2C")


def _shown(path: str) -> str:
    """A path relative to the working directory (GitHub's workspace) when it lies inside it."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    with contextlib.suppress(ValueError):
        return p.relative_to(Path.cwd()).as_posix()
    return p.as_posix()


# ------------------------------------------------------------------------------------------
# where things are: lines in the case file, the user's class or function
# ------------------------------------------------------------------------------------------
class CaseLines:
    """Line numbers (1-based) of a case file's ``layers:``, each ``layers[i]`` and ``loss:``, and
    the ``impl`` (or ``backward``) each user layer names. Unknown parts are None."""

    def __init__(self, file: str, layers: int | None = None, items: list | None = None,
                 loss: Any = None) -> None:
        self.file, self.layers_key, self.items, self.loss_key = file, layers, items or [], loss

    @classmethod
    def read(cls, file: str) -> "CaseLines":
        """From the case file's node graph (the file loaded as a case before: its size, nesting
        and aliases are bounded already); one composition, no second load for the values."""
        if not file or file.startswith("<"):
            return cls(file)
        try:
            import yaml

            root = yaml.compose(Path(file).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        except Exception:   # noqa: BLE001 - a line number is a courtesy: without one, no line=
            return cls(file)
        layers, loss = _field(root, "layers"), _field(root, "loss")
        items = list(layers[1].value) if layers and layers[1].tag.endswith(":seq") else []
        return cls(file, layers[0] if layers else None, items, loss)

    @property
    def layers(self) -> int | None:
        return _line(self.layers_key)

    @property
    def loss(self) -> int | None:
        return _line(self.loss_key[0]) if self.loss_key else None

    def layer(self, i: int) -> int | None:
        return _line(self.items[i]) if 0 <= i < len(self.items) else self.layers

    def code(self, i: int, loss: bool = False) -> tuple[str, int] | None:
        """(Python file, line) of the class or function a user layer (or the loss) names."""
        doc = (self.loss_key[1] if self.loss_key else None) if loss else \
            (self.items[i] if 0 <= i < len(self.items) else None)
        impl = _field(doc, "backward") or _field(doc, "impl")
        if not impl or not impl[1].tag.endswith(":str"):
            return None
        return locate(impl[1].value, Path(self.file).resolve().parent)


def _field(node: Any, key: str) -> tuple[Any, Any] | None:
    """(key node, value node) of ``key`` in a mapping node; None elsewhere."""
    if node is None or not node.tag.endswith(":map"):
        return None
    return next(((k, v) for k, v in node.value if k.tag.endswith(":str") and k.value == key), None)


def _line(node: Any) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def locate(impl: str, base: Path) -> tuple[str, int] | None:
    """(file, line) of what ``impl`` (``FILE.py:Name`` or ``package.module:Name``) names: from the
    imported module with inspect when there is one, else from the source with ast."""
    where, sep, name = impl.rpartition(":")
    if not sep or not where or not name.isidentifier():
        return None
    path = base / where
    if where.endswith(".py") or "/" in where or path.is_file():
        return _find_def(path.resolve(), name)
    module = sys.modules.get(where)
    obj = getattr(module, name, None)
    if obj is not None:
        with contextlib.suppress(TypeError, OSError):
            return inspect.getsourcefile(obj), inspect.getsourcelines(obj)[1]
    import importlib.util

    try:
        spec = importlib.util.find_spec(where)
    except (ImportError, ValueError):
        return None
    return _find_def(Path(spec.origin), name) if spec and spec.origin else None


def _find_def(path: Path, name: str) -> tuple[str, int] | None:
    """The line of ``class name`` or ``def name`` at the top level of ``path`` (None if absent)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return str(path), node.lineno
    return None
