"""Say what a failing row's bug is: a fixed table of explanations, each tried on the row's numbers.

An explanation transforms the analytic gradient a (the tensor's whole array); it is reported only
when the transformed a passes the row's own verdict rule (verdict.py's threshold) against the
numerical n on every checked entry (a shift: every entry it does not move out at a border).
Nothing passes, nothing is said. The kinds are tried in the order of ``EXPLANATIONS``, one
function ``kind(ev: Evidence) -> Diagnosis | None`` each (as autograd's ``defvjp`` table).

Under ``--sample`` n exists at the sampled entries only: every kind is judged on those (a is
whole, so a flip or shift still reads its source entries) and the text says so. Rows with fewer
than ``MIN_ENTRIES`` checked entries or NaN/Inf get no diagnosis. docs/diagnosis.md has the table.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable

import numpy as np

from .verdict import _threshold, per_sample_losses

MIN_ENTRIES = 4        # fewer checked entries than this explain nothing (one entry is "a scale")
ENTRIES_SHARE = 0.05   # `entries`: at most this share of the checked entries wrong
ENTRIES_MIN = 20       # `entries`: only rows with at least this many checked entries
MAX_SHIFT = 3          # `shift`: moves of 1..MAX_SHIFT entries, both ways
SHOWN = 10             # entries listed in a detail


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """What a failing row's bug is. ``marked``: flat indices an error map marks (``entries``)."""

    kind: str
    detail: dict
    text: str
    marked: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "detail": self.detail, "text": self.text}


@dataclasses.dataclass
class Evidence:
    """A failing row's numbers: the whole analytic array, n at the checked flat entries ``index``,
    the verdict's terms, the case's tensors a missing term may be, and ``shares(pos)``: each
    sample's share of n at checked positions ``pos``, (len(pos), N + 1), regularizer last."""

    analytic: np.ndarray
    numerical: np.ndarray
    index: np.ndarray
    noise: np.ndarray
    rtol: float
    atol: float
    extra: np.ndarray | None = None
    tensor: str = "x"
    batch: int = 1
    tensors: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    kink: np.ndarray | None = None
    shares: Callable[[np.ndarray], np.ndarray] | None = None
    sampled: bool = False

    def __post_init__(self):
        self.a = np.asarray(self.analytic, np.float64).reshape(-1)[self.index]
        self.coords = np.unravel_index(self.index, self.analytic.shape)
        self.fails = ~self.ok(self.a)

    def ok(self, a: np.ndarray) -> np.ndarray:
        """The verdict of each checked entry for analytic values ``a`` (verdict.py's threshold)."""
        n = self.numerical
        return np.abs(a - n) <= _threshold(a, n, self.noise, self.rtol, self.atol, self.extra)

    def passes(self, a: np.ndarray, where: np.ndarray | None = None) -> bool:
        """Every checked entry (those ``where`` says, if given) passes with analytic values ``a``."""
        return bool(self.ok(a).all() if where is None else self.ok(a)[where].all())

    def at(self, coords) -> np.ndarray:
        """The analytic values at coordinates ``coords`` (one array per axis)."""
        return np.asarray(self.analytic, np.float64)[tuple(coords)]


def _g(x: float) -> float:
    return float(f"{x:.6g}")     # 6 significant digits: the same JSON on every machine


def _scale(ev: Evidence) -> Diagnosis | None:
    """a = c n for one constant c: tried at the named causes near the fit, then at the fit."""
    n, a, N = ev.numerical, ev.a, ev.batch
    nn = float(n @ n)
    if nn == 0:
        return None
    c = float(a @ n) / nn
    if not np.isfinite(c) or abs(c) < 1e-12:
        return None
    named = {-1: "a wrong sign", 2: "2: a factor 2 too many (a square's derivative, or a term counted twice)",
             0.5: "1/2: a factor 2 missing (d x^2 / dx = 2x)"}
    if N > 1:
        named = {N: f"the batch size N = {N}: a sum where the mean is taken (the 1/N is missing)",
                 1 / N: f"1/N, N = {N} the batch size: a mean where the sum is taken (divided by N once too often)",
                 **named}
    for k, why in named.items():
        if abs(c - k) <= 0.01 * abs(k) and ev.passes(a / k):
            return Diagnosis("scale", {"factor": _g(k)}, f"analytic = {_g(k):g} x numerical: {why}")
    if ev.passes(a / c):
        return Diagnosis("scale", {"factor": _g(c)}, f"analytic = {_g(c):g} x numerical: off by one "
                                                     f"constant factor")
    return None


