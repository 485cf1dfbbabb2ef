"""Renderers of check results: table (terminal), json, markdown, junit; arrays to .npz."""
from __future__ import annotations

import shlex
from pathlib import Path

from ..check import CaseResult


def fmt(x: float) -> str:
    """A number for tables: 3 significant digits, exponent when small or large."""
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def reproduce(result: CaseResult) -> str:
    """One command line that reruns this case and keeps its arrays."""
    if result.file == "<dict>":     # a case given to the Python API as a dict
        return (f"check_case(<the same dict>, sample={result.sample}) gives the same result "
                f"(seed {result.seed}); its .arrays hold the inputs, parameters and gradients")
    cmd = ["gradcheck", "run", result.file]
    if result.sample:
        cmd += ["--sample", str(result.sample)]
    cmd += ["--save-arrays", "gradcheck-arrays"]
    return " ".join(shlex.quote(c) for c in cmd)


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
