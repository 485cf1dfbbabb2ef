"""Coloured central differences: entries whose regions of loss terms do not overlap share a
pair of perturbed copies (see the package docstring), with probes that catch a declared
structure that is too small.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from .central import DEFAULT_BUDGET, NOISE_FACTOR, U64, Numerical, steps
from .regions import OWNER_MAX, VALIDATE, StructureViolated, _threshold, region_sums_of  # noqa: F401



@dataclasses.dataclass
class Plan:
    """How the checked entries of one tensor are perturbed.

    Entries of one colour share a pair of perturbed copies (+h and -h); ``evaluations`` is
    the number of forward evaluations (copies of the batch through the layers from i on) the
    plan runs when its structure holds: the estimate (what actually ran: ``Network.copies``).
    ``shared``: the tensor is a layer's input x and samples never mix, so entry (n, e) is
    perturbed in the copy of its colour together with the other samples' entries.
    """

    layer: int
    tensor: str
    shape: tuple[int, ...]
    index: np.ndarray          # flat entries to check
    colour: np.ndarray         # colour of each of them
    colours: int
    shared: bool
    structure: object          # terms x entries of one sample (sparsity.py), or None: all
    method: str                # "coloured" | "per-entry"

    @property
    def evaluations(self) -> int:
        """Copies run: a pair per colour, plus the probes of the structure (coloured only)."""
        if self.method != "coloured":
            return 2 * self.colours
        return 2 * self.colours + len(_probe_positions(len(self.index)))

    @property
    def per_sample_size(self) -> int:
        return int(np.prod(self.shape[1:])) if self.shared else int(np.prod(self.shape))


def plan(net, i: int, tensor: str, index: np.ndarray) -> Plan:
    """Colour the entries ``index`` of layer i's ``tensor`` (see the module docstring)."""
    from ..sparsity import colour_columns

    shape = tuple(net.shapes[i]) if tensor == "x" else tuple(net.params[i][tensor].shape)
    index = np.asarray(index, dtype=np.int64)
    if not net.per_sample_from(i):
        return Plan(i, tensor, shape, index, np.arange(len(index)), len(index), False, None, "per-entry")
    S = net.structure(i, tensor)
    S = S.tocsc() if S is not None else None      # column access from here on: convert once
    if S is None and (tensor != "x" or shape[0] == 1):
        # every entry's region is every term: nothing to share and nothing a probe could catch
        return Plan(i, tensor, shape, index, np.arange(len(index)), len(index), False, None, "per-entry")
    if tensor != "x":
        colour, n = colour_columns(S, index)
        return Plan(i, tensor, shape, index, colour, n, False, S, "coloured")
    E = int(np.prod(shape[1:]))
    sample, e = np.divmod(index, E)
    colour = np.empty(len(index), dtype=np.int64)
    n_colours, cache = 0, {}
    starts = np.searchsorted(sample, np.arange(shape[0] + 1))
    for s in range(shape[0]):
        part = e[starts[s]:starts[s + 1]]
        if not len(part):
            continue
        key = part.tobytes() if len(part) < E else "all"
        if key not in cache:
            cache[key] = colour_columns(S, part)
        c, n = cache[key]
        colour[starts[s]:starts[s + 1]] = c
        n_colours = max(n_colours, n)
    return Plan(i, tensor, shape, index, colour, n_colours, True, S, "coloured")


def coloured_differences(net, p: Plan, xs: list[np.ndarray], T0: np.ndarray,
                         eps: float | None = None, budget: int = DEFAULT_BUDGET,
                         progress: Callable[[int], None] | None = None, h: np.ndarray | None = None,
                         also: tuple = ()) -> Numerical | list[Numerical]:
    """Central differences of the entries of ``p`` with ``p.colours`` pairs of copies.

    ``T0``: the loss terms (N, M) at the unperturbed point; ``h``: the steps (default: from eps).
    ``also``: (network, T0) of other views that differ from ``net`` only in their loss (a layer's
    random cotangent, local.py): the same copies serve them, each copy is run once, and the
    result is the list of every view's Numerical, ``net``'s first.
    Raises :class:`StructureViolated` when a copy moved a term outside its perturbed regions.
    """
    i, t = p.layer, p.tensor
    flat = np.asarray(net.value_of(i, t, xs), dtype=np.float64).reshape(-1)
    idx = p.index
    h = steps(flat[idx], eps) if h is None else h
    views = [(net, T0), *also]
    for n_, T0_ in views:
        _probe(n_, p, xs, T0_, flat, h)
    sums = region_sums_of(net, [(n_.loss, T0_) for n_, T0_ in views], p, xs, np.stack([h, -h]), budget, progress)
    out = []
    for (n_, _), (moved, size) in zip(views, sums):
        (dplus, dminus), absum = moved, size.sum(axis=0)
        reg = n_.reg_terms(i, t, flat[idx])
        if reg is not None:
            v = flat[idx]
            up, down = n_.reg_terms(i, t, v + h), n_.reg_terms(i, t, v - h)
            dplus, dminus, absum = dplus + (up - reg), dminus + (down - reg), absum + up + down
        values = (dplus - dminus) / (2 * h)
        noise = NOISE_FACTOR * U64 * absum / (2 * h)
        out.append(Numerical(idx, values, noise, h, dplus, dminus, f"coloured ({p.colours} colours)"))
    return out if also else out[0]


