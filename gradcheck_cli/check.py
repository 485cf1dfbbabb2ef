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
import time
from typing import Any, Callable

import numpy as np

from . import frozen, kinks
from .diagnosis import diagnose, row_evidence
from .cases import Case
from .errors import CaseError
from .local import DEFAULT_MODE, MODES_BY_NAME
from .prepared import Plans, Prepared
from .network import Network
from .side_views import side_views
from .results import Agreement, CaseResult, Direction, Entry, Row
from .verdict import (DEFAULT_TOLERANCE, ERR32_FACTOR, REFINE, _agreement, _float32_note,
                      _float64_side, _judge, _needs_refinement, float32_error, per_sample_losses,
                      refine, tolerance)

__all__ = ["run_case", "merge_cotangents", "tolerance", "float32_error", "per_sample_losses", "refine",
           "DEFAULT_TOLERANCE", "REFINE", "Agreement", "CaseResult", "Direction", "Entry", "Row"]

def run_case(case: Case, sample: int | None = None, forms: tuple[str, ...] | None = None,
             progress: Callable[[int, int], None] | None = None, memory_limit: int | None = None,
             on_estimate: Callable[[Any], None] | None = None, mode: str | None = None,
             units: Callable[["Prepared"], list] | None = None) -> CaseResult:
    """Check every layer's x and parameters of ``case`` in every requested form.

    ``mode``: "local" (default; each layer alone, plus the loss and the composition check) or
    "network" (the whole loss, entry by entry); the case's ``mode:`` key when not given.
    ``sample``: check K random entries per tensor instead of all (seeded by the case's seed).
    ``progress(done, total)`` is called as entries are evaluated. Before anything big runs,
    the cost is estimated (cost.py) and passed to ``on_estimate``; when it would not fit in
    ``memory_limit`` bytes, :class:`cost.MemoryRefused` is raised. ``units(prepared)``: the
    outputs of :func:`check_unit` for every ``prepared.units()``, in order, computed elsewhere
    (distribute.py); by default here, one after the other.
    """
    prep = prepare(case, sample, forms, memory_limit, on_estimate, mode)
    if units is not None:
        return finish(prep, units(prep))
    total = sum(len(prep.plans[v][key].index) for v, key in prep.units())
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress:
            progress(done, total)

    return finish(prep, [check_unit(prep, u, tick) for u in prep.units()])


