"""Stress test: random valid networks of built-in layers, correct or with one seeded bug.

    python benchmarks/stress.py --n 500 [--bugs] [--kinky] [--dtype float64|float32|both]
                                [--seed S] [--mode local|network] [--quiet]

Correct networks (default): every case must pass; a failing one is a *false alarm*.
``--bugs``: each case gets one seeded bug, in-process (no file is edited): a temporary
registered subclass of one layer's class whose backward returns the gradient of one tensor
(x or a parameter) with one random entry moved by 1e-4 (float64) or 1e-2 (float32) times that
tensor's largest gradient magnitude, in one form or in all forms of the layer. The bug is
*caught* when the case fails and *named* when its (layer, tensor) is in ``CaseResult.culprits``.
A bug not caught is a *miss*; caught but not named is a *wrong culprit*.

``--kinky``: bias-free layers, many ReLUs, overlapping max-pools. Each reported case is printed
as YAML (the bug as a comment) so it can be run again with ``gradcheck run``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import platform
import sys
import time
from datetime import datetime, timezone

from pathlib import Path

import numpy as np
import yaml

if __package__ in (None, ""):                     # run as a script: the repo root holds the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradcheck_cli import registry
from gradcheck_cli.cases import from_dict
from gradcheck_cli.check import DEFAULT_TOLERANCE, run_case
from gradcheck_cli.errors import GradcheckError
from gradcheck_cli.network import Network

LOSSES = ("projection", "sum", "mse", "cross_entropy")
MAX_ENTRIES = 400          # largest activation (entries of one layer's input) we generate
BUG_SCALE = {"float64": 1e-4, "float32": 1e-2}
# abc_conv2d's rules that are the exact derivative of their surrogate (eq7_literal is the paper's
# Eq. 7 read literally, wrong by design: it must fail, so it is not a "correct network")
ABC_RULES = ("eq1", "eq2", "exact", "ste_mean_std")
BUG_TYPE = "stress_bug"    # registered name of the layer class carrying the seeded bug


# ------------------------------------------------------------------------------------------
# random valid networks
# ------------------------------------------------------------------------------------------
def _pair(rng, lo: int, hi: int):
    """An int or, half the time, a pair [a, b] drawn in [lo, hi]."""
    if rng.random() < 0.5:
        return int(rng.integers(lo, hi + 1))
    return [int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))]


def _conv_opts(rng, kinky: bool, two_d: bool) -> dict:
    """Kernel, stride (often larger than the kernel) and padding (sometimes at least the kernel)."""
    draw = (lambda lo, hi: _pair(rng, lo, hi)) if two_d else (lambda lo, hi: int(rng.integers(lo, hi + 1)))
    opts = {"out_channels": int(rng.integers(1, 5)), "kernel": draw(1, 3), "stride": draw(1, 4),
            "padding": draw(0, 3)}
    if kinky or rng.random() < 0.4:
        opts["bias"] = False
    return opts


def _layer_choices(rank: int, kinky: bool) -> list[tuple[str, float]]:
    """(type, weight) of the layers that take an input of this rank."""
    act = [("relu", 3.0 if kinky else 1.0), ("sigmoid", 0.5), ("tanh", 0.5), ("add", 0.5)]
    if rank == 2:
        return act + [("linear", 2.0), ("correlation1d", 0.7)]
    if rank == 3:
        return act + [("conv1d", 2.0), ("flatten", 0.5)]
    return act + [("conv2d", 2.0), ("abc_conv2d", 0.7), ("maxpool2d", 1.5 if kinky else 0.8),
                  ("avgpool2d", 0.5), ("flatten", 0.3)]


def _options(kind: str, rng, kinky: bool) -> dict:
    if kind == "linear":
        opts = {"out_features": int(rng.integers(1, 7))}
        if kinky or rng.random() < 0.4:
            opts["bias"] = False
        return opts
    if kind in ("conv2d", "conv1d"):
        return _conv_opts(rng, kinky, kind == "conv2d")
    if kind == "abc_conv2d":
        opts = _conv_opts(rng, kinky, True)
        opts.update(bases=int(rng.integers(1, 4)), backward=str(rng.choice(ABC_RULES)))
        return opts
    if kind == "correlation1d":
        return {"kernel": int(rng.integers(1, 4))}
    if kind in ("maxpool2d", "avgpool2d"):
        size = _pair(rng, 1, 3)
        overlap = kinky and kind == "maxpool2d"
        return {"size": size, "stride": _pair(rng, 1, 2) if overlap else _pair(rng, 1, 4)}
    return {}


def _input_shape(rng) -> list[int]:
    n = int(rng.integers(1, 4))
    rank = int(rng.choice([2, 3, 4], p=[0.3, 0.2, 0.5]))
    if rank == 2:
        return [n, int(rng.integers(1, 9))]
    if rank == 3:
        return [n, int(rng.integers(1, 4)), int(rng.integers(3, 13))]
    return [n, int(rng.integers(1, 4)), int(rng.integers(3, 11)), int(rng.integers(3, 11))]


def _next_layer(rng, shape: tuple[int, ...], kinky: bool) -> tuple[dict, tuple[int, ...]] | None:
    """A random layer valid on ``shape`` and its output shape (None after a few failed draws)."""
    choices = _layer_choices(len(shape), kinky)
    w = np.array([c[1] for c in choices])
    for _ in range(20):
        kind = choices[int(rng.choice(len(choices), p=w / w.sum()))][0]
        cfg = {"type": kind, **_options(kind, rng, kinky)}
        try:
            out = tuple(layer_class(kind)(**cfg_options(cfg)).output_shape(tuple(shape)))
        except (GradcheckError, ValueError, TypeError):
            continue
        if 0 < int(np.prod(out)) <= MAX_ENTRIES and min(out) > 0:
            return cfg, out
    return None


def layer_class(kind: str) -> type:
    """The registered class of a built-in layer type."""
    import gradcheck_cli.layers  # noqa: F401 - registers the built-in layers

    return registry.LAYERS[kind].cls


def cfg_options(cfg: dict) -> dict:
    """The options of a layer entry (everything but ``type``), pairs as tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k != "type"}


