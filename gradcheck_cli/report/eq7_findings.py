"""The eq7 report's findings: sentences written from the numbers of :func:`.eq7.build`'s dict
(nothing hard-coded: every figure in a sentence is read from ``r``)."""
from __future__ import annotations

from typing import Any

import numpy as np

# the rule pairs the sweep compares and the report shows
PAIRS_OF_INTEREST = (("eq7_literal", "eq1"), ("eq7_literal", "eq2"), ("eq7_literal", "exact"),
                     ("eq1", "exact"), ("eq2", "exact"), ("eq1", "eq2"), ("ste_mean_std", "eq1"))
SAME_DIRECTION = 1 - 1e-9          # cosine above this: the same direction up to rounding


def _fmt(x: float) -> str:
    x = float(x)
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 or x == 0 else f"{x:.2e}"


def _cos_words(c: float) -> str:
    """Words for a cosine between two gradients."""
    if c >= SAME_DIRECTION:
        return "the same direction"
    for bound, words in ((0.999, "nearly the same direction"), (0.9, "a similar direction"),
                         (0.1, "a different direction"), (-0.1, "nearly orthogonal")):
        if c >= bound:
            return words
    return "an opposing direction"


def findings(r: dict[str, Any]) -> list[str]:
    """What the numbers say about direction versus scale, in sentences built from ``r``."""
    out = []
    pair = {(p["a"], p["b"]): p for p in r["pairwise"]}
    e1 = pair[("eq7_literal", "eq1")]
    pts = r["sweep"]
    cos71 = [p["pairs"]["eq7_literal|eq1"]["cosine"] for p in pts]
    nr71 = [p["pairs"]["eq7_literal|eq1"]["norm_ratio"] for p in pts]
    worst = pts[int(np.argmin(cos71))]
    if min(cos71) >= SAME_DIRECTION:
        out.append(f"Direction: eq7_literal and eq1 point in the same direction in every one of the "
                   f"{len(pts)} sweep settings (smallest cosine {min(cos71):.12f}); at the case's W0 the "
                   f"cosine is {e1['cosine']:.12f}. With the straight-through estimator every base "
                   f"receives the same G, so weighting base m by alpha_m instead of 1 only rescales.")
    else:
        out.append(f"Direction: eq7_literal and eq1 do not always point the same way: the smallest "
                   f"cosine in the sweep is {min(cos71):.6f} (M = {worst['M']}, scale {_fmt(worst['scale'])}); "
                   f"at the case's W0 it is {e1['cosine']:.6f}, {_cos_words(e1['cosine'])}.")
    lo, hi = int(np.argmin(nr71)), int(np.argmax(nr71))
    side = ("smaller than" if max(nr71) < 1 else "larger than" if min(nr71) > 1 else "on both sides of")
    out.append(f"Scale: ||eq7_literal|| / ||eq1|| = sum alpha_m^2 / sum alpha_m is "
               f"{_fmt(e1['norm_ratio'])} at the case's W0 and ranges from {_fmt(nr71[lo])} "
               f"(M = {pts[lo]['M']}, scale {_fmt(pts[lo]['scale'])}) to {_fmt(nr71[hi])} "
               f"(M = {pts[hi]['M']}, scale {_fmt(pts[hi]['scale'])}), {side} 1: the literal rule is "
               f"eq1 with its learning rate multiplied by that factor.")
    M0 = r["setup"]["M"]
    line = sorted((p for p in pts if p["M"] == M0), key=lambda p: p["scale"])
    if len(line) >= 2:
        x = np.log([p["scale"] for p in line])
        y = np.log([p["pairs"]["eq7_literal|eq1"]["norm_ratio"] for p in line])
        slope = float(np.polyfit(x, y, 1)[0])
        how = ("proportionally to" if abs(slope - 1) < 0.05 else "faster than" if slope > 1
               else "slower than" if slope > 0.05 else "independently of")
        out.append(f"Against the weight scale (M = {M0}), that factor grows as scale^{slope:.2f}, i.e. "
                   f"{how} the weights: the discrepancy is a scale that depends on the weights' size.")
    over_m = sorted((p for p in pts if p["scale"] == 1.0), key=lambda p: p["M"])
    if len(over_m) >= 2:
        f = [p["pairs"]["eq7_literal|eq1"]["norm_ratio"] for p in over_m]
        d = np.diff(f)
        trend = ("falls" if np.all(d < 0) else "rises" if np.all(d > 0) else "is not monotone")
        c72 = [p["pairs"]["eq7_literal|eq2"]["cosine"] for p in pts]
        out.append(f"Against M (scale 1), the factor {trend}: {_fmt(f[0])} at M = {over_m[0]['M']}, "
                   f"{_fmt(f[-1])} at M = {over_m[-1]['M']}. Over the whole sweep the cosine between "
                   f"eq7_literal and eq2 lies between {min(c72):.4f} and {max(c72):.4f}.")
    ex = pair[("eq7_literal", "exact")]
    e2 = pair[("eq7_literal", "eq2")]
    be = pair[("eq1", "exact")]
    out.append(f"Against the other rules at W0: eq7_literal vs eq2 has cosine {e2['cosine']:.4f} "
               f"({_cos_words(e2['cosine'])}) and relative L2 distance {_fmt(e2['rel_l2'])}; vs exact, "
               f"cosine {ex['cosine']:.4f} ({_cos_words(ex['cosine'])}). eq1 vs exact has cosine "
               f"{be['cosine']:.4f}: how far the straight-through estimate is from the real "
               f"derivative is a property of the STE, shared by eq1, eq2 and eq7_literal.")
    ver = r["verification"]
    bad = sorted({v["rule"] for v in ver if v["rule"] != "eq7_literal" and not v["passed"]})
    e7 = [v for v in ver if v["rule"] == "eq7_literal"]
    if bad:
        out.append(f"Verification: {', '.join(bad)} did NOT match the central differences of "
                   f"{'its' if len(bad) == 1 else 'their'} surrogate — see the table.")
    else:
        rules = sorted({v["rule"] for v in ver if v["rule"] != "eq7_literal"})
        worst_ok = max((v["max_rel_error"] for v in ver if v["rule"] != "eq7_literal"), default=0.0)
        out.append(f"Verification: {', '.join(rules)} each match the central differences of their own "
                   f"surrogate in every form (largest relative error {_fmt(worst_ok)}).")
    if e7:
        d = e7[0]
        verdict = "fails" if not all(v["passed"] for v in e7) else "passes"
        out.append(f"eq7_literal {verdict} against the eq1 surrogate: relative L2 distance {_fmt(d['rel_l2'])}, "
                   f"norm ratio {_fmt(d['norm_ratio'])}, cosine {d['cosine']:.6f}.")
    out += _training_findings(r["training"])
    sn = r["std_note"]
    out.append(f"The seed's printed std (no square root: a variance) would be {_fmt(sn['seed_literal'])} "
               f"for these weights instead of {_fmt(sn['population'])} ({_fmt(sn['ratio'])}x); "
               f"{sn['bases_equal']} of {sn['M']} bases come out the same, and the fit "
               f"||W_hat - W|| / ||W|| is {_fmt(sn['fit_seed'])} with it vs {_fmt(sn['fit_population'])} "
               f"with the real std. This report used `std: {sn['used']}`.")
    return out