def _transpose(ev: Evidence) -> Diagnosis | None:
    """Equal after exchanging two axes of equal size (for a 2-D tensor of unequal sizes: its
    transpose read back in the tensor's shape, as ``(dy.T @ x).reshape(W.shape)`` gives)."""
    shape = ev.analytic.shape
    for i, j in itertools.combinations(range(len(shape)), 2):
        if shape[i] == shape[j] > 1:
            c = list(ev.coords)
            c[i], c[j] = c[j], c[i]
            if ev.passes(ev.at(c)):
                return Diagnosis("transpose", {"axes": [i, j]},
                                 f"equal after exchanging axes {i} and {j}: a transposed gradient")
    if len(shape) == 2 and shape[0] != shape[1] and min(shape) > 1:
        t = np.asarray(ev.analytic, np.float64).reshape(shape[::-1]).T
        if ev.passes(t.reshape(-1)[ev.index]):
            return Diagnosis("transpose", {"axes": [0, 1], "reshaped": True},
                             f"equal to the transpose of a {shape[1]}x{shape[0]} array read as "
                             f"{shape[0]}x{shape[1]}: a transposed gradient reshaped into place")
    return None


def _flip(ev: Evidence) -> Diagnosis | None:
    """Equal after reversing some axes: the fewest axes first, the trailing (spatial) ones first."""
    shape = ev.analytic.shape
    axes = [k for k in range(len(shape)) if shape[k] > 1 and not (k == 0 and ev.tensor in ("x", "y"))][::-1]
    for r in range(1, len(axes) + 1):
        for sub in itertools.combinations(axes, r):
            c = list(ev.coords)
            for k in sub:
                c[k] = shape[k] - 1 - c[k]
            if ev.passes(ev.at(c)):
                s = sorted(sub)
                return Diagnosis("flip", {"axes": s}, f"equal after reversing axes {s}: a kernel not "
                                 "flipped (convolution against correlation) or an index run backwards")
    return None


