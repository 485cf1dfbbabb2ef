"""Terminal output (rich): colour in a terminal, plain text when piped or NO_COLOR is set.

Default (glance) view: a passing case is one line (name, tensors and entries checked, largest
relative error, kinks, time); a failing case shows its failing rows, the tensors named wrong,
the worst entries and the reproduce line; a summary line ends the run. ``verbose`` shows every
row of every case (the full tables).

Every line fits the width (see :func:`terminal_width`): a table that is too wide first takes
narrow headings and abbreviations, then one space between columns, then leaves out its least
needed columns, and at last is printed as stacked "heading: value" records; a cell is never
wrapped. Notes, headers and the reproduce line are wrapped at word boundaries (the command with
shell continuations, so it still pastes).
"""
from __future__ import annotations

import os
import shutil
import sys
from typing import TextIO

from ..results import CaseResult, Row
from . import culprit_line, fmt, reproduce, reproduce_argv, seconds_text, totals, wrong_line
from .layout import Col, Line, command, grid, plain, records, stack, table, wrap

DEFAULT_WIDTH = 80          # when neither COLUMNS nor a terminal says otherwise (POSIX's default)
MIN_WIDTH = 40
ABBREV = {"correlation": "corr", "correlation1d": "corr1d", "abc_conv2d": "abc2d"}


def terminal_width(file: TextIO | None = None) -> int:
    """The width to fit: ``COLUMNS`` when set to a number, else the terminal's width when
    ``file`` is a terminal, else 80. Never less than 40."""
    file = file or sys.stdout
    cols = os.environ.get("COLUMNS", "").strip()
    if cols.isdigit() and int(cols) > 0:
        return max(int(cols), MIN_WIDTH)
    if hasattr(file, "isatty") and file.isatty():
        try:
            return max(os.get_terminal_size(file.fileno()).columns, MIN_WIDTH)
        except (OSError, ValueError, AttributeError):
            return max(shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns, MIN_WIDTH)
    return DEFAULT_WIDTH


def console(file: TextIO | None = None, width: int | None = None):
    """A rich Console that writes plain text unless ``file`` is a colour-capable terminal.

    ``width``: what ``render`` fits (``gradcheck run`` passes :func:`terminal_width`). Left None,
    the terminal's width, or 140 when ``file`` is not a terminal: what ``gradcheck sweep``'s table
    has always had (its eps columns do not fit 80)."""
    from rich.console import Console

    file = file or sys.stdout
    tty = hasattr(file, "isatty") and file.isatty()
    plain_text = not tty or "NO_COLOR" in os.environ
    return Console(file=file, no_color=plain_text, color_system=None if plain_text else "auto",
                   force_terminal=False if plain_text else None, width=width or (None if tty else 140),
                   highlight=False, emoji=False, soft_wrap=True)


def render(results: list[CaseResult], con, verbose: bool = False) -> None:
    """Print the results on ``con`` at its width."""
    from rich.text import Text

    for line in lines(results, con.width, verbose):
        con.print(Text.assemble(*line) if line else "")


def render_text(results: list[CaseResult], width: int | None = None, verbose: bool = False,
                summary_line: bool = True) -> str:
    """The same output as plain text (the Python API's and the pytest plugin's messages)."""
    out = lines(results, width or terminal_width(), verbose, summary_line)
    return "".join(plain(ln).rstrip() + "\n" for ln in out)


# ------------------------------------------------------------------------------------------
# the whole output
# ------------------------------------------------------------------------------------------
def lines(results: list[CaseResult], width: int, verbose: bool = False, summary_line: bool = True) -> list[Line]:
    """Every line of the output, each at most ``width`` cells (the summary line last)."""
    width = max(width, MIN_WIDTH)
    out: list[Line] = []
    glance = [] if verbose else [r for r in results if r.passed]
    one_line = dict(zip(map(id, glance), case_lines(glance, width)))
    for r in results:
        if id(r) in one_line:          # a passing case: its line, and what it left unchecked
            out += one_line[id(r)] + unchecked(r, width)
        else:
            out += case_block(r, width, verbose) + [[]]
    return out + summary(results, width) if summary_line else out[:-1] if out and not out[-1] else out


