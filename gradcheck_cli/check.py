"""Case -> rows of results. Pure: no printing, no files written.

For every layer i and tensor t (its input x and each parameter) the numerical gradient of the
case's scalar loss is computed once and shared by the forms; each form's analytic gradient,
backpropagated through the whole network with that form, is compared entry by entry.

Verdict of one entry (a analytic, n central difference at the default step h):

    |a - n| <= atol + rtol * max(|a|, |n|) + noise (+ 64 e32 in float32)

noise is the rounding-error estimate of the central difference, 32 u (|L(v+h)| + |L(v-h)|) / 2h;
e32 (float32 cases only) is the float32 error estimate of the analytic side (``float32_error``).
NaN or Inf on either side never passes.

Kinks. An entry that fails this test is judged again by its one-sided differences when they
disagree (|right - left| >= |a - n| / 10) or when a layer's ``kink_distance`` says its own step
crosses a kink: each per-sample term l_n of L (and the regularizer) is evaluated at v +- h and
v +- h/8, and each side's difference is extrapolated to step 0 (Richardson,
D = (8 d(h/8) - d(h)) / 7; a side that does not cross the kink gives the derivative to O(h^2)).
The entry passes, and is counted in ``kinks``, when a lies between sum_n min(D_left, D_right) and
sum_n max(D_left, D_right) within the tolerance (plus their rounding estimate). At a smooth
point both extrapolations equal the derivative to O(h^2), so a wrong gradient still fails there. Entries whose step
crosses a kink by the layer's own account are counted in ``kinks`` whichever way they pass.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from . import frozen, kinks
from .cases import Case
from .errors import CaseError, GradcheckError
from .network import Network
from .numeric import NOISE_FACTOR, U64, Numerical, json_number as _num

# (rtol, atol) per dtype; docs/verdicts.md says why
DEFAULT_TOLERANCE = {"float64": (1e-6, 1e-9), "float32": (1e-3, 1e-5)}
U32 = float(np.finfo(np.float32).eps)
ERR32_FACTOR = 64.0   # float32 error estimate -> tolerance (measured actual/estimate <= 25)
REFINE = 8            # the kink rule's second step is h / REFINE
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
class Direction:
    """The composition check along one random direction d of every checked tensor at once:
    <grad L, d> (each form's analytic gradients) against the central difference of the whole
    loss along d. A wiring mistake between layers that every layer-local row misses shows here."""

    form: str
    direction: int              # which of the seeded directions
    analytic: float
    numerical: float
    abs_error: float
    rel_error: float
    tolerance: float
    passed: bool

    @property
    def label(self) -> str:
        return f"network <grad, d{self.direction}>"

    def to_json(self) -> dict[str, Any]:
        return {"form": self.form, "direction": self.direction, "analytic": _num(self.analytic),
                "numerical": _num(self.numerical), "abs_error": _num(self.abs_error),
                "rel_error": _num(self.rel_error), "tolerance": _num(self.tolerance),
                "passed": self.passed}


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
    evaluations: int            # perturbed copies actually run (Network.copies)
    sample: int | None = None
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)
    kink_layers: list[kinks.LayerKinks] = dataclasses.field(default_factory=list)
    resampled: int = 0          # samples of the generated input drawn again (kink margin)
    unchecked: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # no requested form
    mode: str = "network"       # "local" (layer-local rows + composition) | "network" (whole loss)
    composition: list[Direction] = dataclasses.field(default_factory=list)
    seconds: float = 0.0        # wall time of the check

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows) and all(d.passed for d in self.composition)

    @property
    def culprits(self) -> list[tuple[int, str]]:
        """The (layer, tensor) pairs named wrong, in layer order.

        Mode "local": exactly the tensors whose layer-local check fails in some form. Mode
        "network": the failing tensors of the layer where the disagreement starts (the layers
        before it fail too, only because they receive its gradient).
        """
        failing = []
        for r in self.rows:
            if not r.passed and (r.layer, r.tensor) not in failing:
                failing.append((r.layer, r.tensor))
        if self.mode == "network" and failing:
            k = self.culprit
            failing = [(i, t) for i, t in failing if i == k]
        return failing

    @property
    def culprit(self) -> int | None:
        """The failing layer with the highest index: where the disagreement starts.

        Every layer before it receives its dL/dx, so their rows fail too; the first failing
        layer from the loss side is the one to look at.
        """
        failing = [r.layer for r in self.rows if not r.passed]
        return max(failing) if failing else None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "passed": self.passed,
                "disagreement_starts_at": self.culprit, "mode": self.mode,
                "culprits": [{"layer": i, "tensor": t} for i, t in self.culprits],
                "seed": self.seed,
                "dtype": self.dtype, "tolerance": {"rtol": self.rtol, "atol": self.atol},
                "sample": self.sample, "forward_evaluations": self.evaluations,
                "checks": [r.to_json() for r in self.rows],
                "composition": [d.to_json() for d in self.composition],
                "form_agreement": [a.to_json() for a in self.agreement],
                "kink_distance": {"resampled_samples": self.resampled,
                                  "layers": [k.to_json() for k in self.kink_layers]},
                "unchecked_layers": [{"layer": i, "type": t} for i, t in self.unchecked]}


def tolerance(case: Case) -> tuple[float, float]:
    rtol, atol = DEFAULT_TOLERANCE[case.dtype]
    return (case.rtol if case.rtol is not None else rtol, case.atol if case.atol is not None else atol)


def run_case(case: Case, sample: int | None = None, forms: tuple[str, ...] | None = None,
             progress: Callable[[int, int], None] | None = None, memory_limit: int | None = None,
             on_estimate: Callable[[Any], None] | None = None) -> CaseResult:
    """Check every layer's x and parameters of ``case`` in every requested form.

    ``sample``: check K random entries per tensor instead of all (seeded by the case's seed).
    ``progress(done, total)`` is called as entries are evaluated. Before anything big runs,
    the cost is estimated (cost.py) and passed to ``on_estimate``; when it would not fit in
    ``memory_limit`` bytes, :class:`cost.MemoryRefused` is raised.
    """
    from . import cost, numeric

    net = Network.build(case, _preflight(case, memory_limit))
    resampled, margins = kinks.keep_margin(net)
    rtol, atol = tolerance(case)
    dt = net.dtype
    xs64 = net.forward(np.float64)
    wanted = forms or case.forms
    form_names = _forms_in_use(net, wanted)

    rng = np.random.default_rng([case.seed, 1])
    skipped = [i for i, layer in enumerate(net.layers) if not set(layer.forms) & set(form_names)]
    tensors = [(i, t) for i, t in net.tensors() if i not in skipped]
    if not tensors:
        raise CaseError(case.file, "forms", f"no layer of this case has the form(s) asked for "
                                            f"({', '.join(wanted or ())}): nothing to check")
    picks = {}
    for i, t in tensors:
        size = net.value_of(i, t, xs64).size
        picks[(i, t)] = (np.sort(rng.choice(size, size=sample, replace=False))
                         if sample and sample < size else np.arange(size))
    total, done = sum(len(p) for p in picks.values()), 0
    plans = {key: numeric.plan(net, *key, idx) for key, idx in picks.items()}
    est = cost.estimate(net, list(plans.values()), len(form_names), memory_limit)
    if on_estimate:
        on_estimate(est)
    if not est.fits:
        raise cost.MemoryRefused(est.refusal())

    xs_dt = net.forward(dt)
    grads = {f: net.backward(f, xs_dt, dt) for f in form_names}
    single = dt == np.float32
    grads64, err32 = _float64_side(net, form_names, xs64) if single else ({}, {})
    L0 = float(net.loss.value(xs64[-1]) + net.reg_value())
    T0 = net.base_terms(xs64)
    dist = kinks.distances(net, xs64)

    rows, agreement = [], []
    copies_before = net.copies
    arrays = _base_arrays(net)

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress:
            progress(done, total)

    for i, t in tensors:
        layer = net.layers[i]
        base = net.value_of(i, t, xs64)
        idx = picks[(i, t)]
        numer = numeric.differentiate(net, plans[(i, t)], xs64, T0, L0, case.eps, est.budget, tick)
        chunk = max(1, est.budget // max(1, 2 * cost.copy_bytes(net, i, t)))   # refine: 2 chunk copies a call
        struct = (dist[i].reshape(-1)[idx] <= numer.step) if t == "x" and dist[i] is not None else None
        on_kink = frozen.kinks_from(dist, i)     # exact kinks downstream: a step may cross several
        own = [f for f in form_names if f in layer.forms]
        analytic = {f: np.asarray(grads[f][i][t], dtype=np.float64) for f in own}
        extra = {f: ERR32_FACTOR * err32[f][i][t].reshape(-1)[idx] for f in own if f in err32}
        # one refinement (steps h/8) shared by the forms, for every entry some form needs judged again
        need = np.zeros(len(idx), dtype=bool)
        for f in own:
            need |= _needs_refinement(analytic[f].reshape(-1)[idx], numer, rtol, atol,
                                      extra.get(f), struct, on_kink)
        fine = froz = None
        if need.any():
            fine = refine(net, i, t, xs64, base, idx[need], numer.step[need], chunk)
            froz = frozen.differences(net, i, t, xs64, base, idx[need], numer.step[need])
        for f in own:
            a = analytic[f]
            row = _judge(i, layer.type_name, t, f, a, numer, rtol, atol, extra.get(f), fine, need,
                         struct, froz, on_kink)
            if f in grads64 and not row.passed:
                row.note = _float32_note(row, i, layer.type_name, t, f, grads64[f][i][t], numer,
                                         fine, need, struct, case, froz, on_kink)
            layer_note = layer.row_note(t, f, a.reshape(-1)[idx], numer.values)
            row.note = "; ".join(s for s in (row.note, layer_note) if s)
            rows.append(row)
            arrays[f"layer{i}.{t}.{f}.analytic"] = a
            full = np.full(base.shape, np.nan)
            full.reshape(-1)[idx] = numer.values
            arrays[f"layer{i}.{t}.{f}.numerical"] = full
        if len(own) > 1:
            agreement.append(_agreement(i, t, [(f, grads[f][i][t]) for f in own]))
    return CaseResult(case.name, case.file, case.seed, case.dtype, rtol, atol, rows, agreement,
                      net.copies - copies_before, sample, arrays, kinks.report(net, xs64, margins), resampled,
                      [(i, net.layers[i].type_name) for i in skipped])


def _preflight(case: Case, limit: int | None) -> list | None:
    """Refuse, from the shapes alone and before any array exists, a case whose network cannot
    even be built: float64 input, parameters and activations, held twice (the draws and the
    forward), over ``limit`` bytes. The full estimate (cost.py) follows once it is built.
    Returns the layers it made (for :meth:`Network.build`), None when there is no limit."""
    if limit is None:
        return None
    from .cost import ENV, human
    from .network import make_layer

    shapes = case.shapes
    layers = [make_layer(cfg, case.file) for cfg in case.layers]
    params = sum(int(np.prod(s)) for layer, shape in zip(layers, shapes)
                 for s in layer.param_shapes(shape).values())
    need = 2 * 8 * (sum(int(np.prod(s)) for s in shapes) + params)
    if need > limit:
        raise CaseError(case.file, "input",
                        f"the network alone needs about {human(need)} (input {list(case.input_shape)}, "
                        f"{params:,} parameters), over the memory limit of {human(limit)} "
                        f"(--max-memory / {ENV}); use a smaller batch or input")
    return layers


def _float64_side(net: Network, form_names: list[str], xs64: list[np.ndarray]):
    """Each form run in float64 (for the float32 note) and its float32 error estimate. A form
    whose code refuses float64 arrays (a user's float32-only layer) goes without both."""
    grads64, err32 = {}, {}
    for f in form_names:
        try:
            grads64[f] = net.backward(f, xs64, np.float64)
            err32[f] = float32_error(net, f, xs64, grads64[f])
        except GradcheckError:
            grads64.pop(f, None)
    return grads64, err32


def float32_error(net: Network, form: str, xs64: list[np.ndarray],
                  g64: list[dict[str, np.ndarray]], trials: int = 2) -> list[dict[str, np.ndarray]]:
    """Float32 error estimate of the analytic gradients of ``form``, entry by entry.

    A correct float32 computation is the exact computation on data perturbed by about one unit
    of float32 rounding u32 at every step. So the same form is run in float64 with every input,
    parameter and activation multiplied by (1 + u32 r), r uniform in [-1, 1] (seeded, and a
    function of the value: equal values round alike, so exact ties -- a max-pool window of
    equal maxima -- stay ties, as they do in float32; see :func:`_value_noise`), and the
    largest change of each entry over ``trials`` runs is its estimate, floored at the rms estimate
    of its tensor. Where the gradient cancels (a small entry summed from large terms) the estimate
    grows with the terms, not with the entry.
    """
    rng = np.random.default_rng([net.case.seed, 3])

    def jitter(a: np.ndarray) -> np.ndarray:
        return a * (1.0 + U32 * _value_noise(a, int(rng.integers(2**63))))

    est = [{k: np.zeros(np.shape(v)) for k, v in g.items()} for g in g64]
    for _ in range(trials):
        params = [{k: jitter(v) for k, v in p.items()} for p in net.params]
        xs = [jitter(xs64[0])]
        for layer, p in zip(net.layers, params):
            xs.append(jitter(np.asarray(layer.forward(xs[-1], p), dtype=np.float64)))
        g = dataclasses.replace(net, params=params).backward(form, xs, np.float64)
        for e, gj, g0 in zip(est, g, g64):
            for k in e:
                np.maximum(e[k], np.abs(np.asarray(gj[k], np.float64) - g0[k]), out=e[k])
    # a few random trials can miss an entry by luck: floor each at its tensor's rms estimate
    for e in est:
        for k, v in e.items():
            v = np.where(np.isfinite(v), v, 0.0)         # NaN/Inf entries fail on their own
            e[k] = np.maximum(v, np.sqrt(np.mean(v ** 2)) if v.size else 0.0)
    return est


def _value_noise(a: np.ndarray, key: int) -> np.ndarray:
    """Pseudo-random r in [-1, 1) per entry, a function of the entry's float64 value and ``key``.

    Rounding is a function of the operands: identical values computed identically round
    identically. Independent draws per entry would break exact ties (equal maxima of a max-pool
    window, the copies of one maximum that overlapping windows hand on), change the argmax in the
    jittered runs, and inflate the estimate of a tied entry to its whole gradient: a seeded bug
    there then passed in float32. Hashing the value keeps ties tied.
    """
    bits = np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)
    with np.errstate(over="ignore"):
        h = (bits ^ np.uint64(key)) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return (h >> np.uint64(11)).astype(np.float64) * (2.0 / 2**53) - 1.0


def _float32_note(row: Row, i: int, type_name: str, t: str, f: str, a64: np.ndarray,
                  numer: Numerical, fine, need, struct, case: Case, froz=None, on_kink=False) -> str:
    """Say whether a float32 failure exists only in float32: judge the same form run in float64."""
    rtol, atol = DEFAULT_TOLERANCE["float64"]
    r64 = _judge(i, type_name, t, f, np.asarray(a64, np.float64), numer, rtol, atol, None,
                 fine, need, struct, froz, on_kink)
    lead = f"{row.note}; " if row.note else ""
    if r64.passed:
        return (f"{lead}fails only in float32: the same form in float64 passes "
                f"(max rel err {r64.max_rel_error:.1e})")
    return f"{lead}fails in float64 too ({r64.failed} entries): not a precision problem"


def _forms_in_use(net: Network, wanted: tuple[str, ...] | None) -> list[str]:
    present: list[str] = []
    for layer in net.layers:
        for f in layer.forms:
            if f not in present and (wanted is None or f in wanted):
                present.append(f)
    return present


def _threshold(a, n, noise, rtol, atol, extra):
    thr = atol + rtol * np.maximum(np.abs(a), np.abs(n)) + noise
    return thr if extra is None else thr + extra


def _needs_refinement(a, numer: Numerical, rtol, atol, extra, struct, on_kink=False) -> np.ndarray:
    """Entries that fail the central test and that a kink could explain (every failing entry
    when a layer from this one on sits exactly on a kink: its step may cross several at once,
    and their one-sided differences can even agree)."""
    n = numer.values
    err = np.abs(a - n)
    thr = _threshold(a, n, numer.noise, rtol, atol, extra)
    fails = ~(err <= thr) & np.isfinite(a) & np.isfinite(n)
    gap = np.abs(numer.dplus + numer.dminus) / numer.step   # |right - left|, from the local differences
    explainable = gap >= 0.1 * err           # the one-sided differences disagree: maybe a kink
    if struct is not None:
        explainable |= struct
    return fails & (explainable | on_kink)


@dataclasses.dataclass
class Refined:
    """Per-sample losses l_n (the regularizer as one more term) at v +- h and v +- h/REFINE for
    the entries the kink rule judges: arrays (k, N + 1); ``base`` (N + 1,) at v."""

    base: np.ndarray
    plus: np.ndarray
    minus: np.ndarray
    plus_fine: np.ndarray
    minus_fine: np.ndarray
    step: np.ndarray
    step_fine: np.ndarray

    def subset(self, k: np.ndarray) -> "Refined":
        return Refined(self.base, self.plus[k], self.minus[k], self.plus_fine[k], self.minus_fine[k],
                       self.step[k], self.step_fine[k])


def per_sample_losses(net: Network, i: int, t: str, values: np.ndarray, xs: list[np.ndarray]) -> np.ndarray:
    """The terms of L for K values of layer i's tensor t: (K, N + 1), samples then regularizer."""
    terms = net.loss.per_sample_stacked(net.stacked_outputs(i, t, values, xs))
    return np.concatenate([terms, net.stacked_reg(i, t, values)[:, None]], axis=1)


def refine(net: Network, i: int, t: str, xs: list[np.ndarray], base: np.ndarray, index: np.ndarray,
           step: np.ndarray, chunk: int) -> Refined:
    """Evaluate the per-sample terms at v +- h and v +- h/REFINE for the flat entries ``index``."""
    from . import cost, numeric

    flat = np.asarray(base, np.float64).reshape(-1)
    k = len(index)
    steps = np.stack([step, -step, step / REFINE, -step / REFINE])      # (4, k)
    # entries of x with disjoint regions share copies (numeric.py); else one entry per copy below
    coloured = numeric.sample_terms(net, i, t, xs, index, steps, 2 * chunk * cost.copy_bytes(net, i, t))
    if coloured is not None:
        L0, out = coloured
        return Refined(L0, out[0], out[1], out[2], out[3], step, step / REFINE)
    L0 = per_sample_losses(net, i, t, flat.reshape(1, *base.shape), xs)[0]
    per = max(1, chunk // 2)
    parts = []
    for start in range(0, k, per):
        j = index[start:start + per]
        m = len(j)
        V = np.repeat(flat[None], 4 * m, axis=0)
        V[np.arange(4 * m), np.tile(j, 4)] += steps[:, start:start + m].reshape(-1)
        parts.append(per_sample_losses(net, i, t, V.reshape(4 * m, *base.shape), xs).reshape(4, m, -1))
    out = np.concatenate(parts, axis=1)
    return Refined(L0, out[0], out[1], out[2], out[3], step, step / REFINE)


def _kink_pass(a, n, fine: Refined, pos: np.ndarray, rtol, atol, extra):
    """For the entries at positions ``pos``: does a lie in [sum_n min(D_left,n, D_right,n),
    sum_n max(...)], the one-sided differences of each term extrapolated to step 0?

    Splitting L into its per-sample terms lets several samples sit on their kinks at once (a zero
    bias and a zero weight column put every sample on ReLU's kink): each term's analytic share lies
    between its own one-sided derivatives, so the sum lies between the sums of the bounds.
    """
    L0 = fine.base[None]

    def sides(plus, minus, s):
        s = s[:, None]
        noise = NOISE_FACTOR * U64 * (np.maximum(np.abs(plus), np.abs(minus)) + np.abs(L0)) / s
        return (L0 - minus) / s, (plus - L0) / s, noise

    l1, r1, e1 = sides(fine.plus, fine.minus, fine.step)
    l2, r2, e2 = sides(fine.plus_fine, fine.minus_fine, fine.step_fine)
    q = REFINE
    d_left, d_right = (q * l2 - l1) / (q - 1), (q * r2 - r1) / (q - 1)
    noise = ((q * e2 + e1) / (q - 1)).sum(axis=1)
    lo = np.minimum(d_left, d_right).sum(axis=1)
    hi = np.maximum(d_left, d_right).sum(axis=1)
    ap = a[pos]
    thr = atol + rtol * np.maximum(np.abs(ap), np.abs(n[pos])) + noise
    if extra is not None:
        thr = thr + extra[pos]
    return (ap >= lo - thr) & (ap <= hi + thr)


def _frozen_verdict(kink_ok, a, froz, at: np.ndarray, pos: np.ndarray, rtol, atol, extra) -> np.ndarray:
    """For the entries at positions ``pos``: a equals the frozen network's derivative (frozen.py),
    or the kink rule passed it (``kink_ok``) and the frozen network still crosses a kink there
    (one not frozen: its own one-sided differences disagree). Where the frozen network is smooth,
    its derivative alone decides."""
    nf, noise, gap = froz[0][at], froz[1][at], froz[2][at]
    ap = a[pos]
    thr = _threshold(ap, nf, noise, rtol, atol, None if extra is None else extra[pos])
    err = np.abs(ap - nf)
    return (err <= thr) | (kink_ok & (gap >= 0.1 * err))


def _judge(i: int, type_name: str, t: str, f: str, a_full: np.ndarray, numer: Numerical,
           rtol: float, atol: float, extra: np.ndarray | None = None,
           fine: Refined | None = None, need: np.ndarray | None = None,
           struct: np.ndarray | None = None, froz: tuple[np.ndarray, np.ndarray] | None = None,
           on_kink: bool = False) -> Row:
    """One row: the central test, then the kink rule for the entries ``need`` (refined in ``fine``),
    then for those still failing the frozen network's differences ``froz`` (frozen.py)."""
    shape = a_full.shape
    a = a_full.reshape(-1)[numer.index]
    n = numer.values
    err = np.abs(a - n)
    mag = np.maximum(np.abs(a), np.abs(n))
    thr = _threshold(a, n, numer.noise, rtol, atol, extra)
    finite = np.isfinite(a) & np.isfinite(n)
    bad = ~(err <= thr) | ~finite             # NaN/Inf on either side fails
    kink = np.zeros_like(bad) if struct is None else struct.copy()
    by_kink = np.zeros_like(bad)              # failed the central test, passed by the kink rule
    if fine is not None and need is not None and bad.any():
        mine = _needs_refinement(a, numer, rtol, atol, extra, struct, on_kink) & need
        if mine.any():
            pos = np.flatnonzero(mine)
            at = np.searchsorted(np.flatnonzero(need), pos)
            ok = _kink_pass(a, n, fine.subset(at), pos, rtol, atol, extra)
            if froz is not None:
                ok = _frozen_verdict(ok, a, froz, at, pos, rtol, atol, extra)
            bad[pos[ok]] = False
            kink[pos[ok]] = True
            by_kink[pos[ok]] = True
    # entries passed by the kink rule were judged against other numbers: they do not count in
    # the max errors nor as the worst entry
    err = np.where(by_kink, 0.0, err)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = err / np.maximum(mag, atol / rtol)
        ratio = np.where(finite, err / thr, np.inf)
    order = np.argsort(-ratio, kind="stable")[:WORST_SHOWN]
    worst = [Entry(_unravel(numer.index[k], shape), float(a[k]), float(n[k]), float(err[k]),
                   float(rel[k])) for k in order if bad[k]]
    wi = _unravel(numer.index[order[0]], shape) if len(order) else ()
    notes = []
    if not np.all(np.isfinite(a)):
        k = int(np.flatnonzero(~np.isfinite(a))[0])
        notes.append(f"analytic gradient has {int((~np.isfinite(a)).sum())} NaN/Inf entries "
                     f"(first at {list(_unravel(numer.index[k], shape))})")
    if not np.all(np.isfinite(n)):
        notes.append(f"the forward gives NaN/Inf near {int((~np.isfinite(n)).sum())} entries "
                     f"(numerical gradient not finite)")
    return Row(i, type_name, t, f, tuple(shape), len(n), float(np.max(err, initial=0.0)),
               float(np.max(rel, initial=0.0)), wi, int(bad.sum()), int(kink.sum()),
               not bad.any(), worst, "; ".join(notes))


def _unravel(k, shape) -> tuple[int, ...]:
    return tuple(int(v) for v in np.unravel_index(int(k), shape))


def _agreement(i: int, t: str, pairs: list[tuple[str, np.ndarray]]) -> Agreement:
    with np.errstate(invalid="ignore"):          # NaN gradients are reported by their rows
        return _agreement_of(i, t, pairs)


def _agreement_of(i: int, t: str, pairs: list[tuple[str, np.ndarray]]) -> Agreement:
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