def _training_findings(t: dict[str, Any]) -> list[str]:
    runs = t["runs"]
    by = {(x["rule"], x["lr"]): x for x in runs}
    out = []
    for lr in t["lrs"]:
        ok = [x for x in runs if x["lr"] == lr and not x["diverged"]]
        if not ok:
            out.append(f"Training at lr {_fmt(lr)}: every rule diverged.")
            continue
        best = min(ok, key=lambda x: x["final"])
        e7, e1 = by[("eq7_literal", lr)], by[("eq1", lr)]
        cmp = ("diverged" if e7["diverged"] else f"ended at {_fmt(e7['final'])}")
        cmp1 = ("diverged" if e1["diverged"] else f"{_fmt(e1['final'])}")
        out.append(f"Training at lr {_fmt(lr)} ({t['steps']} steps, from {_fmt(t['initial'])}): lowest final "
                   f"loss {_fmt(best['final'])} with {best['rule']}; eq7_literal {cmp}, eq1 {cmp1}.")
    best_of = {}
    for rule in ("eq7_literal", "eq1"):
        ok = [x for x in runs if x["rule"] == rule and not x["diverged"]]
        if ok:
            best_of[rule] = min(ok, key=lambda x: x["final"])
    if len(best_of) == 2:
        a, b = best_of["eq7_literal"], best_of["eq1"]
        ratio = a["mean_ratio"]
        out.append(f"Over the learning-rate grid eq7_literal's best final loss is {_fmt(a['final'])} "
                   f"(lr {_fmt(a['lr'])}) and eq1's {_fmt(b['final'])} (lr {_fmt(b['lr'])}); along its run "
                   f"eq7_literal's steps were eq1's times sum alpha^2 / sum alpha = {_fmt(ratio)} on average, "
                   f"so lr {_fmt(a['lr'])} for eq7_literal acts like lr {_fmt(a['lr'] * ratio)} for eq1.")
    return out