def region_sums(net, p: Plan, xs: list[np.ndarray], T0: np.ndarray, deltas: np.ndarray,
                budget: int = DEFAULT_BUDGET, progress: Callable[[int], None] | None = None):
    """For each row s of ``deltas`` (S, n) and each entry j of the coloured plan ``p``: the change
    of the loss terms in j's region when v_j moves by deltas[s, j], and the size of those terms.

    One copy per (row, colour): entry j shares it with the other entries of its colour. Returns
    (moved, size), both (S, n): moved = sum over the region of T(v + d e_j) - T(v) (for x: the
    terms of j's own sample, the only ones it reaches), size = sum of |T| there (at v when one
    owner map serves every sample, at v + d e_j otherwise: equal to O(d)).
    Raises :class:`StructureViolated` when a term outside every region of a copy moved.
    """
    return region_sums_of(net, [(net.loss, T0)], p, xs, deltas, budget, progress)[0]


def sample_terms(net, i: int, tensor: str, xs: list[np.ndarray], index: np.ndarray, deltas: np.ndarray,
                 budget: int = DEFAULT_BUDGET):
    """Per-sample losses l_n and the regulariser (last column) with entry index[q] of layer i's
    input x moved by deltas[s, q], coloured: (base (N + 1,), terms (S, k, N + 1)).

    Entry j reaches only its own sample, so the other samples keep l_n(v) (the probes and the
    checks of region_sums enforce it). None when the plan is not coloured (parameters, layers
    that mix samples) or the declared structure proves too small: evaluate one entry per copy.
    """
    if tensor != "x":
        return None
    p = plan(net, i, tensor, index)
    if p.method != "coloured":
        return None
    T0 = net.base_terms(xs)
    base = np.append(T0.sum(axis=1), net.reg_value())
    flat = np.asarray(net.value_of(i, tensor, xs), dtype=np.float64).reshape(-1)
    try:
        _probe(net, p, xs, T0, flat, np.abs(deltas).max(axis=0))
        moved, _ = region_sums(net, p, xs, T0, deltas, budget)
    except StructureViolated:
        return None
    out = np.repeat(np.repeat(base[None, None], deltas.shape[0], axis=0), len(p.index), axis=1)
    out[:, np.arange(len(p.index)), p.index // p.per_sample_size] += moved
    return base, out


def _probe_positions(n: int) -> np.ndarray:
    """One position per probe (first, middle, last): how many probes a plan of n entries runs."""
    return np.unique(np.array([0, n // 2, n - 1]))[:n] if n else np.zeros(0, dtype=np.int64)


def _probe_sets(p: Plan) -> list[np.ndarray]:
    """Positions (in the plan's index) perturbed together by each probe: a random half of one
    colour (the first, middle and last colour, cycled when there are fewer), never empty.

    Entries of one colour share no declared region, so perturbing some of them may move only
    the terms in their own regions. An entry k that reaches a term r declared only in the region
    of j (same colour) is caught when k is in the half and j is not; a colour-wide copy cannot
    see it (r moves, but inside j's region), nor a lone probe whose entry happens not to move
    r at this point (a ReLU that is off)."""
    n_probes = len(_probe_positions(len(p.index)))
    if not n_probes:
        return []
    picks = np.unique(np.array([0, p.colours // 2, p.colours - 1]))
    out = []
    for q in range(n_probes):
        members = np.flatnonzero(p.colour == picks[q % len(picks)])
        if not len(members):
            members = np.array([_probe_positions(len(p.index))[q]])
        half = members[np.random.default_rng([q, 7]).random(len(members)) < 0.5]
        out.append(half if len(half) else members[:1])
    return out


def _probe(net, p: Plan, xs, T0: np.ndarray, flat: np.ndarray, h: np.ndarray) -> None:
    """Perturb a few sets of entries (:func:`_probe_sets`) and check that no loss term outside
    their declared regions moved: a declared structure that is too small is caught even when one
    colour's regions cover every term."""
    sets = _probe_sets(p)
    k = len(sets)
    V = np.empty((k, flat.size))
    V[:] = flat
    for q, at in enumerate(sets):
        V[q, p.index[at]] += h[at]
    shape = net.value_of(p.layer, p.tensor, xs).shape
    D = net.loss.terms_stacked(net.stacked_outputs(p.layer, p.tensor, V.reshape(k, *shape), xs)) - T0
    inside = np.zeros(D.shape, dtype=bool)                # (k, N, M)
    E = p.per_sample_size
    S = p.structure.tocsc() if p.structure is not None else None
    for q, at in enumerate(sets):
        j = p.index[at]
        sample, e = np.divmod(j, E) if p.shared else (None, j)
        if S is None:
            inside[q, slice(None) if sample is None else sample] = True
            continue
        counts = S.indptr[e + 1] - S.indptr[e]
        who = np.repeat(np.arange(len(j)), counts)
        r = S.indices[np.repeat(S.indptr[e] - np.cumsum(counts) + counts, counts) + np.arange(who.size)]
        if sample is None:
            inside[q, :, r] = True
        else:
            inside[q, sample[who], r] = True
    thr = _threshold(p, T0)
    if np.any((np.abs(D) > (thr if p.shared else np.broadcast_to(thr, T0.shape))) & ~inside):
        raise StructureViolated(f"layers[{p.layer}].{p.tensor}")