def make_case(rng, index: int, kinky: bool, dtype: str) -> dict:
    """One random valid case (a dict shaped like the YAML file), validated by the case loader."""
    while True:
        shape = tuple(_input_shape(rng))
        depth = int(rng.integers(2, 9))
        layers, cur = [], shape
        for _ in range(depth):
            got = _next_layer(rng, cur, kinky)
            if got is None:
                break
            layers.append(got[0])
            cur = got[1]
        if len(layers) < 2:
            continue
        doc = {"name": f"stress-{index}", "seed": int(rng.integers(0, 2**20)), "dtype": dtype,
               "input": list(shape), "layers": layers,
               "loss": {"type": str(rng.choice(LOSSES)), "reduction": str(rng.choice(["sum", "mean"]))}}
        if rng.random() < 0.5:
            doc["regularization"] = {"l2": float(rng.choice([0.01, 0.1, 1.0]))}
        try:
            from_dict(doc)
        except GradcheckError:
            continue
        return doc


# ------------------------------------------------------------------------------------------
# seeded bugs
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Bug:
    """One entry of one tensor's gradient of one layer, moved by ``delta`` in ``forms``."""

    layer: int
    tensor: str
    index: tuple[int, ...]
    delta: float
    forms: tuple[str, ...]
    all_forms: bool

    def describe(self) -> str:
        which = "all forms" if self.all_forms else f"form {self.forms[0]}"
        return (f"layers[{self.layer}].{self.tensor}{list(self.index)} moved by {self.delta:.3g} "
                f"({which})")


def draw_bug(rng, doc: dict) -> Bug | None:
    """A random (layer, tensor, entry, one form or all) and the move of the issue: 1e-4 (1e-2 in
    float32) x the tensor's largest gradient magnitude (the float64 gradient, l2 included).

    Only tensors whose move exceeds 10 x the dtype's atol are drawn: a tensor whose gradient is
    zero to rounding (dead ReLUs) would get a "bug" of 1e-20, below any absolute tolerance.
    None when the case has no such tensor."""
    net = Network.build(from_dict(doc))
    xs = net.forward(np.float64)
    scale = BUG_SCALE[doc["dtype"]]
    grads = net.backward(next(iter(net.layers[0].forms)), xs)
    floor = 10 * DEFAULT_TOLERANCE[doc["dtype"]][1]
    pool = [(i, t) for i, t in net.tensors() if scale * np.max(np.abs(grads[i][t])) > floor]
    if not pool:
        return None
    i, t = pool[int(rng.integers(len(pool)))]
    layer = net.layers[i]
    forms = tuple(layer.forms)
    g = np.asarray(net.backward(forms[0], xs)[i][t], np.float64)
    index = tuple(int(k) for k in np.unravel_index(int(rng.integers(g.size)), g.shape))
    delta = scale * float(np.max(np.abs(g))) * float(rng.choice([-1.0, 1.0]))
    all_forms = bool(rng.random() < 0.5)
    return Bug(i, t, index, delta, forms if all_forms else (str(rng.choice(forms)),), all_forms)


