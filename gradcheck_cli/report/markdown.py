"""Markdown report: one table per case, worst entries and a reproduce line on failure."""
from __future__ import annotations

from ..results import CaseResult
from . import culprit_line, fmt, reproduce, wrong_line

HEAD = ("layer", "type", "tensor", "form", "shape", "checked", "max abs err", "max rel err",
        "worst index", "failed", "kinks", "verdict", "note")


def _line(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def composition(r: CaseResult) -> list[str]:
    """The whole-network check's rows: <grad L, d> against the loss's difference along d."""
    head = ("check", "form", "analytic", "numerical", "abs err", "rel err", "tolerance", "verdict")
    out = ["\nNetwork check (the whole loss along seeded directions):\n", _line(head), _line(["---"] * len(head))]
    for d in r.composition:
        out.append(_line([d.label, d.form, f"{d.analytic:.6g}", f"{d.numerical:.6g}", fmt(d.abs_error),
                          fmt(d.rel_error), fmt(d.tolerance), "pass" if d.passed else "**FAIL**"]))
    return out


def diagnoses(r: CaseResult) -> list[str]:
    """The diagnosis of each failing row, under the table (a markdown table has no room below a row)."""
    rows = [row for row in r.checks if not row.passed and row.diagnosis is not None]
    return ([""] + [f"- Diagnosis of {row.label} ({row.form}), `{row.diagnosis.kind}`: {row.diagnosis.text}"
                    for row in rows]) if rows else []


def render(results: list[CaseResult]) -> str:
    out = []
    for r in results:
        out.append(f"## {r.name} — {'PASS' if r.passed else 'FAIL'}\n")
        out.append(f"`{r.file}` · {r.dtype} · seed {r.seed} · rtol {r.rtol:g} · atol {r.atol:g}\n")
        out.append(_line(HEAD))
        out.append(_line(["---"] * len(HEAD)))
        for row in r.checks:
            out.append(_line([row.layer, row.type, row.tensor, row.form, "x".join(map(str, row.shape)),
                              row.checked, fmt(row.max_abs_error), fmt(row.max_rel_error),
                              list(row.worst_index), row.failed, row.kinks,
                              "pass" if row.passed else "**FAIL**", row.note.replace("|", "\\|")]))
        out += diagnoses(r)
        if r.composition:
            out += composition(r)
        for i, kind in r.unchecked:
            out.append(f"\nNot checked: layers[{i}] ({kind}) has none of the forms asked for.")
        if r.agreement:
            a = max(r.agreement, key=lambda a: a.max_rel_diff)
            out.append(f"\nLargest difference between forms: {fmt(a.max_abs_diff)} "
                       f"(relative {fmt(a.max_rel_diff)}) at layers[{a.layer}].{a.tensor}.")
        failing = [row for row in r.checks if not row.passed]
        if failing:
            out.append("\n### Worst entries\n")
            out.append(_line(("tensor", "form", "index", "analytic", "numerical", "abs err", "rel err")))
            out.append(_line(["---"] * 7))
            for row in failing:
                for e in row.worst:
                    out.append(_line([row.label, row.form, list(e.index), f"{e.analytic:.6g}",
                                      f"{e.numerical:.6g}", fmt(e.abs_error), fmt(e.rel_error)]))
            out.append(f"\n**{wrong_line(r)}**" if wrong_line(r) else "")
            out.append(f"\n{culprit_line(r).capitalize()}.")
            out.append(f"\nReproduce: `{reproduce(r)}`")
        out.append("")
    return "\n".join(out) + "\n"
