"""The composition check: the whole network's gradient along a few random directions.

Layer-local rows prove each layer's backward rule; they cannot see a mistake in how the layers
are wired (a layer handed the wrong input, a gradient passed to the wrong layer). So the whole
gradient, every checked tensor at once, is also compared with central differences of the case's
loss along ``DIRECTIONS`` seeded random directions d (as torch's fast mode and JAX's check_grads
do):

    a_f = sum over tensors <grad_f, d>          (each form f's whole-network backward)
    n   = (L(v + h d) - L(v - h d)) / 2h,        h = eps (the case's numerical step)

d is standard normal per entry, scaled by max(1, |v_j|) like the entrywise step, and
normalised to unit length. The row passes when

    |a_f - n| <= atol + rtol * sum_j |grad_j d_j| + noise   (+ 64 sum_j e32_j |d_j| in float32)

(the rtol term is relative to the sum of the magnitudes, since a_f may cancel; noise as for an
entry). A direction that crosses a kink is judged like an entry: a_f must lie between the
per-sample one-sided derivatives, Richardson-extrapolated from steps h and h/8 (verdict.bounds).
"""
from __future__ import annotations

import numpy as np

from .numeric import DEFAULT_EPS, NOISE_FACTOR, U64
from .results import Direction
from .verdict import REFINE, bounds

DIRECTIONS = 2
SHRINK = 64           # the second step tried, h / SHRINK


def _tensors(net) -> list[tuple[int, str]]:
    return [(0, "x")] + [(i, t) for i, layer in enumerate(net.layers) for t in layer.params()]


def _walk(net, d: dict | None, s: float) -> tuple[list[np.ndarray], np.ndarray]:
    """At v + s d (v itself for d None): each layer's input, and the per-sample loss terms with
    the regulariser, (N + 1,), in float64."""
    x0 = net.x0 if d is None else net.x0 + s * d[(0, "x")]
    params = net.params if d is None else [{t: v + s * d[(i, t)] for t, v in p.items()}
                                           for i, p in enumerate(net.params)]
    h, inputs = x0, []
    for layer, p in zip(net.layers, params):
        inputs.append(np.asarray(h, np.float64))
        h = layer.forward(h, p)
    terms = net.loss.per_sample_stacked(np.asarray(h, np.float64)[None])[0]
    reg = 0.0
    if net.case.l2:
        reg = 0.5 * net.case.l2 * sum(float(np.sum(p[n] ** 2)) for layer, p in zip(net.layers, params)
                                      for n in layer.regularized if n in p)
    return inputs, np.append(terms, reg)


def _reaches_kink(net, at: list, plus: list, minus: list) -> bool:
    """Whether the steps to ``plus`` / ``minus`` (each layer's input) move some layer's input at
    least as far as its distance to a kink (the layers' ``kink_distance``). The one-sided gap
    alone cannot say so: within one sample, the slope changes of several kinks are signed and
    may cancel in the gap while their effect on the central difference does not (right - left
    = sum |d_j| g_j, central - analytic = sum d_j g_j / 2)."""
    for layer, p, x, xp, xm in zip(net.layers, net.params, at, plus, minus):
        dist = layer.kink_distance(x, p)
        if dist is None:
            continue
        move = np.maximum(np.abs(xp - x), np.abs(xm - x))
        if np.any(np.asarray(dist) < 2 * move):        # 2: two entries of a window move together
            return True
    return False


def directions(net, rng: np.random.Generator) -> dict[tuple[int, str], np.ndarray]:
    """One random direction over every tensor of ``net``, of unit length."""
    d = {}
    for i, t in _tensors(net):
        v = net.x0 if t == "x" else net.params[i][t]
        d[(i, t)] = rng.standard_normal(v.shape) * np.maximum(1.0, np.abs(v))
    norm = np.sqrt(sum(float(np.sum(a * a)) for a in d.values())) or 1.0
    return {k: a / norm for k, a in d.items()}


def check(net, grads: dict[str, list[dict]], rtol: float, atol: float,
          err32: dict[str, list[dict]] | None = None, count: int = DIRECTIONS) -> list[Direction]:
    """Rows of the composition check, ``count`` directions x each form of ``grads``."""
    if not count:
        return []
    rng = np.random.default_rng([net.case.seed, 6])
    h0 = net.case.eps or DEFAULT_EPS
    base = _walk(net, None, 0.0)
    out = []
    for k in range(count):
        d = directions(net, rng)
        for h in (h0, h0 / SHRINK):           # a smaller step where the first crosses a kink
            n, noise, crossing = _numerical(net, d, base, h)
            if not crossing:
                break
        for f, g in grads.items():
            prods = [np.asarray(g[i][t], np.float64) * d[(i, t)] for i, t in d]
            a = float(sum(float(p.sum()) for p in prods))
            scale = sum(float(np.abs(p).sum()) for p in prods)
            thr = atol + rtol * max(scale, abs(n)) + noise
            if err32 and f in err32:
                thr += 64.0 * sum(float(np.sum(err32[f][i][t] * np.abs(d[(i, t)]))) for i, t in d)
            err = abs(a - n)
            finite = bool(np.isfinite(a))
            ok = bool(err <= thr) and finite
            note = ""
            if crossing and finite and not ok:
                ok, note = True, ("inconclusive: the direction crosses a kink at every step tried "
                                  "(ties at distance 0); the layer-local rows judge those entries")
            rel = err / max(abs(a), abs(n), atol / rtol)
            out.append(Direction(f, k, a, n, err, rel if np.isfinite(rel) else float("inf"), thr, ok, note))
    return out


def _numerical(net, d, base, h):
    """Central difference of L along d, its rounding estimate, and whether the steps cross a
    kink: the per-sample one-sided derivatives (Richardson, steps h and h/8) disagree beyond
    their rounding (sum of |right - left|), or a step reaches a layer's kink distance."""
    (at, T0), (xp, plus), (xm, minus) = base, _walk(net, d, h), _walk(net, d, -h)
    plus2, minus2 = _walk(net, d, h / REFINE)[1], _walk(net, d, -h / REFINE)[1]
    n = float((plus.sum() - minus.sum()) / (2 * h))
    noise = NOISE_FACTOR * U64 * (abs(plus.sum()) + abs(minus.sum())) / (2 * h)

    step = np.array([h])
    lo, hi, _ = bounds(T0, plus[None], minus[None], plus2[None], minus2[None], step, step / REFINE)
    kink_noise = 1e3 * NOISE_FACTOR * U64 * float(np.abs(T0).sum() + np.abs(plus).sum()) / (h / REFINE)
    gap = float(hi[0] - lo[0])                   # sum of max - min = sum |right - left|
    return n, noise, gap > kink_noise or _reaches_kink(net, at, xp, xm)
