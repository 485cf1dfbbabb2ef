"""HTML report (``gradcheck run --html FILE``): one self-contained file, no network fetch.

Every case with its rows, the tensors named wrong and the whole-network check; a passing case is
one collapsed line (``<details>``). For each failing tensor, maps over the tensor's own
coordinates: |analytic - numerical| / the verdict's threshold (red exactly where the row's
entries fail), and the analytic and numerical gradients side by
side. Tensors of more than two axes are drawn as 2-D slices over their last two axes, labelled
with the leading indices (``[o, c, :, :]`` for a conv weight); at most :data:`MAX_SLICES` slices
per map (those with the largest errors), and the report says when some are left out. Styles are
inline, images are base64 PNGs drawn with matplotlib.
"""
from __future__ import annotations

import base64
import html
import io
import itertools

import numpy as np

from ..results import CaseResult, Row
from ..ranking import rank_desc
from . import culprit_line, fmt, reproduce, seconds_text, totals, wrong_line

MAX_SLICES = 16             # 2-D slices per map; more would make the page a wall of images
LOG_FLOOR = -4.0            # error maps: log10 of the ratio, clipped below here

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:1200px;
     padding:0 1em;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin:0} code,td,th{font-family:ui-monospace,Menlo,Consolas,monospace}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
th,td{border-bottom:1px solid #ddd;padding:.15em .6em;text-align:right;white-space:nowrap}
th{background:#f4f4f4} td.l,th.l{text-align:left}
tr.fail td{background:#fde8e8} .pass{color:#17803d;font-weight:bold} .fail{color:#c62828;font-weight:bold}
details{border:1px solid #ddd;border-radius:4px;margin:.4em 0;padding:.3em .8em}
details[open]{padding-bottom:.8em} summary{cursor:pointer}
summary .stats{color:#555;font-size:.9em;margin-left:.6em}
.wrong{font-weight:bold;color:#c62828} .note{color:#8a5a00} .legend{color:#444;font-size:.9em}
.maps{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start} figure{margin:.5em 0}
figcaption{font-size:.85em;color:#444;max-width:60em} img{max-width:100%;height:auto}
.grid{display:grid;gap:.5em;margin:.3em 0} .panel{font:.75em ui-monospace,monospace;color:#444}
.panel img{display:block;border:1px solid #999;image-rendering:pixelated}
.bar{width:260px;margin:.2em 0 1.4em} .bar img{width:260px;height:12px;display:block}
.ticks{position:relative;font-size:.75em;color:#444}
.ticks span{position:absolute;transform:translateX(-50%);white-space:nowrap}
.ticks span:first-child{transform:none} .ticks span:last-child{transform:translateX(-100%)}
pre{background:#f6f6f6;padding:.4em .6em;overflow-x:auto}
"""

LEGEND = ("Error maps show, per entry, |a - n| / the verdict's threshold, a the analytic and n the numerical "
          "gradient, on a log scale: the same threshold as the row (tolerance, the central difference's "
          "rounding noise and, in float32, the analytic side's error estimate). Blue entries pass, red "
          "entries fail: the red entries are exactly the row's failing entries. An entry passed by the "
          "kink rule is judged against other numbers and drawn at the bottom of the scale, as the row "
          "leaves it out of its errors; grey entries were not checked (--sample).")


def render(results: list[CaseResult]) -> str:
    """The whole report as one HTML document."""
    n_fail = sum(not r.passed for r in results)
    head = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>gradcheck: {len(results) - n_fail} of {len(results)} cases passed</title>"
            f"<style>{CSS}</style></head><body>")
    parts = [head, "<h1>gradcheck report</h1>",
             f"<p><span class='{'fail' if n_fail else 'pass'}'>{len(results) - n_fail} of {len(results)} "
             f"cases passed</span> · {seconds_text(sum(r.seconds for r in results))} of checks</p>",
             f"<p class='legend'>{html.escape(LEGEND)}</p>"]
    parts += [case_section(r) for r in results]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def case_section(r: CaseResult) -> str:
    """One case: a collapsed line when it passed, open with its tables and maps when it failed."""
    t, e, k = totals(r)
    rel = max((row.max_rel_error for row in r.checks), default=0.0)
    verdict = "<span class='pass'>PASS</span>" if r.passed else "<span class='fail'>FAIL</span>"
    summary = (f"<summary>{verdict} <b>{_e(r.name)}</b><span class='stats'>{t} tensors · {e} entries · "
               f"max rel err {fmt(rel)} · {k} kinks · {seconds_text(r.seconds)}</span></summary>")
    body = [f"<p><code>{_e(r.file)}</code> · {r.dtype} · seed {r.seed} · rtol {r.rtol:g} · atol {r.atol:g}"
            + (f" · {r.sample} sampled entries per tensor" if r.sample else "") + f" · mode {_e(r.mode)}</p>"]
    if wrong_line(r):
        body.append(f"<p class='wrong'>{_e(wrong_line(r))}</p>")
        if "fail too" in culprit_line(r):
            body.append(f"<p>{_e(culprit_line(r))}</p>")
    failing = [row for row in r.checks if not row.passed]
    if failing:
        body.append(rows_table(failing))
    if r.composition:
        body.append(composition_table(r))
    body += [f"<p class='note'>not checked: layers[{i}] ({_e(kind)}) has none of the forms asked for</p>"
             for i, kind in r.unchecked]
    if not r.passed:
        body += [tensor_maps(r, group) + _marked(group) for group in failing_groups(r)]
        body.append(worst_table(r))
        body.append(f"<p>Reproduce:</p><pre>{_e(reproduce(r))}</pre>")
    body.append(f"<details class='rows'><summary>all {len(r.checks)} rows</summary>{rows_table(r.checks)}"
                if failing else rows_table(r.checks))
    if r.agreement:
        a = max(r.agreement, key=lambda a: a.max_rel_diff)
        body.append(f"<p>Forms agree to {fmt(a.max_abs_diff)} (relative {fmt(a.max_rel_diff)}), largest at "
                    f"layers[{a.layer}].{_e(a.tensor)}.</p>")
    if failing:
        body.append("</details>")
    return f"<details{'' if r.passed else ' open'}>{summary}{''.join(body)}</details>"


# ------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------
def _e(x) -> str:
    return html.escape(str(x))


def _table(head: list[str], rows: list[list[str]], classes: list[str] | None = None, left: int = 0) -> str:
    """A table; the first ``left`` columns left-aligned; cells are already escaped."""
    th = "".join(f"<th{' class=l' if k < left else ''}>{_e(h)}</th>" for k, h in enumerate(head))
    trs = []
    for n, row in enumerate(rows):
        cls = f" class='{classes[n]}'" if classes and classes[n] else ""
        tds = "".join(f"<td{' class=l' if k < left else ''}>{c}</td>" for k, c in enumerate(row))
        trs.append(f"<tr{cls}>{tds}</tr>")
    return f"<table><tr>{th}</tr>{''.join(trs)}</table>"


def rows_table(rows: list[Row]) -> str:
    head = ["check", "type", "form", "shape", "checked", "failed", "max abs err", "max rel err", "worst index",
            "kinks", "verdict", "note"]
    cells = [[_e(r.label), _e(r.type), _e(r.form), "x".join(map(str, r.shape)), str(r.checked), str(r.failed),
              fmt(r.max_abs_error), fmt(r.max_rel_error), _e(list(r.worst_index)), str(r.kinks),
              "<span class='pass'>pass</span>" if r.passed else "<span class='fail'>FAIL</span>",
              f"<span class='note'>{_e(r.note)}</span>" + _diagnosis(r)] for r in rows]
    return _table(head, cells, ["" if r.passed else "fail" for r in rows], left=4)


def _diagnosis(r: Row) -> str:
    """A failing row's diagnosis (diagnosis.py), under its note."""
    d = r.diagnosis if not r.passed else None
    return "" if d is None else f"<br><span class='diagnosis'>diagnosis ({_e(d.kind)}): {_e(d.text)}</span>"


def _marked(group: list[Row]) -> str:
    """The entries a diagnosis names (kind `entries`), listed under the tensor's maps."""
    d = group[0].diagnosis
    if d is None or not d.marked:
        return ""
    at = [list(map(int, np.unravel_index(k, group[0].shape))) for k in d.marked]
    return (f"<p class='diagnosis' data-marked='{_e(at)}'>marked entries ({_e(d.kind)}): "
            f"{_e(', '.join(map(str, at)))}</p>")


def composition_table(r: CaseResult) -> str:
    head = ["network check", "form", "analytic", "numerical", "abs err", "rel err", "tolerance", "verdict"]
    cells = [[_e(d.label), _e(d.form), f"{d.analytic:.6g}", f"{d.numerical:.6g}", fmt(d.abs_error),
              fmt(d.rel_error), fmt(d.tolerance),
              "<span class='pass'>pass</span>" if d.passed else "<span class='fail'>FAIL</span>"]
             for d in r.composition]
    return ("<p>The whole loss along seeded directions d: &lt;grad L, d&gt; against its central difference.</p>"
            + _table(head, cells, ["" if d.passed else "fail" for d in r.composition], left=2))


def worst_table(r: CaseResult) -> str:
    """Up to five failing entries per failing row (forms with the same entries share a line)."""
    from .table import merged_worst

    items = [(row, forms, e) for row, forms in merged_worst([x for x in r.checks if not x.passed]) for e in row.worst]
    if not items:
        return ""
    cells = [[_e(row.label), _e(", ".join(forms)), _e(list(e.index)), f"{e.analytic:.6g}", f"{e.numerical:.6g}",
              fmt(e.abs_error), fmt(e.rel_error)] for row, forms, e in items]
    return "<p>Worst entries:</p>" + _table(["tensor", "forms", "index", "analytic", "numerical", "abs err",
                                             "rel err"], cells, left=3)


# ------------------------------------------------------------------------------------------
# maps
# ------------------------------------------------------------------------------------------
def _same(a, b) -> bool:
    """Two gradients equal up to rounding (forms that compute the same numbers differently)."""
    if a is None or b is None or a.shape != b.shape:
        return False
    scale = float(np.max(np.abs(np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)), initial=0.0))
    return bool(np.allclose(a, b, rtol=1e-9, atol=1e-12 * scale, equal_nan=True))


def failing_groups(r: CaseResult) -> list[list[Row]]:
    """The failing rows grouped by tensor, and within a tensor by equal analytic gradients
    (a layer wrong in every form alike gets one set of maps, naming all its forms)."""
    groups: list[list[Row]] = []
    for row in (x for x in r.checks if not x.passed):
        a = r.arrays.get(_key(row, "analytic"))
        for g in groups:
            b = r.arrays.get(_key(g[0], "analytic"))
            if g[0].label == row.label and _same(a, b):
                g.append(row)
                break
        else:
            groups.append([row])
    return groups


def _key(row: Row, side: str) -> str:
    """The arrays of ``row``'s check (a row failing only with the random cotangent: that check's)."""
    suffix = ".random" if row.cotangent == "random" else ""
    return f"layer{row.layer}.{row.tensor}.{row.form}{suffix}.{side}"


def tensor_maps(r: CaseResult, group: list[Row]) -> str:
    """The error map of one failing tensor, and its analytic and numerical maps side by side."""
    row = group[0]
    forms = [g.form for g in group]
    a, n = r.arrays.get(_key(row, "analytic")), r.arrays.get(_key(row, "numerical"))
    ratio = r.arrays.get(_key(row, "verdict"))
    title = (f"{row.label} ({row.type}), form{'s' if len(forms) > 1 else ''} {', '.join(forms)}: "
             f"{row.failed} of {row.checked} entries fail; shape {list(row.shape)}")
    attrs = f"class='heatmap' data-tensor='{_e(row.label)}' data-forms='{_e(' '.join(forms))}'"
    if a is None or n is None or ratio is None:
        return f"<figure {attrs}><figcaption>{_e(title)}: arrays not kept, no map</figcaption></figure>"
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    picked, total = pick_slices(ratio)
    note = (f"; showing {len(picked)} of its {total} 2-D slices, those with the largest errors (at most "
            f"{MAX_SLICES} are drawn)" if len(picked) < total else "")
    axes = ("one row of entries" if a.ndim <= 1 else
            f"each map: rows = axis {a.ndim - 2}, columns = axis {a.ndim - 1}, entry [0, 0] top left")
    lim = float(np.max(np.abs(np.concatenate([a[np.isfinite(a)], n[np.isfinite(n)], [0.0]])))) or 1.0
    return (f"<figure {attrs}><figcaption><b>{_e(title)}</b>{_e(note)}; {_e(axes)}.</figcaption>"
            f"<div class='maps'>{error_map(ratio, picked)}</div><div class='maps'>"
            f"{value_map(a, picked, lim, 'analytic')}{value_map(n, picked, lim, 'numerical')}</div></figure>")


def _views(x: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """(leading shape, the array as leading x rows x columns): a vector is one row."""
    if x.ndim <= 1:
        return (), x.reshape(1, 1, -1)
    return x.shape[:-2], x.reshape(-1, *x.shape[-2:])


def pick_slices(ratio: np.ndarray) -> tuple[list[tuple[int, ...]], int]:
    """The leading indices of the slices to draw (in index order), and how many there are."""
    lead, flat = _views(ratio)
    idx = list(itertools.product(*map(range, lead))) or [()]
    if len(idx) <= MAX_SLICES:
        return idx, len(idx)
    worst = np.array([np.max(np.nan_to_num(s, nan=-1.0, posinf=np.finfo(float).max)) for s in flat])
    keep = sorted(rank_desc(worst)[:MAX_SLICES])
    return [idx[k] for k in keep], len(idx)


def _columns(x: np.ndarray, picked: list[tuple[int, ...]]) -> int:
    """Panels per line: the second index when every [i, j] slice is shown (rows i, columns j)."""
    lead, _ = _views(x)
    if len(lead) == 2 and len(picked) == lead[0] * lead[1] and lead[1] <= 8:
        return lead[1]
    return min(len(picked), 4)


def _label(x: np.ndarray, ix: tuple[int, ...]) -> str:
    return "[:]" if x.ndim <= 1 else "[" + ", ".join([*map(str, ix), ":", ":"]) + "]"


def _map(x: np.ndarray, picked, rgba, title: str, bar: str) -> str:
    """A grid of labelled slice images (pixels coloured by ``rgba``) with its colour bar."""
    lead, flat = _views(x)
    idx = list(itertools.product(*map(range, lead))) or [()]
    h, w = flat.shape[1:]
    scale = int(min(max(120 // max(h, w), 3), 24)) if max(h, w) <= 400 else 1
    panels = "".join(f"<div class='panel'><div>{_e(_label(x, ix))}</div>{_png(rgba(flat[idx.index(ix)]), scale)}</div>"
                     for ix in picked)
    return (f"<figure class='map'><figcaption>{_e(title)}</figcaption><div class='grid' style='grid-template-columns:"
            f"repeat({_columns(x, picked)}, auto)'>{panels}</div>{bar}</figure>")


def error_map(ratio: np.ndarray, picked) -> str:
    """The verdict's |a - n| / threshold on a log scale: blues pass (<= 1), reds fail (> 1),
    grey not checked. Each side has its own colour map, so no rounding of a colour scale can
    draw a passing entry red or a failing one blue."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap, TwoSlopeNorm

    with np.errstate(divide="ignore"):
        logr = np.log10(ratio)
    top = max(float(np.max(logr[np.isfinite(logr)], initial=0.0)), 0.5)
    norm = TwoSlopeNorm(vmin=LOG_FLOOR, vcenter=0.0, vmax=top)
    base = colormaps["RdBu_r"]
    passing = ListedColormap(base(np.linspace(0.0, 0.42, 128)))     # dark to light blue
    failing = ListedColormap(base(np.linspace(0.62, 1.0, 128)))     # light to dark red

    def rgba(s):
        checked, fails = ~np.isnan(s), np.isposinf(s) | (np.nan_to_num(s) > 0)   # ratio > 1
        s = np.where(np.isposinf(s), top, np.clip(np.nan_to_num(s, nan=LOG_FLOOR), LOG_FLOOR, None))
        x = np.asarray(norm(s), dtype=np.float64)
        out = np.where(fails[..., None], failing(np.clip(2 * x - 1, 0, 1), bytes=True),
                       passing(np.clip(2 * x, 0, 1), bytes=True))
        out[~checked] = (187, 187, 187, 255)
        return out

    scale = np.linspace(LOG_FLOOR, top, 256)
    bar = _bar(rgba(scale[None])[0], [f"≤ 1e{LOG_FLOOR:.0f}", "1 (threshold)", f"{10 ** top:.3g}"],
               [0.0, -LOG_FLOOR / (top - LOG_FLOOR), 1.0])
    return _map(logr, picked, rgba, "|a - n| / the verdict's threshold (log scale; > 1 fails)", bar)


def value_map(v: np.ndarray, picked, lim: float, side: str) -> str:
    """Gradient values on one symmetric scale shared by the analytic and numerical maps."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    norm, cmap = Normalize(-lim, lim), colormaps["PuOr_r"].with_extremes(bad="#bbbbbb")
    bar = _bar(cmap(np.linspace(0, 1, 256), bytes=True), [f"{-lim:.3g}", "0", f"{lim:.3g}"], [0.0, 0.5, 1.0])
    return _map(v, picked, lambda s: cmap(norm(np.ma.masked_invalid(s)), bytes=True), side, bar)


def _bar(colours: np.ndarray, labels: list[str], at: list[float]) -> str:
    """A horizontal colour bar with labels at fractions ``at`` of its length."""
    img = _png(np.repeat(colours[None, :, :], 12, axis=0), 1)
    ticks = "".join(f"<span style='left:{100 * x:.1f}%'>{_e(t)}</span>" for t, x in zip(labels, at))
    return f"<div class='bar'>{img}<div class='ticks'>{ticks}</div></div>"


def _png(rgba: np.ndarray, scale: int) -> str:
    """An inline PNG of an RGBA array, each entry ``scale`` x ``scale`` pixels."""
    from matplotlib.image import imsave

    if scale > 1:
        rgba = np.repeat(np.repeat(rgba, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    imsave(buf, rgba, format="png", metadata={"Software": None})
    return f"<img alt='' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}'>"