def case_lines(results: list[CaseResult], width: int) -> list[list[Line]]:
    """One line per passing case, aligned across cases (a list of lines per case: a single line
    unless the width is below what any single-line layout needs)."""
    if not results:
        return []
    stats = [totals(r) for r in results]
    rel = [fmt(max((row.max_rel_error for row in r.checks), default=0)) for r in results]
    cols = [Col("", ["PASS"] * len(results), styles=["bold green"] * len(results)),
            Col("", [r.name for r in results], shrink=12),
            Col("", [f"{t} tensors" for t, _, _ in stats], right=True, drop=3),
            Col("", [f"{e} entries" for _, e, _ in stats], right=True),
            Col("", [f"max rel {x}" for x in rel], compact=[f"rel {x}" for x in rel]),
            Col("", [f"{k} kinks" for _, _, k in stats], right=True, drop=2),
            Col("", [seconds_text(r.seconds) for r in results], right=True, drop=1)]
    drawn = grid(cols, width, indent="", header=False)
    if drawn is not None:
        return [[ln] for ln in drawn]
    return [records([_row(c, k) for c in cols[1:]], width, indent="") for k in range(len(results))]


def _row(c: Col, k: int) -> Col:
    """Column ``c`` with its k-th cell only."""
    pick = (lambda xs: None if xs is None else xs[k:k + 1])
    return Col(c.head, c.cells[k:k + 1], c.right, c.short, pick(c.compact), c.drop, c.shrink, pick(c.styles))


def summary(results: list[CaseResult], width: int) -> list[Line]:
    """"N of M cases passed; K of R checks passed; time"."""
    n_fail = sum(not r.passed for r in results)
    rows = sum(len(r.checks) + len(r.composition) for r in results)
    bad = sum(not row.passed for r in results for row in [*r.checks, *r.composition])
    return stack([("", f"{len(results) - n_fail} of {len(results)} cases passed", "bold red" if n_fail else "bold"),
                  ("; ", f"{rows - bad} of {rows} checks passed", ""),
                  ("; ", seconds_text(sum(r.seconds for r in results)), "")], width)


def case_block(r: CaseResult, width: int, verbose: bool) -> list[Line]:
    """A case's tables: every row (verbose), else its failing rows and what tells the bug."""
    out = header(r, width)
    shown = r.checks if verbose else [row for row in r.checks if not row.passed]
    if not verbose:
        n = len(r.checks) + len(r.composition)
        bad = sum(not x.passed for x in [*r.checks, *r.composition])
        out += wrap(f"{bad} of {n} checks fail:", width)
    if shown:
        out += rows_table(shown, width, verdict=verbose)
    directions = r.composition if verbose else [d for d in r.composition if not d.passed]
    if directions and r.culprits and not verbose:      # implied by the wrong tensors: one line
        out += wrap(f"network check: {len(directions)} of {len(r.composition)} directions fail "
                    f"(follows from the wrong tensors; -v shows them)", width)
    elif directions:
        out += composition_table(directions, width)
    out += unchecked(r, width)
    if verbose and r.agreement:
        a = max(r.agreement, key=lambda a: a.max_rel_diff)
        out += wrap(f"forms agree to {fmt(a.max_abs_diff)} (relative {fmt(a.max_rel_diff)}), "
                    f"largest at layers[{a.layer}].{a.tensor}", width, "  ")
    if not r.passed:
        out += failure(r, width)
    return out


def unchecked(r: CaseResult, width: int) -> list[Line]:
    """A line per layer that none of the forms asked for checks."""
    return [ln for i, kind in r.unchecked
            for ln in wrap(f"not checked: layers[{i}] ({kind}) has none of the forms asked for", width, "  ")]


def header(r: CaseResult, width: int) -> list[Line]:
    """"PASS|FAIL name (file) · dtype · seed · rtol · atol", stacked over lines when too long."""
    verdict = ("PASS", "bold green") if r.passed else ("FAIL", "bold red")
    segs = [("", verdict[0], verdict[1]), (" ", r.name, "bold"), (" ", f"({r.file})", ""),
            (" · ", r.dtype, ""), (" · ", f"seed {r.seed}", ""), (" · ", f"rtol {r.rtol:g}", ""),
            (" · ", f"atol {r.atol:g}", "")]
    if r.sample:
        segs.append((" · ", f"{r.sample} sampled entries per tensor", ""))
    return stack(segs, width)


def failure(r: CaseResult, width: int) -> list[Line]:
    """What tells the bug: the tensors named wrong, the worst entries, the reproduce line."""
    out: list[Line] = []
    if wrong_line(r):
        out += wrap(wrong_line(r), width, style="bold")
    explain = culprit_line(r)
    if r.mode == "network" and explain and "fail too" in explain:
        out += wrap(explain, width, "  ")
    failing = [row for row in r.checks if not row.passed]
    if any(row.worst for row in failing):
        out.append([("worst entries", "bold")])
        out += worst_table(failing, width)
    argv = reproduce_argv(r)
    out += command(argv, width, prefix="reproduce:") if argv else wrap(f"reproduce: {reproduce(r)}", width)
    return out


# ------------------------------------------------------------------------------------------
# the tables
# ------------------------------------------------------------------------------------------
def _abbrev(words: list[str]) -> list[str]:
    return [ABBREV.get(w, w) for w in words]


