"""Terminal tables (rich): colour in a terminal, plain text when piped or NO_COLOR is set."""
from __future__ import annotations

import os
import sys
from typing import TextIO

from ..check import CaseResult
from . import culprit_line, fmt, reproduce


def console(file: TextIO | None = None):
    """A rich Console that writes plain text unless ``file`` is a colour-capable terminal."""
    from rich.console import Console

    file = file or sys.stdout
    tty = hasattr(file, "isatty") and file.isatty()
    plain = not tty or "NO_COLOR" in os.environ
    return Console(file=file, no_color=plain, color_system=None if plain else "auto",
                   force_terminal=False if plain else None, width=None if tty else 140,
                   highlight=False, emoji=False, soft_wrap=False)


def render(results: list[CaseResult], con) -> None:
    from rich import box
    from rich.table import Table

    for r in results:
        verdict = "[bold green]PASS[/]" if r.passed else "[bold red]FAIL[/]"
        con.print(f"{verdict} [bold]{r.name}[/] ({r.file}) · {r.dtype} · seed {r.seed} · "
                  f"rtol {r.rtol:g} · atol {r.atol:g}"
                  + (f" · {r.sample} sampled entries per tensor" if r.sample else ""))
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for col, just in (("layer", "right"), ("type", "left"), ("tensor", "left"), ("form", "left"),
                          ("shape", "left"), ("checked", "right"), ("max abs err", "right"),
                          ("max rel err", "right"), ("worst index", "left"), ("failed", "right"),
                          ("kinks", "right"), ("verdict", "left")):
            t.add_column(col, justify=just)
        for row in r.rows:
            t.add_row(str(row.layer), row.type, row.tensor, row.form, "x".join(map(str, row.shape)),
                      str(row.checked), fmt(row.max_abs_error), fmt(row.max_rel_error),
                      str(list(row.worst_index)), str(row.failed), str(row.kinks),
                      "[green]pass[/]" if row.passed else f"[red]FAIL[/] {row.note}".rstrip())
        con.print(t)
        for i, kind in r.unchecked:
            con.print(f"  not checked: layers[{i}] ({kind}) has none of the forms asked for")
        if r.agreement:
            a = max(r.agreement, key=lambda a: a.max_rel_diff)
            con.print(f"  forms agree to {fmt(a.max_abs_diff)} (relative {fmt(a.max_rel_diff)}), "
                      f"largest at layers[{a.layer}].{a.tensor}")
        failing = [row for row in r.rows if not row.passed]
        if failing:
            w = Table(title="worst entries", box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
            for col in ("tensor", "form", "index", "analytic", "numerical", "abs err", "rel err"):
                w.add_column(col, justify="left" if col in ("tensor", "form", "index") else "right")
            for row in failing:
                for e in row.worst:
                    w.add_row(row.label, row.form, str(list(e.index)), f"{e.analytic:.6g}",
                              f"{e.numerical:.6g}", fmt(e.abs_error), fmt(e.rel_error))
            con.print(w)
            con.print(f"  {culprit_line(r)}")
            con.print(f"  reproduce: {reproduce(r)}")
        con.print()
    n_fail = sum(not r.passed for r in results)
    rows = sum(len(r.rows) for r in results)
    bad_rows = sum(not row.passed for r in results for row in r.rows)
    con.print(f"{len(results) - n_fail} of {len(results)} cases passed; "
              f"{rows - bad_rows} of {rows} checks passed")