def _shift(ev: Evidence) -> Diagnosis | None:
    """a[i + k] = n[i] along one axis, on the entries not moved out at a border; the shift must
    account for at least half of the failing entries (else a border bug would pass as one)."""
    shape = ev.analytic.shape
    for ax in range(len(shape)):
        if shape[ax] < 2 or (ax == 0 and ev.tensor in ("x", "y")):
            continue
        for k in (s * j for j in range(1, min(MAX_SHIFT, shape[ax] - 1) + 1) for s in (1, -1)):
            src = ev.coords[ax] + k
            inside = (src >= 0) & (src < shape[ax])
            if inside.sum() < max(MIN_ENTRIES, len(src) // 2) or (ev.fails & inside).sum() * 2 < ev.fails.sum():
                continue
            c = list(ev.coords)
            c[ax] = np.clip(src, 0, shape[ax] - 1)
            if ev.passes(ev.at(c), inside):
                return Diagnosis("shift", {"axis": ax, "by": int(k)},
                                 f"the right gradient moved by {k} along axis {ax} (a[i + {k}] = n[i]): "
                                 "a padding or offset mistake")
    return None


def _missing_term(ev: Evidence) -> Diagnosis | None:
    """a - n = lambda T for a tensor T of the case of the same shape (the parameter itself, the
    layer's input x or output y)."""
    d = ev.a - ev.numerical
    for name, T in ev.tensors.items():
        t = np.asarray(T, np.float64).reshape(-1)[ev.index] if np.shape(T) == ev.analytic.shape else d * 0
        lam = float(d @ t) / float(t @ t) if float(t @ t) else 0.0
        if not np.isfinite(lam) or lam == 0:
            continue
        for value in (float(f"{lam:.3g}"), lam):
            if ev.passes(ev.a - value * t):
                what = {"x": "the layer's input x", "y": "the layer's output y"}.get(name, f"the parameter {name}")
                why = f" (a regularization term l2 {name}: l2 = {_g(-value):g})" if name not in ("x", "y") and value < 0 else ""
                lead = (f"a term {_g(-value):g} x {name} is missing from the analytic gradient" if value < 0
                        else f"the analytic gradient has an extra term {_g(value):g} x {name}")
                return Diagnosis("missing-term", {"tensor": name, "factor": _g(value)},
                                 f"{lead}: analytic - numerical = {_g(value):g} x {what}{why}")
    return None


def _batch(ev: Evidence) -> Diagnosis | None:
    """x: right for some samples, wrong for the others. A parameter: the sum of some samples'
    shares only (one sample's, or all but one), from the per-sample numerical shares."""
    N = ev.batch
    if N < 2:
        return None
    if ev.tensor in ("x", "y"):
        if ev.analytic.shape[0] != N:
            return None
        s = ev.coords[0]
        bad = np.bincount(s[ev.fails], minlength=N)
        # entries that can fail at all: not zero on both sides (a wrong sample fails on nearly all)
        live = np.bincount(s[np.maximum(np.abs(ev.a), np.abs(ev.numerical)) > ev.atol + ev.noise], minlength=N)
        wrong = (bad > 0)
        right = ~wrong & (np.bincount(s, minlength=N) > 0)
        if not right.any() or not wrong.any() or np.any(bad[wrong] < 0.9 * live[wrong]):
            return None
        ok = [int(k) for k in np.flatnonzero(right)]
        return Diagnosis("batch", {"samples": ok, "wrong": [int(k) for k in np.flatnonzero(wrong)]},
                         f"right for sample(s) {ok} only, wrong for {[int(k) for k in np.flatnonzero(wrong)]}: "
                         "a loop over the batch that skips or overwrites samples")
    if ev.shares is None or len(ev.index) < N + 2:      # fewer entries than shares: not determined
        return None
    worst = np.argsort(-np.abs(ev.a - ev.numerical), kind="stable")
    probe = np.sort(worst[:min(len(worst), 2 * N + 8)])
    w = _fit(ev.shares(probe), ev.a[probe])
    if w is None:
        return None
    S = ev.shares(np.arange(len(ev.index))) if len(probe) < len(ev.index) else ev.shares(probe)
    if not ev.passes(ev.a + S @ (1.0 - w)):
        return None
    kept = [int(k) for k in np.flatnonzero(w[:N])]
    return Diagnosis("batch", {"samples": kept, "of": N},
                     f"equal to the share of sample(s) {kept} of {N} only: the sum over the batch is "
                     "left out or overwritten (= instead of +=)")


def _fit(S: np.ndarray, a: np.ndarray) -> np.ndarray | None:
    """Weights w in {0, 1} with a = S w, some but not all samples' weights 1; else None."""
    if S is None or not np.all(np.isfinite(S)):
        return None
    w = np.linalg.lstsq(S, a, rcond=None)[0]
    r = np.round(w)
    if np.any(np.abs(w - r) > 0.02) or np.any((r != 0) & (r != 1)):
        return None
    n = r[:-1]
    return r if 0 < n.sum() < len(n) else None


def _axis_names(ev: Evidence) -> list[str]:
    nd, x = ev.analytic.ndim, ev.tensor in ("x", "y")
    first = "samples" if x else "output channels"
    return {1: ["entries"], 2: ["samples", "features"] if x else ["rows", "columns"],
            3: [first, "channels", "positions"], 4: [first, "channels", "rows", "columns"]}.get(
        nd, [f"axis {k}" for k in range(nd)])


def _regions(ev: Evidence):
    """Candidate regions (name, detail, mask over checked entries), the smallest first."""
    shape, out = ev.analytic.shape, []
    names = _axis_names(ev)
    for ax in range(len(shape)):
        at = np.unique(ev.coords[ax][ev.fails])
        if 0 < len(at) < shape[ax]:
            out.append((names[ax], {"axis": ax, "indices": [int(v) for v in at[:SHOWN]]},
                        np.isin(ev.coords[ax], at)))
    if len(shape) >= 3:
        border = np.zeros(len(ev.index), bool)
        for ax in range(2, len(shape)):
            border |= (ev.coords[ax] == 0) | (ev.coords[ax] == shape[ax] - 1)
        out.append(("border", {}, border))
    out.append(("everywhere", {}, np.ones(len(ev.index), bool)))
    return sorted(out, key=lambda r: int(r[2].sum()))


def _zeros(ev: Evidence) -> Diagnosis | None:
    """Zero on a region (rows, columns, channels, samples, the border) where the numerical
    gradient is not, and right elsewhere; or the reverse (nonzero where n is zero)."""
    a, n = ev.a, ev.numerical
    zero_a = np.abs(a) <= ev.atol
    zero_n = np.abs(n) <= ev.atol + ev.noise
    for zero, what in ((zero_a, "the analytic gradient is zero"), (zero_n, "the analytic gradient is nonzero where the numerical one is zero")):
        if not np.all(zero[ev.fails]):
            continue
        for name, detail, region in _regions(ev):
            if region.sum() >= 2 and np.all(zero[region]) and not np.any(ev.fails & ~region):
                where = "everywhere" if name == "everywhere" else f"on {name} {detail.get('indices', '')}".rstrip()
                return Diagnosis("zeros", {"count": int(ev.fails.sum()), "region": name,
                                           "zero": "analytic" if zero is zero_a else "numerical", **detail},
                                 f"{what} {where}, {int(ev.fails.sum())} failing entries: a missing branch or mask")
    return None


def _entries(ev: Evidence) -> Diagnosis | None:
    """Wrong at a few isolated entries only (at most ENTRIES_SHARE of them): where they sit."""
    k = int(ev.fails.sum())
    if len(ev.index) < ENTRIES_MIN or not 0 < k <= ENTRIES_SHARE * len(ev.index):
        return None
    pos = np.flatnonzero(ev.fails)
    shape = ev.analytic.shape
    border = np.zeros(len(pos), bool)
    for ax in range(2, len(shape)):
        border |= (ev.coords[ax][pos] == 0) | (ev.coords[ax][pos] == shape[ax] - 1)
    kink = ev.kink[pos] if ev.kink is not None else np.zeros(len(pos), bool)
    idx = [[int(c[p]) for c in ev.coords] for p in pos[:SHOWN]]
    where = ", ".join(w for w, k in ((f"{int(kink.sum())} at kinks or ties", kink.any()),
                                     (f"{int(border.sum())} on a border", border.any())) if k) or "none at a kink, tie or border"
    return Diagnosis("entries", {"count": k, "entries": idx, "kinks": int(kink.sum()), "borders": int(border.sum())},
                     f"wrong at {k} isolated entr{'y' if k == 1 else 'ies'} of {len(ev.index)} ({where}): "
                     f"{', '.join(str(i) for i in idx)}", tuple(int(ev.index[p]) for p in pos))


EXPLANATIONS: dict[str, Callable[[Evidence], Diagnosis | None]] = {
    "scale": _scale, "transpose": _transpose, "flip": _flip, "shift": _shift,
    "missing-term": _missing_term, "batch": _batch, "zeros": _zeros, "entries": _entries}


def diagnose(ev: Evidence) -> Diagnosis | None:
    """The first explanation of ``EXPLANATIONS`` that explains the row, or None."""
    if len(ev.index) < MIN_ENTRIES or not ev.fails.any():
        return None
    if not (np.all(np.isfinite(ev.a)) and np.all(np.isfinite(ev.numerical))):
        return None
    with np.errstate(all="ignore"):
        for explain in EXPLANATIONS.values():
            d = explain(ev)
            if d is not None:
                if ev.sampled:
                    d = dataclasses.replace(d, text=f"{d.text} (judged on the {len(ev.index)} sampled entries)")
                return d
    return None


def row_evidence(net, k: int, t: str, name: str, a: np.ndarray, numer, rtol: float, atol: float,
                 extra: np.ndarray | None, xs: list[np.ndarray], sampled: bool, budget: int = 2**28) -> Evidence:
    """A row's Evidence from the view it was checked in (check.py): layer ``k`` of ``net`` at the
    float64 activations ``xs``; per-sample shares by central differences of the loss's terms."""
    base = np.asarray(net.value_of(k, t, xs), np.float64)
    N = int(net.x0.shape[0])
    tensors = {p: np.asarray(v, np.float64) for p, v in net.params[k].items()}
    tensors.update(x=np.asarray(xs[k], np.float64), y=np.asarray(xs[k + 1], np.float64))
    if name != t:               # the loss's own row: its one tensor is the network output y
        tensors = {name: np.asarray(xs[k], np.float64)}

    def shares(pos: np.ndarray) -> np.ndarray:
        flat, out = base.reshape(-1), []
        per = max(1, min(64, budget // max(1, 4 * net.copy_bytes(k, t))))     # 2 copies an entry
        for s in range(0, len(pos), per):
            j, h = numer.index[pos[s:s + per]], numer.step[pos[s:s + per]]
            m = len(j)
            V = np.repeat(flat[None], 2 * m, axis=0)
            V[np.arange(2 * m), np.tile(j, 2)] += np.concatenate([h, -h])
            T = per_sample_losses(net, k, t, V.reshape(2 * m, *base.shape), xs)
            if T.shape[1] != N + 1:              # one term per output entry: sum each sample's
                T = np.concatenate([T[:, :-1].reshape(2 * m, N, -1).sum(axis=2), T[:, -1:]], axis=1)
            out.append((T[:m] - T[m:]) / (2 * h[:, None]))
        return np.concatenate(out) if out else np.zeros((0, N + 1))

    gap = np.abs(numer.dplus + numer.dminus) / numer.step      # the one-sided differences disagree
    a_c = np.asarray(a, np.float64).reshape(-1)[numer.index]
    return Evidence(np.asarray(a, np.float64), numer.values, numer.index, numer.noise, rtol, atol, extra,
                    name, N, tensors, gap >= 0.1 * np.abs(a_c - numer.values),
                    shares if t != "x" else None, sampled)