def _index(ix, compact: bool = False) -> str:
    text = str(list(ix))
    return text.replace(" ", "") if compact else text


def rows_table(rows: list[Row], width: int, verdict: bool) -> list[Line]:
    """One line per row (check, type, form, shape, counts, errors, worst index, kinks); a row's
    note on the lines below it."""
    cols = [Col("check", [r.label for r in rows]),
            Col("type", [r.type for r in rows], compact=_abbrev([r.type for r in rows]), drop=4),
            Col("form", [r.form for r in rows], compact=_abbrev([r.form for r in rows])),
            Col("shape", ["x".join(map(str, r.shape)) for r in rows], drop=3),
            Col("checked", [str(r.checked) for r in rows], right=True, short="n", drop=5),
            Col("failed", [str(r.failed) for r in rows], right=True, short="fail"),
            Col("max abs err", [fmt(r.max_abs_error) for r in rows], right=True, short="abs err", drop=1),
            Col("max rel err", [fmt(r.max_rel_error) for r in rows], right=True, short="rel err"),
            Col("worst index", [_index(r.worst_index) for r in rows], short="worst at",
                compact=[_index(r.worst_index, True) for r in rows]),
            Col("kinks", [str(r.kinks) for r in rows], right=True, drop=2)]
    if verdict:
        cols.append(Col("verdict", ["pass" if r.passed else "FAIL" for r in rows],
                        styles=["green" if r.passed else "bold red" for r in rows]))
    drawn = grid(cols, width)
    if drawn is None:
        return records(cols, width)
    out, head = drawn[:2], drawn[2:]
    for row, line in zip(rows, head):
        out.append(line)
        if row.note and not row.passed:
            out += wrap(f"note: {row.note}", width, "   ", style="yellow")
        if row.diagnosis is not None and not row.passed:
            out += wrap(f"diagnosis ({row.diagnosis.kind}): {row.diagnosis.text}", width, "   ", style="cyan")
    return out


def merged_worst(failing: list[Row]) -> list[tuple[Row, list[str]]]:
    """The failing rows with their forms merged where a tensor's worst entries are the same in
    several forms (a wrong layer usually is wrong in every form alike): (row, forms)."""
    out: list[tuple[Row, list[str]]] = []
    for row in failing:
        same = next((item for item in out if item[0].label == row.label
                     and _shown(item[0].worst) == _shown(row.worst)), None)
        if same:
            same[1].append(row.form)
        else:
            out.append((row, [row.form]))
    return out


def _shown(entries) -> list[tuple]:
    """Worst entries as printed (forms that differ only in rounding print the same)."""
    return [(e.index, f"{e.analytic:.6g}", f"{e.numerical:.6g}") for e in entries]


def worst_table(failing: list[Row], width: int) -> list[Line]:
    """Up to five failing entries per failing row: analytic and numerical side by side (forms
    with the same worst entries share their lines)."""
    items = [(row, forms, e) for row, forms in merged_worst(failing) for e in row.worst]
    return table([Col("tensor", [row.label for row, _, _ in items]),
                  Col("form", [",".join(f) for _, f, _ in items], compact=[",".join(_abbrev(f)) for _, f, _ in items]),
                  Col("index", [_index(e.index) for *_, e in items], compact=[_index(e.index, True) for *_, e in items]),
                  Col("analytic", [f"{e.analytic:.6g}" for *_, e in items], right=True),
                  Col("numerical", [f"{e.numerical:.6g}" for *_, e in items], right=True),
                  Col("abs err", [fmt(e.abs_error) for *_, e in items], right=True, drop=1),
                  Col("rel err", [fmt(e.rel_error) for *_, e in items], right=True)], width)


def composition_table(directions, width: int) -> list[Line]:
    """The whole-network check: <grad L, d> against the loss's central difference along d."""
    return [[("network check (the whole loss along seeded directions)", "bold")]] + table(
        [Col("check", [d.label for d in directions]),
         Col("form", [d.form for d in directions], compact=_abbrev([d.form for d in directions])),
         Col("analytic", [f"{d.analytic:.6g}" for d in directions], right=True),
         Col("numerical", [f"{d.numerical:.6g}" for d in directions], right=True),
         Col("abs err", [fmt(d.abs_error) for d in directions], right=True, drop=2),
         Col("rel err", [fmt(d.rel_error) for d in directions], right=True),
         Col("tolerance", [fmt(d.tolerance) for d in directions], right=True, short="tol", drop=1),
         Col("verdict", ["pass" if d.passed else "FAIL" for d in directions],
             styles=["green" if d.passed else "bold red" for d in directions])], width)
