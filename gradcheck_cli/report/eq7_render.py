"""Rendering of the Eq. 7 report: figures (matplotlib, Agg), self-contained HTML, Markdown + PNGs.

matplotlib is imported here only, inside :func:`figures`, so no other command pays for it.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from ..outfiles import write_bytes, write_text
from .eq7_findings import PAIRS_OF_INTEREST, _fmt

RULE_COLORS = {"eq7_literal": "#d62728", "eq1": "#1f77b4", "eq2": "#2ca02c", "exact": "#7f7f7f",
               "ste_mean_std": "#9467bd"}
FIGURES = ("alphas", "pairwise", "sweep", "training")
CAPTIONS = {
    "alphas": "Per-base alphas (OLS) at W0: the weight eq7_literal puts on dL/dB_m, where eq1 puts 1.",
    "pairwise": "Cosine and relative L2 distance between the rules' dL/dW at W0.",
    "sweep": "Sweep over M (at scale 1) and over the weight scale (at the case's M): eq7_literal against the other rules.",
    "training": "Training loss per step, each rule, one panel per learning rate (log scale).",
}


# ------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------
def figures(r: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes of every figure, deterministic for the same numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "svg.hashsalt": "gradcheck"})
    out = {}
    for name, draw in (("alphas", _alphas), ("pairwise", _pairwise), ("sweep", _sweep),
                       ("training", _training)):
        fig = draw(plt, r)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def _alphas(plt, r):
    a = r["alphas"]
    M = a["M"]
    fig, ax = plt.subplots(figsize=(5.5, 3))
    xs = list(range(1, M + 1))
    ax.bar([x - 0.2 for x in xs], a["alpha"], 0.4, label="alpha_m (eq7_literal weight)", color=RULE_COLORS["eq7_literal"])
    ax.bar([x + 0.2 for x in xs], [1.0] * M, 0.4, label="1 (eq1 weight)", color=RULE_COLORS["eq1"], alpha=0.5)
    ax.set_xticks(xs, [f"m={m}\nu={u:+.2f}" for m, u in zip(xs, a["u"])])
    ax.set_yscale("log")
    ax.set_ylabel("weight on dL/dB_m in dL/dW")
    ax.set_title(f"M = {M}, sum alpha^2 / sum alpha = {_fmt(a['ratio'])}")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2)
    return fig


def _pairwise(plt, r):
    import numpy as np

    names = [x["rule"] for x in r["rules"]]
    k = len(names)
    cos, dist = np.eye(k), np.zeros((k, k))
    for p in r["pairwise"]:
        i, j = names.index(p["a"]), names.index(p["b"])
        cos[i, j] = cos[j, i] = p["cosine"]
        dist[i, j] = p["rel_l2"]                         # ||a - b|| / ||b||, a = row
        dist[j, i] = p["rel_l2"] / p["norm_ratio"] if p["norm_ratio"] else float("nan")
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4))
    fig.subplots_adjust(wspace=0.55)
    for ax, m, title, cmap in ((axes[0], cos, "cosine", "RdBu"), (axes[1], dist, "||row - col|| / ||col||", "viridis")):
        im = ax.imshow(m, cmap=cmap, vmin=-1 if cmap == "RdBu" else 0, vmax=1 if cmap == "RdBu" else None)
        ax.set_xticks(range(k), names, rotation=30, ha="right")
        ax.set_yticks(range(k), names)
        for i in range(k):
            for j in range(k):
                light = abs(m[i, j]) < 0.6 if cmap == "RdBu" else m[i, j] > 0.6 * np.nanmax(m)
                ax.text(j, i, f"{m[i, j]:.3g}", ha="center", va="center", fontsize=7,
                        color="black" if light else "white")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def _sweep(plt, r):
    pts, M0 = r["sweep"], r["setup"]["M"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, sel, xlabel in ((axes[0], "M", lambda p: p["scale"] == 1.0, "M (bases), scale 1"),
                                 (axes[1], "scale", lambda p: p["M"] == M0, f"weight scale, M = {M0}")):
        line = sorted((p for p in pts if sel(p)), key=lambda p: p[key])
        xs = [p[key] for p in line]
        for pair in PAIRS_OF_INTEREST[:3]:
            name = "|".join(pair)
            ax.plot(xs, [p["pairs"][name]["rel_l2"] for p in line], "o-", color=RULE_COLORS[pair[1]],
                    label=f"rel. L2 eq7_literal vs {pair[1]}")
        ax.plot(xs, [p["pairs"]["eq7_literal|eq1"]["norm_ratio"] for p in line], "s--",
                color=RULE_COLORS["eq7_literal"], label="||eq7_literal|| / ||eq1||")
        ax.plot(xs, [1 - p["pairs"]["eq7_literal|eq1"]["cosine"] for p in line], "x:", color="black",
                label="1 - cos(eq7_literal, eq1)")
        ax.set_xlabel(xlabel)
        ax.set_yscale("symlog", linthresh=1e-3)
        if key == "scale":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig


def _training(plt, r):
    t = r["training"]
    lrs = t["lrs"]
    fig, axes = plt.subplots(1, len(lrs), figsize=(3.2 * len(lrs), 3), sharey=True, squeeze=False)
    for ax, lr in zip(axes[0], lrs):
        for run in t["runs"]:
            if run["lr"] == lr:
                ax.plot(run["losses"], color=RULE_COLORS[run["rule"]],
                        label=run["rule"] + (" (diverged)" if run["diverged"] else ""))
        ax.set_yscale("log")
        ax.set_title(f"lr {_fmt(lr)}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(t["loss"])
    axes[0][0].legend(fontsize=7)
    return fig


# ------------------------------------------------------------------------------------------
# tables (shared by HTML and Markdown)
# ------------------------------------------------------------------------------------------
def tables(r: dict[str, Any]) -> dict[str, tuple[list[str], list[list[str]]]]:
    s = r["setup"]
    t: dict[str, tuple[list[str], list[list[str]]]] = {}
    t["setup"] = (["item", "value"], [
        ["case", f"{s['case']} ({s['file']})"], ["seed / dtype", f"{s['seed']} / {s['dtype']}"],
        ["network", " -> ".join(s["layers"]) + f" -> {s['loss']}"],
        ["ABC layer", f"layers[{s['layer']}], input {s['input_shape']}, W {s['W_shape']} (n = {s['n']})"],
        ["stride / padding / bias", f"{s['stride']} / {s['padding']} / {s['bias']}"],
        ["M (bases)", str(s["M"])], ["std", f"{s['std']}: {s['std_formula']}"],
        ["mean(W0) / std(W0) / max |W0|", f"{_fmt(s['mean_W'])} / {_fmt(s['std_W'])} / {_fmt(s['max_abs_W'])}"],
    ])
    t["rules"] = (["rule", "dL/dW", "exact derivative of"],
                  [[x["rule"], x["formula"], x["surrogate"]] for x in r["rules"]])
    t["verification"] = (["rule", "form", "checked against", "entries", "max rel err", "rel. L2", "cosine",
                          "norm ratio", "verdict"],
                         [[v["rule"], v["form"], v["against"], str(v["checked"]),
                           _fmt(v["max_rel_error"]), _fmt(v["rel_l2"]), f"{v['cosine']:.6f}",
                           _fmt(v["norm_ratio"]), "pass" if v["passed"] else f"FAIL ({v['failed']} entries)"]
                          for v in r["verification"]])
    t["pairwise"] = (["a", "b", "||a - b|| / ||b||", "cosine", "||a|| / ||b||"],
                     [[p["a"], p["b"], _fmt(p["rel_l2"]), f"{p['cosine']:.6f}", _fmt(p["norm_ratio"])]
                      for p in r["pairwise"]])
    a = r["alphas"]
    t["alphas"] = (["m", "u_m", "alpha_m", "alpha_m^2", "share of +1 in B_m"],
                   [[str(m + 1), f"{a['u'][m]:+.3f}", _fmt(a["alpha"][m]), _fmt(a["alpha"][m] ** 2),
                     f"{a['plus_fraction'][m]:.3f}"] for m in range(a["M"])]
                   + [["sum", "", _fmt(a["sum_alpha"]), _fmt(a["sum_alpha2"]),
                       f"ratio {_fmt(a['ratio'])}, rank {a['rank']}"]])
    t["sweep"] = (["M", "scale", "rank", "sum a^2/sum a", "eq7 vs eq1 cos", "eq7 vs eq1 rel. L2",
                   "eq7 vs eq2 rel. L2", "eq7 vs exact cos", "eq1 vs exact cos"],
                  [[str(p["M"]), _fmt(p["scale"]), str(p["rank"]), _fmt(p["ratio"]),
                    f"{p['pairs']['eq7_literal|eq1']['cosine']:.6f}", _fmt(p["pairs"]["eq7_literal|eq1"]["rel_l2"]),
                    _fmt(p["pairs"]["eq7_literal|eq2"]["rel_l2"]), f"{p['pairs']['eq7_literal|exact']['cosine']:.4f}",
                    f"{p['pairs']['eq1|exact']['cosine']:.4f}"] for p in r["sweep"]])
    tr = r["training"]
    rules = [x["rule"] for x in r["rules"]]
    by = {(x["rule"], x["lr"]): x for x in tr["runs"]}
    t["training"] = (["rule"] + [f"final @ lr {_fmt(lr)}" for lr in tr["lrs"]] + ["best final"],
                     [[rule] + ["diverged" if by[(rule, lr)]["diverged"] else _fmt(by[(rule, lr)]["final"])
                                for lr in tr["lrs"]]
                      + [_fmt(min((by[(rule, lr)]["final"] for lr in tr["lrs"] if not by[(rule, lr)]["diverged"]),
                                  default=float("inf")))] for rule in rules])
    return t


SECTIONS = (
    ("setup", "Setup", None),
    ("rules", "The rules", "G = dL/dW_hat is the usual conv weight gradient at W_hat = sum_m alpha_m B_m; "
                           "P = (B^T B)^+ B^T. Each rule is the exact derivative of the function in the last column."),
    ("verification", "Verification: each rule against central differences of its own surrogate",
     "The W rows of `gradcheck run` (every entry, every form) with `backward` set to each rule."),
    ("pairwise", "Pairwise comparison of the rules at W0", None),
    ("alphas", "Per-base alphas", None),
    ("sweep", "Sweep over M and the weight scale", None),
    ("training", "Training experiment", None),
)


def _training_intro(r) -> str:
    t = r["training"]
    return (f"The case's ABC layer, started from its W0, fitted to a {t['teacher']} on a batch of "
            f"{t['batch']} inputs from the seed; loss {t['loss']}; plain gradient descent for {t['steps']} "
            f"steps with each rule at each learning rate ({t['form']} form). Same data, same start, same steps.")


def _std_text(r) -> str:
    sn = r["std_note"]
    return (f"Seed 000 prints std(W) = sum_i (W_i - mean W)^2 / n, with neither square nor root: that is the "
            f"variance, a transcription slip (the paper means the standard deviation). The tool uses the real "
            f"std by default (`std: population`; `sample` divides by n - 1) and offers the literal formula as "
            f"`std: seed`. At this W0: population std {_fmt(sn['population'])}, the literal formula "
            f"{_fmt(sn['seed_literal'])}. This report used `std: {sn['used']}`.")


# ------------------------------------------------------------------------------------------
# HTML
# ------------------------------------------------------------------------------------------
def _html_table(head, rows) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode()}"><figcaption>{html.escape(alt)}</figcaption></figure>')


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:.6em 0;font-size:.85em}td,th{border:1px solid #ccc;padding:3px 7px;"
       "text-align:left;vertical-align:top}th{background:#f2f2f2}img{max-width:100%}figcaption{font-size:.85em;color:#555}"
       "li{margin:.3em 0}code{background:#f4f4f4}")


def render_html(r: dict[str, Any], figs: dict[str, bytes]) -> str:
    t = tables(r)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>ABC-Net Eq. 7 report: "
             f"{html.escape(r['setup']['case'])}</title><style>{CSS}</style></head><body>",
             "<h1>ABC-Net Eq. 7: which gradient is the derivative of what</h1>",
             "<h2>Findings</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in r["findings"]) + "</ul>"]
    for key, title, intro in SECTIONS:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if key == "training":
            intro = _training_intro(r)
        if intro:
            parts.append(f"<p>{html.escape(intro)}</p>")
        if key == "alphas" and r["alphas"]["note"]:
            parts.append(f"<p><b>{html.escape(r['alphas']['note'])}</b></p>")
        parts.append(_html_table(*t[key]))
        if key in figs:
            parts.append(_img(figs[key], CAPTIONS[key]))
    parts.append("<h2>A note on the seed's std formula</h2><p>" + html.escape(_std_text(r)) + "</p>")
    parts.append("<p><small>Made by <code>gradcheck report eq7</code>; every number above is recomputed "
                 "from the case and its seed.</small></p></body></html>")
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------
def _md_table(head, rows) -> str:
    def cell(c):
        return str(c).replace("|", "\\|")
    lines = ["| " + " | ".join(map(cell, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(r: dict[str, Any], pngs: dict[str, str]) -> str:
    t = tables(r)
    out = ["# ABC-Net Eq. 7: which gradient is the derivative of what", "", "## Findings", ""]
    out += [f"- {f}" for f in r["findings"]]
    for key, title, intro in SECTIONS:
        out += ["", f"## {title}", ""]
        if key == "training":
            intro = _training_intro(r)
        if intro:
            out += [intro, ""]
        if key == "alphas" and r["alphas"]["note"]:
            out += [f"**{r['alphas']['note']}**", ""]
        out.append(_md_table(*t[key]))
        if key in pngs:
            out += ["", f"![{CAPTIONS[key]}]({pngs[key]})"]
    out += ["", "## A note on the seed's std formula", "", _std_text(r), ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------
def write(r: dict[str, Any], output: str | Path, json_path: str | Path | None = None) -> list[Path]:
    """Write the report to ``output`` (.html self-contained, or .md with PNGs beside it) and JSON."""
    output = Path(output)
    written = []
    figs = figures(r)
    if output.suffix.lower() in (".html", ".htm"):
        write_text(output, render_html(r, figs))
    else:
        names = {}
        for key, png in figs.items():
            p = output.with_name(f"{output.stem}-{key}.png")
            write_bytes(p, png)
            names[key] = p.name
            written.append(p)
        write_text(output, render_markdown(r, names))
    written.insert(0, output)
    if json_path:
        write_text(json_path, json.dumps(r, indent=2) + "\n")
        written.append(Path(json_path))
    return written