def prepare(case: Case, sample: int | None = None, forms: tuple[str, ...] | None = None,
            memory_limit: int | None = None, on_estimate: Callable[[Any], None] | None = None,
            mode: str | None = None, budget: int | None = None) -> Prepared:
    """Build the network, its views and plans, and refuse what would not fit (see run_case).
    ``budget``: the chunk budget an earlier prepare of the same case settled (distribute.py's
    workers): then no estimate, and each plan is made when a unit first needs it."""
    from . import cost, guards, numeric

    started = time.perf_counter()
    mode = mode or case.mode or DEFAULT_MODE
    if mode not in MODES_BY_NAME:
        raise CaseError(case.file, "mode", f"unknown mode {mode!r}; known: {', '.join(MODES_BY_NAME)}")
    strategy = MODES_BY_NAME[mode]
    net = Network.build(case, _preflight(case, memory_limit))
    for layer in net.layers:        # an expression layer refuses results over the limit (exprlang)
        if hasattr(layer, "memory_limit"):
            layer.memory_limit = memory_limit
    guards.bounded_values(net)      # values whose products overflow are bad input (guards.py)
    resampled, margins = kinks.keep_margin(net)
    dt = net.dtype
    xs64 = net.forward(np.float64)
    wanted = forms or case.forms
    form_names = _forms_in_use(net, wanted)
    skipped = {i for i, layer in enumerate(net.layers) if not set(layer.forms) & set(form_names)}
    tensors = [(i, t) for i, t in net.tensors() if i not in skipped]
    if not tensors:
        raise CaseError(case.file, "forms", f"no layer of this case has the form(s) asked for "
                                            f"({', '.join(wanted or ())}): nothing to check")
    rng = np.random.default_rng([case.seed, 1])
    pick = lambda size: (np.sort(rng.choice(size, size=sample, replace=False))  # noqa: E731
                         if sample and sample < size else np.arange(size))
    picks = {(i, t): pick(net.value_of(i, t, xs64).size) for i, t in tensors}
    xs_dt = net.forward(dt)
    grads = {f: net.backward(f, xs_dt, dt) for f in form_names}
    views = strategy.views(net, xs_dt, grads)
    views += side_views(net, xs_dt, form_names, skipped)
    n = len(net.layers)
    for view in views:      # the loss's view checks y; side views their own tensors (dy), the same way
        for k, i, t in view.rows_of(skipped):
            if (i, t) not in picks:
                picks[(i, t)] = pick(view.net.value_of(k, t, [view.net.x0]).size)
    plans = []
    for v in views:     # a layer's random-cotangent view has its upstream view's plans
        same = plans and v.cotangent == "random" and views[len(plans) - 1].layers == v.layers
        plans.append(plans[-1] if same else Plans(v.net, {(k, t): picks[(i, t)] for k, i, t in v.rows_of(skipped)}))
    if budget is None:
        est = cost.estimate_views(net, [(v.net, list(p.values())) for v, p in zip(views, plans)],
                                  len(form_names), memory_limit)
        if on_estimate:
            on_estimate(est)
        if not est.fits:
            raise cost.MemoryRefused(est.refusal())
        budget = est.budget
    return Prepared(case, mode, sample, net, form_names, skipped, picks, grads, views, plans, budget,
                    xs64, margins, resampled, started, [v.net.copies for v in views])


def finish(prep: Prepared, outs: list) -> CaseResult:
    """The case's result from the outputs of its units (:func:`check_unit`, in ``units()`` order)."""
    from . import composition

    net, case = prep.net, prep.case
    rtol, atol = tolerance(case)
    rows, agreement, arrays = [], [], _base_arrays(net)
    copies = sum(prep.base_copies)
    by_view: dict[int, list] = {}
    for parts in outs:
        for v, *part in parts:
            by_view.setdefault(v, []).append(part)
    for v, view in enumerate(prep.views):
        new = []
        for unit_rows, unit_arrays, unit_agreement, unit_copies in by_view.get(v, []):
            new += unit_rows
            arrays.update(unit_arrays)
            agreement += unit_agreement
            copies += unit_copies
        rows = merge_cotangents(rows, new) if view.cotangent == "random" else rows + new
    strategy = MODES_BY_NAME[prep.mode]
    err32 = (_float64_side(net, prep.form_names, prep.xs64)[1]
             if net.dtype == np.float32 and strategy.directions else None)
    directions = composition.check(net, prep.grads, rtol, atol, err32, strategy.directions)
    loss_rows = [r for r in rows if r.is_loss]
    rows = sorted((r for r in rows if not r.is_loss), key=lambda r: r.layer)   # side views' rows by their layer
    return CaseResult(case.name, case.file, case.seed, case.dtype, rtol, atol, rows, agreement,
                      copies, prep.sample, arrays, kinks.report(net, prep.xs64, prep.margins), prep.resampled,
                      [(i, net.layers[i].type_name) for i in sorted(prep.skipped)], prep.mode, directions,
                      time.perf_counter() - prep.started, loss_rows)


