"""Error versus step: `gradcheck sweep CASE`.

For each checked tensor, the central difference is recomputed at every eps of a grid
(default 1e-2 .. 1e-10, h_j = eps x max(1, |v_j|) as in the check) and compared with the
analytic gradient of one form. The error of a tensor at one eps is normwise:
max_j |a_j - n_j| / max_j |a_j| (an entry-wise ratio is dominated by the smallest entries).

Reading it: for a correct gradient the error falls as eps^2 while truncation dominates
(large eps), reaches a minimum, then rises as 1/eps where rounding of the loss dominates
(small eps). A wrong gradient shows a floor: the error stays at the size of the mistake
whatever the step. A kink inside the step makes the error jump at the eps that first
reaches it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from . import kinks
from .cases import Case
from .errors import CaseError
from .network import Network
from .numeric import DEFAULT_EPS, central_differences, chunk_size, json_number

EPS_GRID = tuple(10.0 ** -k for k in range(2, 11))
DEFAULT_SAMPLE = 64


@dataclasses.dataclass
class SweepRow:
    """Error of one tensor's analytic gradient (one form) against central differences per eps."""

    layer: int
    type: str
    tensor: str
    form: str
    checked: int
    errors: list[float]
    on_kink: int                 # entries left out: the layer says a step of the grid reaches a kink

    @property
    def best(self) -> tuple[float, float]:
        """(eps, error) at the smallest error."""
        finite = [(e, s) for s, e in zip(self.eps, self.errors) if np.isfinite(e)]
        if not finite:
            return float("nan"), float("nan")
        e, s = min(finite)
        return s, e

    eps: tuple[float, ...] = EPS_GRID

    def slopes(self) -> list[float]:
        """d log(error) / d log(eps) between neighbouring steps (2: truncation, -1: rounding)."""
        out = []
        for k in range(len(self.eps) - 1):
            e0, e1 = self.errors[k], self.errors[k + 1]
            if e0 > 0 and e1 > 0 and np.isfinite(e0) and np.isfinite(e1):
                out.append(float(np.log(e0 / e1) / np.log(self.eps[k] / self.eps[k + 1])))
            else:
                out.append(float("nan"))
        return out

    def diagnosis(self, floor: float) -> str:
        eps, err = self.best
        if not np.isfinite(err):
            return "NaN/Inf at every step"
        if err > floor:
            return f"floor {err:.1e}: the gradient differs"
        return f"best eps {eps:.0e}"

    def to_json(self) -> dict[str, Any]:
        eps, err = self.best
        return {"layer": self.layer, "type": self.type, "tensor": self.tensor, "form": self.form,
                "checked": self.checked, "left_out_on_kink": self.on_kink, "eps": list(self.eps),
                "errors": [json_number(e) for e in self.errors],
                "best_eps": json_number(eps), "best_error": json_number(err)}


@dataclasses.dataclass
class SweepResult:
    name: str
    file: str
    dtype: str
    default_eps: float
    rows: list[SweepRow]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "dtype": self.dtype,
                "default_eps": self.default_eps, "rows": [r.to_json() for r in self.rows]}


def sweep(case: Case, eps: tuple[float, ...] | None = None, sample: int | None = DEFAULT_SAMPLE,
          form: str | None = None) -> SweepResult:
    """Error vs eps for every tensor of ``case`` (``sample`` entries each, seeded; None: all)."""
    from .check import _preflight
    from .cost import memory_limit

    eps = tuple(sorted(eps or EPS_GRID, reverse=True))
    net = Network.build(case, _preflight(case, memory_limit(None)))
    kinks.keep_margin(net)
    dt = net.dtype
    xs64, xs_dt = net.forward(np.float64), net.forward(dt)
    names = [f for layer in net.layers for f in layer.forms]
    if form and form not in names:
        raise CaseError(case.file, "forms", f"no layer of this case has the form asked for ({form})")
    use = form or next((f for f in ("correlation", "kron", "spray", "custom") if f in names), names[0])
    grads = net.backward(use, xs_dt, dt)
    dist = kinks.distances(net, xs64)
    rng = np.random.default_rng([case.seed, 1])
    per_copy = 8 * sum(int(np.prod(s)) for s in net.shapes) * 3
    L0 = float(net.loss.value(xs64[-1]) + net.reg_value())
    rows = []
    for i, t in net.tensors():
        layer = net.layers[i]
        base = net.value_of(i, t, xs64)
        idx = (np.sort(rng.choice(base.size, size=sample, replace=False))
               if sample and sample < base.size else np.arange(base.size))
        f = use if use in layer.forms else next(iter(layer.forms))
        on_kink = 0
        if t == "x" and dist[i] is not None:     # entries whose largest step reaches a kink
            far = dist[i].reshape(-1)[idx] > eps[0] * np.maximum(1.0, np.abs(base.reshape(-1)[idx]))
            on_kink, idx = int((~far).sum()), idx[far]
        a = np.asarray(grads[i][t], np.float64).reshape(-1)[idx]
        scale = float(np.max(np.abs(a), initial=0.0)) or 1.0
        errors = []
        for e in eps:
            num = central_differences(lambda V, i=i, t=t: net.stacked_loss(i, t, V, xs64), base, idx, L0, e,
                                      chunk_size(per_copy + base.nbytes, len(idx)))
            with np.errstate(invalid="ignore"):
                errors.append(float(np.max(np.abs(a - num.values), initial=0.0) / scale))
        rows.append(SweepRow(i, layer.type_name, t, f, len(idx), errors, on_kink, eps))
    return SweepResult(case.name, case.file, case.dtype, case.eps or DEFAULT_EPS, rows)