def buggy_class(base: type, bug: Bug) -> type:
    """A subclass of ``base`` whose backward moves the bug's entry in the bug's forms."""

    class Buggy(base):
        def backward(self, form_name, dy, x, params):
            g = dict(super().backward(form_name, dy, x, params))
            if form_name in bug.forms:
                v = np.array(g[bug.tensor], copy=True)
                v[bug.index] += np.asarray(bug.delta, dtype=v.dtype)
                g[bug.tensor] = v
            return g

    Buggy.__name__ = f"Buggy{base.__name__}"
    return Buggy


@contextlib.contextmanager
def seeded(doc: dict, bug: Bug):
    """The case with the bug's layer replaced by a registered buggy subclass (removed after)."""
    base = layer_class(doc["layers"][bug.layer]["type"])
    registry.register(BUG_TYPE)(buggy_class(base, bug))
    try:
        layers = [dict(c) for c in doc["layers"]]
        layers[bug.layer]["type"] = BUG_TYPE
        yield {**doc, "layers": layers}
    finally:
        registry.LAYERS.pop(BUG_TYPE, None)


# ------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------
def check(doc: dict, mode: str | None = None):
    """run_case on the dict; ``mode`` passed only when this engine's run_case accepts it."""
    kw = {}
    if mode and "mode" in inspect.signature(run_case).parameters:
        kw["mode"] = mode
    return run_case(from_dict(doc), **kw)


def run_one(doc: dict, bug: Bug | None, mode: str | None) -> tuple[str, object]:
    """Outcome of one case: "ok" | "false alarm" | "miss" | "wrong culprit" | "error"."""
    try:
        if bug is None:
            res = check(doc, mode)
            return ("ok" if res.passed else "false alarm"), res
        with seeded(doc, bug) as bad:
            res = check(bad, mode)
    except Exception as exc:  # noqa: BLE001 - reported with the case, the batch goes on
        return "error", exc
    if res.passed:
        return "miss", res
    return ("ok" if (bug.layer, bug.tensor) in res.culprits else "wrong culprit"), res


def cases(n: int, seed: int, kinky: bool, dtypes: list[str], bugs: bool):
    """(doc, bug or None) for N cases from ``seed``: dtypes alternate."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        while True:
            doc = make_case(rng, k, kinky, dtypes[k % len(dtypes)])
            bug = draw_bug(rng, doc) if bugs else None
            if bug or not bugs:
                break
        yield doc, bug


def summary_of(res) -> str:
    if isinstance(res, Exception):
        return f"{type(res).__name__}: {res}"
    bad = [f"{r.label}/{r.form} failed {r.failed} (kinks {r.kinks}, worst {list(r.worst_index)})"
           for r in res.rows if not r.passed]
    return f"culprits {res.culprits}; " + ("; ".join(bad[:4]) or "every row passed")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--bugs", action="store_true", help="seed one bug per case")
    ap.add_argument("--kinky", action="store_true", help="bias-free layers, ReLUs, overlapping max-pools")
    ap.add_argument("--dtype", choices=["float64", "float32", "both"], default="both")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", choices=["local", "network"], default=None)
    ap.add_argument("--quiet", action="store_true", help="no YAML, counts only")
    a = ap.parse_args(argv)
    dtypes = ["float64", "float32"] if a.dtype == "both" else [a.dtype]
    counts: dict[str, int] = {}
    by_dtype: dict[tuple[str, str], int] = {}
    start = time.time()
    for doc, bug in cases(a.n, a.seed, a.kinky, dtypes, a.bugs):
        outcome, res = run_one(doc, bug, a.mode)
        counts[outcome] = counts.get(outcome, 0) + 1
        by_dtype[(doc["dtype"], outcome)] = by_dtype.get((doc["dtype"], outcome), 0) + 1
        if outcome != "ok" and not a.quiet:
            print(f"--- {outcome}: {doc['name']}" + (f" · bug {bug.describe()}" if bug else ""))
            print(f"# {summary_of(res)}")
            print(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None).rstrip())
        sys.stdout.flush()
    used = getattr(res, "mode", a.mode or "network") if not isinstance(res, Exception) else a.mode
    print(f"== {a.n} {'seeded bugs' if a.bugs else 'correct networks'}"
          f"{' (kinky)' if a.kinky else ''}, dtype {a.dtype}, seed {a.seed}, mode {used}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
          + " | " + ", ".join(f"{d} {o} {v}" for (d, o), v in sorted(by_dtype.items()))
          + f" | {time.time() - start:.0f} s, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{platform.node()} {platform.machine()}")
    return 0 if set(counts) <= {"ok"} else 1


if __name__ == "__main__":
    sys.exit(main())