def _view_state(prep: Prepared, v: int) -> dict:
    """What every tensor of view v shares (its forward, backward, loss and kinks), made once."""
    if v not in prep._view_state:
        if len(prep._view_state) > 1:          # a view and its partner at most
            prep._view_state.pop(next(iter(prep._view_state)))
        net = prep.views[v].net
        dt = net.dtype
        xs64, xs_dt = net.forward(np.float64), net.forward(dt)
        forms = [f for f in (*prep.form_names, "loss") if any(f in layer.forms for layer in net.layers)]
        forms += [f for layer in net.layers if getattr(layer, "side", False) for f in layer.forms]
        grads = {f: net.backward(f, xs_dt, dt) for f in forms}
        grads64, err32 = _float64_side(net, forms, xs64, grads) if dt == np.float32 else ({}, {})
        prep._view_state[v] = (dict(xs64=xs64, forms=forms, grads=grads, grads64=grads64, err32=err32,
                                    L0=float(net.loss.value(xs64[-1]) + net.reg_value()),
                                    T0=net.base_terms(xs64), dist=kinks.distances(net, xs64)))
    return prep._view_state[v]


def check_unit(prep: Prepared, unit: tuple[int, tuple[int, str]], tick=None) -> list:
    """Rows of one tensor of one view (local.py), and of its partner view (the random cotangent)
    if it has one, each numerical gradient shared by the forms: a list of (view, rows, arrays,
    agreement, forward evaluations run)."""
    from . import numeric

    v, key = unit
    vs = [v, v + 1] if prep.partner(v) else [v]
    sts = [_view_state(prep, w) for w in vs]
    nets = [prep.views[w].net for w in vs]
    before = [n.copies for n in nets]
    numer = numeric.differentiate(nets[0], prep.plans[v][key], sts[0]["xs64"], sts[0]["T0"], sts[0]["L0"],
                                  prep.case.eps, prep.budget, tick,
                                  also=tuple((n, st["T0"], st["L0"]) for n, st in zip(nets[1:], sts[1:])))
    numer = numer if isinstance(numer, list) else [numer]
    out, known = [], frozenset()
    for w, st, nu, b in zip(vs, sts, numer, before):
        out.append((w, *_view_rows(prep, w, key, st, nu, known), prep.views[w].net.copies - b))
        known = frozenset((r.layer, r.tensor, r.form) for r in out[-1][1] if not r.passed)
    return out


