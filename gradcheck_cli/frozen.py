"""The network with every kink frozen as at the checked point: the reference for entries whose
step crosses several kinks at once.

A ReLU at exactly 0 or a max-pool tie is a kink; the forms follow a convention there (ReLU'(0)
= 0, the first index of a tied window wins). When one checked entry's step crosses a single
kink, the kink rule of check.py brackets the analytic value between the one-sided derivatives.
When it crosses several kinks of one sample at once -- a zero perturbed entry fanned out by a
bias-free linear / conv layer into several ReLUs sitting at 0 (a sample whose receptive field
a ReLU or the padding zeroed), or an entry tied in two overlapping max-pool windows -- the
convention's value (every such unit "off", or each window's first index) is generally *not*
between the one-sided derivatives: the chain rule gives a correct answer that no difference of
the loss along that entry reproduces.

The frozen network makes that answer measurable: each layer with selections evaluates
``Layer.frozen_forward(x, params, at)`` -- its forward with the selections (ReLU on/off, the
max-pool argmax) fixed as at its input ``at`` of the checked point. It equals the real network
at the checked point and is smooth around it, and its derivative is exactly what a correct
chain rule with the layers' convention gives, at kinks and away from them. An entry is accepted
by it only when its analytic value matches that derivative within the usual tolerance, so a
wrong gradient still fails. When the frozen network is smooth at the entry (every kink its
step crosses is frozen), it is the only reference: the layers declared their convention, and a
value merely between the one-sided derivatives (which the convention-agnostic kink rule would
take) is a wrong gradient there.
"""
from __future__ import annotations

import numpy as np

from .numeric import NOISE_FACTOR, U64


def layer_out(layer, h: np.ndarray, params: dict, at: np.ndarray) -> np.ndarray:
    """``layer``'s frozen forward at ``at`` if it has selections, else its forward."""
    out = layer.frozen_forward(h, params, at)
    return layer.forward(h, params) if out is None else out


CHUNK_BYTES = 128 * 2**20     # perturbed copies (and their tiled selections) alive at once


def losses(net, i: int, t: str, values: np.ndarray, xs: list[np.ndarray]) -> np.ndarray:
    """L (regulariser included) of the frozen network for K values (K, *shape) of layer i's t.

    Copies of x are folded into the batch axis (every layer from i on per-sample; a layer's
    ``frozen_forward`` repeats its selections for each copy), a chunk at a time; otherwise one
    copy per forward."""
    K = len(values)
    net.copies += K
    if t == "x" and net.per_sample_from(i) and values.ndim >= 2:
        per = max(1, CHUNK_BYTES // max(1, 8 * 3 * sum(int(x.size) for x in xs[i:])))
        outs = []
        for s in range(0, K, per):
            v = values[s:s + per]
            k = len(v)
            h = v.reshape(k * v.shape[1], *v.shape[2:])
            for j in range(i, len(net.layers)):
                h = layer_out(net.layers[j], h, net.params[j], xs[j])   # x holds k copies of the batch
            outs.append(net.loss.value_stacked(h.reshape(k, -1, *h.shape[1:])))
        return np.concatenate(outs) + net.stacked_reg(i, t, values)
    outs = []
    for v in values:
        if t == "x":
            h, start = v, i
        else:
            h, start = net.layers[i].forward_stacked(xs[i], net.params[i], t, v[None])[0], i + 1
        for k in range(start, len(net.layers)):
            h = layer_out(net.layers[k], h, net.params[k], xs[k])
        outs.append(h)
    return net.loss.value_stacked(np.stack(outs)) + net.stacked_reg(i, t, values)


class _Frozen:
    """A layer with its selections fixed as at its input ``at``: ``forward`` is its frozen
    forward (:func:`layer_out`); everything else (structure, per_sample, workspace) is the
    layer's own. A frozen selection depends on a subset of the inputs the layer's structure
    declares, so the layer's structure still covers it."""

    def __init__(self, layer, at: np.ndarray):
        self._layer, self._at = layer, at

    def __getattr__(self, name):
        return getattr(self._layer, name)

    def forward(self, h, params):
        return layer_out(self._layer, h, params, self._at)


def frozen_network(net, xs: list[np.ndarray]):
    """``net`` with every layer frozen at its input in ``xs`` (its own copy counter)."""
    import dataclasses

    return dataclasses.replace(net, layers=[_Frozen(layer, x) for layer, x in zip(net.layers, xs)],
                               copies=0)


def differences(net, i: int, t: str, xs: list[np.ndarray], base: np.ndarray, index: np.ndarray,
                step: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Central differences of the frozen network for the flat entries ``index`` (steps ``step``):
    (values, rounding estimate, |right - left| one-sided gap). A gap means the step still crosses
    a kink the frozen network does not freeze (a layer without ``frozen_forward``).

    Coloured like the central differences (numeric.coloured): a frozen ReLU or max-pool is
    linear, its structure the layer's, so entries whose regions do not overlap share a copy;
    one entry per copy when the structure proves too small or samples mix."""
    from . import numeric

    fnet = frozen_network(net, xs)
    p = numeric.plan(fnet, i, t, index)
    try:
        if p.method != "coloured":
            raise numeric.StructureViolated(f"layers[{i}].{t}")
        T0 = fnet.base_terms(xs)
        numer = numeric.coloured_differences(fnet, p, xs, T0, budget=CHUNK_BYTES, h=step)
        out = numer.values, numer.noise, np.abs(numer.dplus + numer.dminus) / step
    except numeric.StructureViolated:
        out = _per_entry(net, i, t, xs, base, index, step)
    net.copies += fnet.copies
    return out


def _per_entry(net, i: int, t: str, xs: list[np.ndarray], base: np.ndarray, index: np.ndarray,
               step: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`differences` with one entry per pair of copies."""
    flat = np.asarray(base, np.float64).reshape(-1)
    L0 = losses(net, i, t, flat.reshape(1, *base.shape), xs)[0]
    per = max(1, CHUNK_BYTES // max(1, 2 * 8 * flat.size))
    plus, minus = np.empty(len(index)), np.empty(len(index))
    V = np.empty((2 * min(per, len(index)), flat.size))
    for s in range(0, len(index), per):
        j, h = index[s:s + per], step[s:s + per]
        k = len(j)
        W = V[:2 * k]
        W[:] = flat
        W[np.arange(k), j] += h
        W[k + np.arange(k), j] -= h
        L = losses(net, i, t, W.reshape(2 * k, *base.shape), xs)
        plus[s:s + k], minus[s:s + k] = L[:k], L[k:]
    noise = NOISE_FACTOR * U64 * (np.abs(plus) + np.abs(minus)) / (2 * step)
    return (plus - minus) / (2 * step), noise, np.abs(plus + minus - 2 * L0) / step


def kinks_from(dist: list[np.ndarray | None], i: int) -> bool:
    """Whether some layer from i on has an input entry exactly on a kink (structural zeros)."""
    return any(d is not None and bool((d == 0).any()) for d in dist[i:])