def render(result: SweepResult, con, floor: float) -> None:
    """The table: one row per tensor, one column per eps, the smallest error in bold."""
    from rich import box
    from rich.table import Table

    con.print(f"[bold]{result.name}[/] ({result.file}) · {result.dtype} · error = max|a - n| / max|a| "
              f"per tensor · default eps {result.default_eps:.1e}")
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("tensor", no_wrap=True)
    for e in result.rows[0].eps if result.rows else ():
        t.add_column(f"{e:.0e}", justify="right", no_wrap=True)
    t.add_column("diagnosis", no_wrap=True)
    for r in result.rows:
        best_eps, _ = r.best
        cells = [f"[bold]{v:.1e}[/]" if s == best_eps else f"{v:.1e}" for s, v in zip(r.eps, r.errors)]
        t.add_row(f"layers[{r.layer}].{r.tensor} {r.form}", *cells, r.diagnosis(floor))
    con.print(t)
    left = [f"layers[{r.layer}].{r.tensor}: {r.on_kink}" for r in result.rows if r.on_kink]
    if left:
        con.print("  entries on a kink (the layer says a step of the grid reaches it), left out: "
                  + ", ".join(left))
    con.print("  error falling as eps^2 (large eps): truncation; rising as 1/eps (small eps): rounding;\n"
              "  flat at every eps (floor): the gradient itself is off, or its entries sit on kinks that "
              "no layer reports.")


def plot(result: SweepResult, path: str) -> None:
    """Log-log error vs eps, one line per tensor, with eps^2 and 1/eps guides, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in result.rows:
        err = np.array([e if np.isfinite(e) and e > 0 else np.nan for e in r.errors])
        ax.loglog(r.eps, err, marker="o", ms=3, label=f"layers[{r.layer}].{r.tensor} ({r.form})")
    eps = np.array(result.rows[0].eps) if result.rows else np.array(EPS_GRID)
    # guides through the median error at the grid's step nearest the default eps
    k = int(np.argmin(np.abs(np.log(eps / result.default_eps))))
    at = [r.errors[k] for r in result.rows if np.isfinite(r.errors[k]) and r.errors[k] > 0]
    c = float(np.median(at)) if at else 1e-10
    ax.loglog(eps, c * (eps / eps[k]) ** 2, "k:", lw=1, label="∝ eps² (truncation)")
    ax.loglog(eps, c * (eps[k] / eps), "k--", lw=1, label="∝ 1/eps (rounding)")
    ax.axvline(result.default_eps, color="grey", lw=0.8, label="default eps")
    data = [e for r in result.rows for e in r.errors if np.isfinite(e) and e > 0]
    if data:
        ax.set_ylim(min(data) / 10, max(data) * 10)       # the guides do not stretch the axis
    ax.set_xlabel("eps (step h = eps · max(1, |v|))")
    ax.set_ylabel("max |analytic − numerical| / max |analytic|")
    ax.set_title(f"{result.name}: error vs step ({result.dtype})")
    ax.legend(fontsize=7, loc="best")
    ax.invert_xaxis()
    fig.tight_layout()
    from .outfiles import open_atomic

    with open_atomic(path, "wb") as fh:
        fig.savefig(fh, dpi=120, format=Path(path).suffix.lstrip(".").lower() or "png")
    plt.close(fig)