def _view_rows(prep: Prepared, v: int, key: tuple[int, str], st: dict, numer, known=frozenset()):
    """(rows, arrays, agreement) of tensor ``key`` of view v, given its numerical gradient. A
    failing row is diagnosed unless ``known`` holds its key (its upstream row failed: that one is kept)."""
    k, t = key
    view, p, case = prep.views[v], prep.plans[v][key], prep.case
    rtol, atol = tolerance(case)
    net = view.net
    xs64, forms, grads, grads64, err32, dist = (st[n] for n in ("xs64", "forms", "grads", "grads64", "err32", "dist"))
    budget = prep.budget
    suffix = "" if view.cotangent in ("", "upstream") else f".{view.cotangent}"
    rows, arrays, agreement = [], {}, []
    i = view.layers[k]
    layer = net.layers[k]
    base = net.value_of(k, t, xs64)
    idx = p.index
    chunk = max(1, budget // max(1, 2 * net.copy_bytes(k, t)))   # refine: 2 chunk copies a call
    struct = (dist[k].reshape(-1)[idx] <= numer.step) if t == "x" and dist[k] is not None else None
    on_kink = frozen.kinks_from(dist, k)     # exact kinks downstream: a step may cross several
    own = [f for f in forms if f in layer.forms]
    analytic = {f: np.asarray(grads[f][k][t], dtype=np.float64) for f in own}
    extra = {f: ERR32_FACTOR * err32[f][k][t].reshape(-1)[idx] for f in own if f in err32}
    # one refinement (steps h/8) shared by the forms, for every entry some form needs judged again
    need = np.zeros(len(idx), dtype=bool)
    for f in own:
        need |= _needs_refinement(analytic[f].reshape(-1)[idx], numer, rtol, atol, extra.get(f),
                                  struct, on_kink)
    fine = froz = None
    if need.any():
        fine = refine(net, k, t, xs64, base, idx[need], numer.step[need], chunk)
        froz = frozen.differences(net, k, t, xs64, base, idx[need], numer.step[need])
    name = view.name(t)
    for f in own:
        a = analytic[f]
        row = _judge(i, layer.type_name, name, f, a, numer, rtol, atol, extra.get(f), fine, need,
                     struct, froz, on_kink)
        if f in grads64 and not row.passed:
            row.note = _float32_note(row, i, layer.type_name, name, f, grads64[f][k][t], numer,
                                     fine, need, struct, case, froz, on_kink)
        layer_note = layer.row_note(t, f, a.reshape(-1)[idx], numer.values)
        row.note = "; ".join(s for s in (row.note, layer_note, view.note if not row.passed else "") if s)
        row.cotangent = view.cotangent
        if not row.passed and view.diagnose and (i, name, f) not in known:
            row.diagnosis = diagnose(row_evidence(net, k, t, name, a, numer, rtol, atol, extra.get(f),
                                                  xs64, len(idx) < base.size, budget))
        rows.append(row)
        arrays[f"layer{i}.{name}.{f}{suffix}.analytic"] = a
        full = np.full(base.shape, np.nan)
        full.reshape(-1)[idx] = numer.values
        arrays[f"layer{i}.{name}.{f}{suffix}.numerical"] = full
        full = np.full(base.shape, np.nan)
        full.reshape(-1)[idx] = row.verdict
        arrays[f"layer{i}.{name}.{f}{suffix}.verdict"] = full
        row.verdict = None          # kept once, in the arrays
    if len(own) > 1 and view.cotangent in ("", "upstream"):
        agreement.append(_agreement(i, name, [(f, grads[f][k][t]) for f in own]))
    return rows, arrays, agreement


def merge_cotangents(rows: list[Row], random_rows: list[Row]) -> list[Row]:
    """Fold the random cotangent's rows into the upstream ones: one row per (layer, tensor,
    form), passing when both pass. A failing upstream row is kept as it is (the gradient the
    user sees, at its worst entries); a row that fails only with the random cotangent takes that
    check's numbers and says so; passing rows report the larger errors of the two."""
    by_key = {(r.layer, r.tensor, r.form): r for r in random_rows}
    out = []
    for r in rows:
        q = by_key.get((r.layer, r.tensor, r.form))
        if q is None or r.cotangent != "upstream" or not r.passed:
            out.append(r)
        elif not q.passed:
            q.note = "; ".join(x for x in ("fails only with a random cotangent (at entries the "
                                           "upstream gradient leaves untested)", q.note) if x)
            out.append(q)
        else:
            out.append(dataclasses.replace(r, max_abs_error=max(r.max_abs_error, q.max_abs_error),
                                           max_rel_error=max(r.max_rel_error, q.max_rel_error),
                                           kinks=max(r.kinks, q.kinks), cotangent=""))
    return out


def _preflight(case: Case, limit: int | None) -> list | None:
    """Refuse, from the shapes alone and before any array exists, a case whose network cannot
    even be built: float64 input, parameters and activations, held twice (the draws and the
    forward), over ``limit`` bytes. The full estimate (cost.py) follows once it is built.
    Returns the layers it made (for :meth:`Network.build`), None when there is no limit."""
    if limit is None:
        return None
    from .cost import ENV, human
    from .catalog import make_layer

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

def _forms_in_use(net: Network, wanted: tuple[str, ...] | None) -> list[str]:
    present: list[str] = []
    for layer in net.layers:
        for f in layer.forms:
            if f not in present and (wanted is None or f in wanted):
                present.append(f)
    return present

def _base_arrays(net: Network) -> dict[str, np.ndarray]:
    arrays = {"input": net.x0}
    kind = net.loss.loss.target_kind
    if net.loss.target is not None:
        arrays["projection" if kind == "projection" else "target"] = net.loss.target
    for i, p in enumerate(net.params):
        for name, v in p.items():
            arrays[f"layer{i}.{name}"] = v
    return arrays
