"""Case -> rows of results. Pure: no printing, no files written.

For every layer i and tensor t (its input x and each parameter) the numerical gradient of the
case's scalar loss is computed once and shared by the forms; each form's analytic gradient,
backpropagated through the whole network with that form, is compared entry by entry.

Verdict of one entry (a analytic, n numerical):
    |a - n| <= atol + rtol * max(|a|, |n|) + noise
where noise is the rounding-error estimate of the central difference
(32 u |L(v+h)| + |L(v-h)| / 2h). An entry that fails this but whose one-sided differences
disagree (a kink: the step crosses a non-differentiable point) passes when a lies between the
left and right differences (within the same tolerance) and is counted in ``kinks``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from .cases import Case
from .network import Network
from .numeric import Numerical, central_differences, chunk_size

DEFAULT_TOLERANCE = {"float64": (1e-6, 1e-9), "float32": (1e-3, 1e-5)}
KINK_GAP = 1e-3     # one-sided differences further apart than this (relative) mark a kink
WORST_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class Entry:
    index: tuple[int, ...]
    analytic: float
    numerical: float
    abs_error: float
    rel_error: float

    def to_json(self) -> dict[str, Any]:
        return {"index": list(self.index), "analytic": _num(self.analytic),
                "numerical": _num(self.numerical), "abs_error": _num(self.abs_error),
                "rel_error": _num(self.rel_error)}


@dataclasses.dataclass
class Row:
    """One checked (layer, tensor, form)."""

    layer: int
    type: str
    tensor: str
    form: str
    shape: tuple[int, ...]
    checked: int
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...]
    failed: int
    kinks: int
    passed: bool
    worst: list[Entry] = dataclasses.field(default_factory=list)
    note: str = ""

    @property
    def label(self) -> str:
        return f"layers[{self.layer}].{self.tensor}"

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer, "type": self.type, "tensor": self.tensor, "form": self.form,
            "shape": list(self.shape), "checked": self.checked,
            "max_abs_error": _num(self.max_abs_error), "max_rel_error": _num(self.max_rel_error),
            "worst_index": list(self.worst_index), "failed": self.failed, "kinks": self.kinks,
            "passed": self.passed, "note": self.note,
            "worst": [e.to_json() for e in self.worst],
        }


@dataclasses.dataclass
class Agreement:
    """Largest difference between the forms of one tensor."""

    layer: int
    tensor: str
    forms: tuple[str, ...]
    max_abs_diff: float
    max_rel_diff: float

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "tensor": self.tensor, "forms": list(self.forms),
                "max_abs_diff": _num(self.max_abs_diff), "max_rel_diff": _num(self.max_rel_diff)}


@dataclasses.dataclass
class CaseResult:
    name: str
    file: str
    seed: int
    dtype: str
    rtol: float
    atol: float
    rows: list[Row]
    agreement: list[Agreement]
    evaluations: int
    sample: int | None = None
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "passed": self.passed, "seed": self.seed,
                "dtype": self.dtype, "tolerance": {"rtol": self.rtol, "atol": self.atol},
                "sample": self.sample, "forward_evaluations": self.evaluations,
                "checks": [r.to_json() for r in self.rows],
                "form_agreement": [a.to_json() for a in self.agreement]}


def _num(x: float) -> float | str:
    """JSON has no NaN/Inf: write them as strings."""
    x = float(x)
    return x if np.isfinite(x) else str(x)


def tolerance(case: Case) -> tuple[float, float]:
    rtol, atol = DEFAULT_TOLERANCE[case.dtype]
    return (case.rtol if case.rtol is not None else rtol, case.atol if case.atol is not None else atol)


def run_case(case: Case, sample: int | None = None, forms: tuple[str, ...] | None = None,
             progress: Callable[[int, int], None] | None = None) -> CaseResult:
    """Check every layer's x and parameters of ``case`` in every requested form.

    ``sample``: check K random entries per tensor instead of all (seeded by the case's seed).
    ``progress(done, total)`` is called as entries are evaluated.
    """
    net = Network.build(case)
    rtol, atol = tolerance(case)
    dt = net.dtype
    xs64 = net.forward(np.float64)
    xs_dt = net.forward(dt)
    wanted = forms or case.forms
    form_names = _forms_in_use(net, wanted)
    grads = {f: net.backward(f, xs_dt, dt) for f in form_names}
    L0 = float(net.loss.value(xs64[-1]) + net.reg_value())

    rng = np.random.default_rng([case.seed, 1])
    tensors = net.tensors()
    picks = {}
    for i, t in tensors:
        size = net.value_of(i, t, xs64).size
        picks[(i, t)] = (np.sort(rng.choice(size, size=sample, replace=False))
                         if sample and sample < size else np.arange(size))
    total, done = sum(len(p) for p in picks.values()), 0
    per_copy = 8 * sum(int(np.prod(s)) for s in net.shapes) * 3

    rows, agreement, evaluations = [], [], 0
    arrays = _base_arrays(net)
    for i, t in tensors:
        layer = net.layers[i]
        base = net.value_of(i, t, xs64)
        idx = picks[(i, t)]

        def tick(k: int, _i=i) -> None:
            nonlocal done
            done += k
            if progress:
                progress(done, total)

        numer = central_differences(lambda V, i=i, t=t: net.stacked_loss(i, t, V, xs64), base, idx,
                                    case.eps, chunk_size(per_copy + base.nbytes, len(idx)), tick)
        evaluations += numer.evaluations
        own = [f for f in form_names if f in layer.forms]
        for f in own:
            a = np.asarray(grads[f][i][t], dtype=np.float64)
            rows.append(_judge(i, layer.type_name, t, f, a, numer, L0, rtol, atol))
            extra = layer.row_note(t, f, a.reshape(-1)[idx], numer.values)
            rows[-1].note = "; ".join(s for s in (rows[-1].note, extra) if s)
            arrays[f"layer{i}.{t}.{f}.analytic"] = a
            full = np.full(base.shape, np.nan)
            full.reshape(-1)[idx] = numer.values
            arrays[f"layer{i}.{t}.{f}.numerical"] = full
        if len(own) > 1:
            agreement.append(_agreement(i, t, [(f, grads[f][i][t]) for f in own]))
    return CaseResult(case.name, case.file, case.seed, case.dtype, rtol, atol, rows, agreement,
                      evaluations, sample, arrays)


def _forms_in_use(net: Network, wanted: tuple[str, ...] | None) -> list[str]:
    present: list[str] = []
    for layer in net.layers:
        for f in layer.forms:
            if f not in present and (wanted is None or f in wanted):
                present.append(f)
    return present


def _judge(i: int, type_name: str, t: str, f: str, a_full: np.ndarray, numer: Numerical,
           L0: float, rtol: float, atol: float) -> Row:
    shape = a_full.shape
    a = a_full.reshape(-1)[numer.index]
    n = numer.values
    err = np.abs(a - n)
    mag = np.maximum(np.abs(a), np.abs(n))
    thr = atol + rtol * mag + numer.noise
    bad = ~(err <= thr)                       # NaN/Inf in either side fails
    kinks = np.zeros_like(bad)
    if bad.any():
        right = (numer.plus - L0) / numer.step
        left = (L0 - numer.minus) / numer.step
        gap = np.abs(right - left)
        scale = np.maximum(np.maximum(np.abs(right), np.abs(left)), atol / rtol)
        kinks = bad & (gap > KINK_GAP * scale + 4 * numer.noise)
        lo, hi = np.minimum(left, right), np.maximum(left, right)
        between = (a >= lo - thr) & (a <= hi + thr)
        bad = bad & ~(kinks & between)
    rel = err / np.maximum(mag, atol / rtol)
    ratio = np.where(np.isfinite(err), err / thr, np.inf)
    ratio = np.where(kinks & ~bad, 0.0, ratio)  # a kink that passes is not "worst"
    order = np.argsort(-ratio, kind="stable")[:WORST_SHOWN]
    worst = [Entry(tuple(int(v) for v in np.unravel_index(numer.index[k], shape)), float(a[k]),
                   float(n[k]), float(err[k]), float(rel[k])) for k in order if bad[k]]
    wi = tuple(int(v) for v in np.unravel_index(numer.index[order[0]], shape)) if len(order) else ()
    note = ""
    if not np.all(np.isfinite(a)):
        note = "analytic gradient has NaN/Inf"
    elif not np.all(np.isfinite(n)):
        note = "numerical gradient has NaN/Inf (the forward overflows near this point)"
    return Row(i, type_name, t, f, tuple(shape), len(n), float(np.max(err, initial=0.0)),
               float(np.max(rel, initial=0.0)), wi, int(bad.sum()), int(kinks.sum()),
               not bad.any(), worst, note)


def _agreement(i: int, t: str, pairs: list[tuple[str, np.ndarray]]) -> Agreement:
    diff, scale = 0.0, 0.0
    for k, (_, g) in enumerate(pairs):
        scale = max(scale, float(np.max(np.abs(g), initial=0.0)))
        for _, h in pairs[k + 1:]:
            diff = max(diff, float(np.max(np.abs(np.asarray(g, np.float64) - h), initial=0.0)))
    return Agreement(i, t, tuple(f for f, _ in pairs), diff, diff / scale if scale else diff)


def _base_arrays(net: Network) -> dict[str, np.ndarray]:
    arrays = {"input": net.x0}
    kind = net.loss.loss.target_kind
    if net.loss.target is not None:
        arrays["projection" if kind == "projection" else "target"] = net.loss.target
    for i, p in enumerate(net.params):
        for name, v in p.items():
            arrays[f"layer{i}.{name}"] = v
    return arrays
