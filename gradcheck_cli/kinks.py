"""Kinks: points where the loss is not differentiable in an entry (ReLU at 0, max-pool ties,
ABC sign flips), found structurally through ``Layer.kink_distance`` and kept away from
generated inputs.

Margin rule (generated inputs only). After the seed's draws, every layer that implements
``kink_distance`` is asked, for each entry of its input, how far that entry is from a kink.
An entry closer than ``KINK_MARGIN`` x (the rms of that layer's input) counts as near. The
samples (rows of the input x0) that hold a near entry anywhere in the network are drawn again
from a second stream of the seed, ``default_rng([seed, 2])``, up to ``MAX_REDRAWS`` times, each
sample keeping its draw with the fewest near entries. Layers are per-sample, so redrawing
sample n moves only sample n's activations. Distances of exactly 0 are structural (the zeros a
ReLU hands to the next ReLU, a window of max-pool that a ReLU filled with zeros): no redraw
removes them, so they are left alone, reported, and judged by the kink rule. Data the user
gives (``input: {data: x.npy}``) is never changed.

With the default step (6e-6 x max(1, |v|)) a checked entry moves a layer input by about
|dz/dv| x 6e-6, far inside the margin of 1e-3 x rms, so a generated case crosses no kink except
its structural ties.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .numeric import json_number as _num

KINK_MARGIN = 1e-3   # relative to the rms of the layer's input
MAX_REDRAWS = 32


@dataclasses.dataclass
class LayerKinks:
    """Kink distances of one layer's input after the margin rule."""

    layer: int
    type: str
    nearest: float          # smallest distance of an input entry to a kink (0 = on a kink)
    margin: float           # the absolute margin used for this layer
    within_margin: int      # input entries closer than ``margin`` (ties at exactly 0 included)
    at_kink: int            # entries exactly on a kink (distance 0)

    def to_json(self) -> dict:
        return {"layer": self.layer, "type": self.type, "nearest": _num(self.nearest),
                "margin": _num(self.margin), "within_margin": self.within_margin,
                "at_kink": self.at_kink}


def distances(net, xs: list[np.ndarray], samples: np.ndarray | None = None) -> list[np.ndarray | None]:
    """``kink_distance`` of every layer's input (None for layers without the hook), then the
    loss's of the network output (``Loss.kink_distance``: hinge margins at 0). ``samples``: the
    rows of the batch that ``xs`` holds, when not all of them (the target is cut to match)."""
    out = []
    for layer, p, x in zip(net.layers, net.params, xs):
        d = layer.kink_distance(x, p)
        out.append(None if d is None else np.abs(np.asarray(d, dtype=np.float64)).reshape(x.shape))
    y = xs[len(net.layers)]
    t = net.loss.target
    if t is not None and samples is not None:
        t = t[samples]
    d = net.loss.loss.kink_distance(y, t)
    out.append(None if d is None else np.abs(np.asarray(d, dtype=np.float64)).reshape(y.shape))
    return out


def _margins(dist: list[np.ndarray | None], xs: list[np.ndarray]) -> list[float]:
    return [0.0 if d is None else KINK_MARGIN * float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) or 1.0)
            for d, x in zip(dist, xs)]


def _near_per_sample(dist: list[np.ndarray | None], margins: list[float], N: int) -> np.ndarray:
    """Near (0 < d < margin) entries per sample, summed over layers."""
    count = np.zeros(N, dtype=np.int64)
    for d, m in zip(dist, margins):
        if d is not None and d.ndim and d.shape[0] == N:
            count += ((d > 0) & (d < m)).reshape(N, -1).sum(axis=1)
    return count


def keep_margin(net) -> tuple[int, list[float]]:
    """Apply the margin rule to ``net.x0`` in place (generated input only); returns how many
    samples were drawn again and the absolute margin of each layer (0 without the hook)."""
    case = net.case
    xs = net.forward(np.float64)
    dist = distances(net, xs)
    margins = _margins(dist, xs)
    if case.input_data is not None or all(d is None for d in dist):
        return 0, margins
    if not all(layer.per_sample for layer in net.layers) or net.x0.ndim < 1:
        return 0, margins
    N = net.x0.shape[0]
    near = _near_per_sample(dist, margins, N)
    if not near.any():
        return 0, margins
    rng = np.random.default_rng([case.seed, 2])
    dt = np.dtype(case.dtype)
    x0 = net.x0.copy()
    moved = np.zeros(N, dtype=bool)
    for _ in range(MAX_REDRAWS):
        rows = np.flatnonzero(near)
        if not len(rows):
            break
        trial = rng.standard_normal((len(rows), *x0.shape[1:])).astype(dt).astype(np.float64)
        h = [trial]
        for layer, p in zip(net.layers, net.params):
            h.append(layer.forward(h[-1], p))
        t_near = _near_per_sample(distances(net, h, rows), margins, len(rows))
        better = t_near < near[rows]
        x0[rows[better]] = trial[better]
        moved[rows[better]] = True
        near[rows[better]] = t_near[better]
    net.x0 = x0
    return int(moved.sum()), margins


def report(net, xs: list[np.ndarray], margins: list[float] | None = None) -> list[LayerKinks]:
    """Distance to the nearest kink for each layer that implements the hook."""
    dist = distances(net, xs)
    margins = margins or _margins(dist, xs)
    out = []
    for i, (d, m) in enumerate(zip(dist, margins)):
        if d is None:
            continue
        kind = net.layers[i].type_name if i < len(net.layers) else f"loss {net.case.loss}"
        out.append(LayerKinks(i, kind, float(d.min(initial=np.inf)), m,
                              int((d < m).sum()), int((d == 0).sum())))
    return out
