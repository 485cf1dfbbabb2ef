"""`gradcheck report eq7`: the ABC-Net Eq. 7 question (seed 000), answered with numbers.

``build(case)`` computes everything the report shows, as a JSON-able dict, from the case's first
``abc_conv2d`` layer and the case's seed (no clock, no unseeded randomness: same case, same bytes):

- setup: shapes, M, the std definition, mean and std of W0, the seed;
- every rule with its formula and the surrogate it is the exact derivative of;
- verification: each rule checked by ``run_case`` (all entries, every form) against central
  differences of its own surrogate — eq7_literal against eq1's;
- pairwise: relative L2 difference, cosine and norm ratio between the rules' dL/dW at W0;
- alphas per base; a sweep over M = 1..max_bases and over the weight scale (W0 times s);
- training: the same layer fitted to a full-precision teacher by gradient descent with each rule;
- findings: sentences written from those numbers by :func:`findings` (eq7_findings.py; nothing
  hard-coded).

Rendering (HTML / Markdown, matplotlib figures) lives in :mod:`.eq7_render`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

import numpy as np

from ..cases import Case, load
from ..errors import CaseError
from .eq7_findings import PAIRS_OF_INTEREST, SAME_DIRECTION, _cos_words, _fmt, findings  # noqa: F401 (API)

DEFAULT_CASE = Path(__file__).resolve().parents[1] / "data" / "eq7-default.yaml"
SURROGATE_OF = {"eq7_literal": "eq1 surrogate", "eq1": "eq1 surrogate", "eq2": "eq2 surrogate",
                "exact": "real forward", "ste_mean_std": "ste_mean_std surrogate"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the report sweeps and trains; the defaults make the full report."""

    max_bases: int = 5
    scales: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
    steps: int = 200
    lrs: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
    form: str = "correlation"          # the form for the analytic gradients (all forms agree)
    batch: int = 8                     # training batch drawn from the seed
    sample: int | None = None          # verification: check K random entries per tensor (None: all)

    def __post_init__(self):
        if 1.0 not in self.scales:
            object.__setattr__(self, "scales", tuple(sorted((*self.scales, 1.0))))


Progress = Callable[[int, int, str], None]


