"""Renderers of check results: table (terminal), json, markdown, junit; arrays to .npz."""
from __future__ import annotations

import shlex
from pathlib import Path

from ..results import CaseResult


def fmt(x: float) -> str:
    """A number for tables: 3 significant digits, exponent when small or large."""
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def reproduce_argv(result: CaseResult) -> list[str] | None:
    """The command that reruns this case and keeps its arrays, as argv (None: the case was a
    dict given to the Python API, which no command line reruns)."""
    if result.file == "<dict>":
        return None
    cmd = ["gradcheck", "run", result.file]
    if result.sample:
        cmd += ["--sample", str(result.sample)]
    return cmd + ["--save-arrays", "gradcheck-arrays"]


def reproduce(result: CaseResult) -> str:
    """One command line that reruns this case and keeps its arrays."""
    argv = reproduce_argv(result)
    if argv is None:     # a case given to the Python API as a dict
        return (f"check_case(<the same dict>, sample={result.sample}) gives the same result "
                f"(seed {result.seed}); its .arrays hold the inputs, parameters and gradients")
    return " ".join(shlex.quote(c) for c in argv)


def wrong_line(result: CaseResult) -> str:
    """The tensors named wrong, "wrong: layers[1].x, layers[3].W" ("" when none is)."""
    return "wrong: " + ", ".join(f"layers[{i}].{t}" for i, t in result.culprits) if result.culprits else ""


def totals(result: CaseResult) -> tuple[int, int, int]:
    """(tensors, entries, kinks) of a case: each tensor counted once however many forms check it
    (its entries and kinks: the most any of its forms counted)."""
    per: dict[tuple[int, str], tuple[int, int]] = {}
    for r in result.rows:
        e, k = per.get((r.layer, r.tensor), (0, 0))
        per[(r.layer, r.tensor)] = (max(e, r.checked), max(k, r.kinks))
    return len(per), sum(e for e, _ in per.values()), sum(k for _, k in per.values())


def seconds_text(s: float) -> str:
    """A wall time: "0.05 s", "12.3 s", "2 min 5 s"."""
    if s < 10:
        return f"{s:.2f} s"
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {int(round(s % 60))} s"


def culprit_line(result: CaseResult) -> str:
    """Where the disagreement starts, for the failure summary ("" when the case passed)."""
    k = result.culprit
    if k is None:
        return ""
    kind = next(r.type for r in result.rows if r.layer == k)
    before = " (the layers before it fail too: they receive its gradient)" if any(
        not r.passed for r in result.rows if r.layer < k) else ""
    return f"the disagreement starts at layers[{k}] ({kind}){before}"


def save_arrays(results: list[CaseResult], folder: str | Path) -> list[Path]:
    """One ``<folder>/<case name>.npz`` per case.

    The name is made safe for a file name (anything but letters, digits, ``.``, ``_`` and ``-``
    becomes ``_``), and a name that two cases share gets ``-2``, ``-3``, ... in case order, so
    no case overwrites another's arrays.
    """
    import re

    import numpy as np

    from ..outfiles import open_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths, seen = [], {}
    for r in results:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", r.name).lstrip(".") or "case"
        seen[stem] = seen.get(stem, 0) + 1
        p = folder / (f"{stem}.npz" if seen[stem] == 1 else f"{stem}-{seen[stem]}.npz")
        with open_atomic(p, "wb") as fh:
            np.savez(fh, **r.arrays)
        paths.append(p)
    return paths