# ------------------------------------------------------------------------------------------
# small numerics
# ------------------------------------------------------------------------------------------
def compare(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """rel_l2 = ||a - b|| / ||b||, cosine, norm_ratio = ||a|| / ||b||."""
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return {"rel_l2": float(np.linalg.norm(a - b)) / nb if nb else float("inf"),
            "cosine": float(a @ b) / (na * nb) if na and nb else float("nan"),
            "norm_ratio": na / nb if nb else float("inf")}


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if np.isfinite(x) else str(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


# ------------------------------------------------------------------------------------------
# the case and its ABC layer
# ------------------------------------------------------------------------------------------
def load_case(path: str | Path | None) -> Case:
    """The case named on the command line, or the bundled default."""
    return load(path if path is not None else DEFAULT_CASE)


def abc_index(case: Case) -> int:
    for cfg in case.layers:
        if cfg.type == "abc_conv2d":
            return cfg.index
    raise CaseError(case.file, "layers", "the eq7 report needs an `abc_conv2d` layer; this case has none")


def with_options(case: Case, i: int, **options: Any) -> Case:
    """The case with layer i's options overridden."""
    layers = list(case.layers)
    cfg = layers[i]
    layers[i] = dataclasses.replace(cfg, options=MappingProxyType({**cfg.options, **options}))
    return dataclasses.replace(case, layers=tuple(layers))


def rule_gradients(case: Case, i: int, form: str, bases: int | None = None, scale: float = 1.0,
                   rules=None) -> tuple[dict[str, np.ndarray], Any]:
    """dL/dW of layer i at scale * W0 by every rule (the case's network and loss), and the layer."""
    from ..layers.abc import RULES
    from ..network import Network

    grads, layer = {}, None
    for rule in rules or RULES:
        opts = {"backward": rule, **({"bases": bases} if bases else {})}
        net = Network.build(with_options(case, i, **opts))
        net.params[i]["W"] = scale * net.params[i]["W"]
        net.layers[i].anchor(net.params[i])
        xs = net.forward()
        grads[rule] = net.backward(form, xs)[i]["W"]
        layer = net.layers[i]
    return grads, layer


# ------------------------------------------------------------------------------------------
# the sections
# ------------------------------------------------------------------------------------------
def setup(case: Case, i: int) -> dict[str, Any]:
    from ..layers.abc import STD_FORMULAS
    from ..network import Network

    net = Network.build(case)
    layer, W0 = net.layers[i], net.params[i]["W"]
    a = layer.binarize(W0)
    o = case.layers[i].options
    bundled = Path(case.file).resolve() == DEFAULT_CASE
    return {"case": case.name, "file": "bundled: gradcheck_cli/data/eq7-default.yaml" if bundled else case.file,
            "seed": case.seed, "dtype": case.dtype,
            "layer": i, "layers": [c.type for c in case.layers], "loss": case.loss,
            "input_shape": list(case.shapes[i]), "W_shape": list(W0.shape), "n": int(W0.size),
            "M": int(o["bases"]), "std": o["std"], "std_formula": STD_FORMULAS[o["std"]],
            "stride": list(layer.s), "padding": list(layer.p), "bias": bool(o["bias"]),
            "mean_W": a.mu, "std_W": a.sigma, "max_abs_W": float(np.max(np.abs(W0)))}


def rules_section() -> list[dict[str, str]]:
    from ..layers.abc import FORMULAS, RULES, SURROGATES

    return [{"rule": r, "formula": FORMULAS[r], "surrogate": SURROGATES[r]} for r in RULES]


def verification(case: Case, i: int, progress: Callable[[str], None],
                 sample: int | None = None) -> list[dict[str, Any]]:
    """Each rule through `gradcheck run`'s check: the W rows of layer i, every form."""
    from ..check import run_case
    from ..layers.abc import RULES

    out = []
    for rule in RULES:
        result = run_case(with_options(case, i, backward=rule), sample=sample)
        for row in result.rows:
            if row.layer == i and row.tensor == "W":
                a = result.arrays[f"layer{i}.W.{row.form}.analytic"]
                n = result.arrays[f"layer{i}.W.{row.form}.numerical"]
                a, n = a[np.isfinite(n)], n[np.isfinite(n)]             # the checked entries
                out.append({"rule": rule, "form": row.form, "against": SURROGATE_OF[rule],
                            "checked": row.checked, "max_rel_error": row.max_rel_error,
                            "failed": row.failed, "passed": row.passed, **compare(a, n),
                            "other_rows_passed": all(r.passed for r in result.rows
                                                     if (r.layer, r.tensor) != (i, "W"))})
        progress(f"verified {rule}")
    return out


def alphas_section(case: Case, i: int) -> dict[str, Any]:
    from ..network import Network

    net = Network.build(case)
    a = net.layers[i].binarize(net.params[i]["W"])
    return {"M": a.M, "u": a.u, "alpha": a.alpha, "plus_fraction": (a.B > 0).reshape(a.M, -1).mean(axis=1),
            "rank": a.rank, "singular": a.singular, "note": a.singular_note(),
            "sum_alpha": float(a.alpha.sum()), "sum_alpha2": float((a.alpha ** 2).sum()),
            "ratio": float((a.alpha ** 2).sum() / a.alpha.sum()) if a.alpha.sum() else float("inf"),
            "fit_rel_error": float(np.linalg.norm(a.W_hat - a.W) / np.linalg.norm(a.W))}


def pairwise(grads: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    names = list(grads)
    return [{"a": p, "b": q, **compare(grads[p], grads[q])}
            for k, p in enumerate(names) for q in names[k + 1:]]


def sweep(case: Case, i: int, s: Settings, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every (M, scale) of the grid: the pairs of interest and sum alpha^2 / sum alpha."""
    points = []
    for M in range(1, s.max_bases + 1):
        for scale in s.scales:
            grads, layer = rule_gradients(case, i, s.form, bases=M, scale=scale)
            a = layer._anchor
            points.append({"M": M, "scale": scale, "rank": a.rank,
                           "ratio": float((a.alpha ** 2).sum() / a.alpha.sum()),
                           "pairs": {f"{p}|{q}": compare(grads[p], grads[q]) for p, q in PAIRS_OF_INTEREST}})
            progress(f"sweep M={M} scale={scale:g}")
    return points


def std_note(case: Case, i: int) -> dict[str, Any]:
    """The seed's printed std (a variance) next to the real one, at W0: values and bases."""
    from ..layers.abc import binarize
    from ..network import Network

    net = Network.build(case)
    W0, M = net.params[i]["W"], int(case.layers[i].options["bases"])
    pop, seed = binarize(W0, M, "population"), binarize(W0, M, "seed")
    used = case.layers[i].options["std"]
    return {"used": used, "population": pop.sigma, "sample": float(np.std(W0, ddof=1)) if W0.size > 1 else None,
            "seed_literal": seed.sigma, "ratio": seed.sigma / pop.sigma if pop.sigma else float("inf"),
            "bases_equal": int(sum(np.array_equal(p, q) for p, q in zip(pop.B, seed.B))), "M": M,
            "fit_population": float(np.linalg.norm(pop.W_hat - W0) / np.linalg.norm(W0)),
            "fit_seed": float(np.linalg.norm(seed.W_hat - W0) / np.linalg.norm(W0))}


def training(case: Case, i: int, s: Settings, progress: Callable[[str], None]) -> dict[str, Any]:
    """Fit the case's ABC layer (from its W0) to a full-precision conv teacher, each rule, each lr.

    Loss 0.5 mean((O - T)^2) on a batch drawn from the seed; plain gradient descent, fixed steps.
    A run whose loss overflows is marked diverged and stopped.
    """
    from ..layers.abc import RULES, AbcConv2d
    from ..layers.conv import conv2d_forward
    from ..network import Network

    net = Network.build(case)
    W0 = net.params[i]["W"]
    in_shape = net.shapes[i]
    opts = dict(case.layers[i].options)
    rng = np.random.default_rng([case.seed, 7])
    A = rng.standard_normal((s.batch, *in_shape[1:]))
    W_teacher = rng.standard_normal(W0.shape) / np.sqrt(np.prod(W0.shape[1:]))
    probe = AbcConv2d(**{**opts, "bias": False, "backward": "eq1"})
    T = conv2d_forward(A, W_teacher, None, probe.s, probe.p)
    runs = []
    for rule in RULES:
        layer = AbcConv2d(**{**opts, "bias": False, "backward": rule})   # never anchored: real forward
        for lr in s.lrs:
            W, losses, ratios, diverged = W0.copy(), [], [], False
            with np.errstate(all="ignore"):
                for _ in range(s.steps + 1):
                    r = layer.forward(A, {"W": W}) - T
                    loss = 0.5 * float(np.mean(r * r))
                    if not np.isfinite(loss) or loss > 1e6 * max(losses[0] if losses else loss, 1e-300):
                        diverged = True
                        break
                    losses.append(loss)
                    if len(losses) == s.steps + 1:
                        break
                    a = layer.binarize(W)
                    ratios.append(float((a.alpha ** 2).sum() / a.alpha.sum()))
                    W = W - lr * layer.backward(s.form, r / r.size, A, {"W": W})["W"]
            runs.append({"rule": rule, "lr": lr, "losses": losses, "final": losses[-1] if not diverged else float("inf"),
                         "best": min(losses), "diverged": diverged,
                         "mean_ratio": float(np.mean(ratios)) if ratios else float("nan")})
        progress(f"trained {rule}")
    return {"batch": s.batch, "steps": s.steps, "lrs": list(s.lrs), "form": s.form,
            "teacher": "full-precision conv2d, weights N(0, 1/fan_in) from the seed",
            "loss": "0.5 mean((O - T)^2)", "initial": runs[0]["losses"][0], "runs": runs}


# ------------------------------------------------------------------------------------------
# everything
# ------------------------------------------------------------------------------------------
def build(case: Case, settings: Settings = Settings(), progress: Progress | None = None) -> dict[str, Any]:
    """Every number of the report (JSON-able), then the findings written from them."""
    from ..layers.abc import RULES

    i = abc_index(case)
    total = len(RULES) * 2 + settings.max_bases * len(settings.scales) + 1
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total, label)

    r: dict[str, Any] = {"setup": setup(case, i), "rules": rules_section(),
                         "settings": dataclasses.asdict(settings)}
    r["verification"] = verification(case, i, tick, settings.sample)
    grads, _ = rule_gradients(case, i, settings.form)
    r["gradient_norms"] = {k: float(np.linalg.norm(g)) for k, g in grads.items()}
    r["pairwise"] = pairwise(grads)
    r["alphas"] = alphas_section(case, i)
    tick("pairwise and alphas")
    r["sweep"] = sweep(case, i, settings, tick)
    r["training"] = training(case, i, settings, tick)
    r["std_note"] = std_note(case, i)
    r = _jsonable(r)
    r["findings"] = findings(r)
    return r
