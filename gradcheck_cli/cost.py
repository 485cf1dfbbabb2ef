"""What a check will cost before it runs: forward evaluations and peak memory.

The memory estimate adds up what the check holds at its peak: the process itself (Python,
numpy, scipy: ``OVERHEAD``), the activations and gradients of every form, each layer's forward
scratch (an im2col copy for a convolution) three times over for the analytic forms, the
sparsity structures, and one chunk of perturbed copies. Chunks shrink to fit the limit; when
even one pair of copies does not fit, the check is refused before anything big is allocated.

The limit is ``--max-memory`` / the environment variable ``GRADCHECK_MAX_MEMORY`` (e.g.
``2GiB``, ``500M``, ``1e9``), by default 90% of the memory available when the check starts.
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from .errors import GradcheckError
from .numeric import DEFAULT_BUDGET, OWNER_MAX

OVERHEAD = 100 * 2**20          # the interpreter with numpy, scipy.sparse, click, rich
CHUNK_BUDGET = DEFAULT_BUDGET   # perturbed copies alive at once, when memory allows
ENV = "GRADCHECK_MAX_MEMORY"
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
          "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


class MemoryRefused(GradcheckError):
    """The check would not fit in the memory limit (exit 2, one line, before allocating)."""


def parse_bytes(text: str) -> int:
    """'2GiB', '500M', '1e9' -> bytes; ValueError when unreadable."""
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (write e.g. 2GiB, 500M or 1e9)")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not 0 < value < float("inf"):
        raise ValueError(f"not a positive finite size: {text!r}")
    return int(value)


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_limit(option: str | int | None = None) -> int | None:
    """The limit in bytes: the option, else $GRADCHECK_MAX_MEMORY, else 90% of what is available."""
    if isinstance(option, int):
        return option
    text = option if option is not None else os.environ.get(ENV)
    if text:
        try:
            return parse_bytes(text)
        except ValueError as exc:
            raise GradcheckError(f"{ENV if option is None else '--max-memory'}: {exc}") from None
    avail = available_memory()
    return int(0.9 * avail) if avail else None


def human(n: float) -> str:
    """Bytes as a short human-readable size."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _size(shape) -> int:
    return int(np.prod(shape))


@dataclasses.dataclass
class Estimate:
    """Cost of one case's check."""

    name: str
    entries: int
    evaluations: int           # forward evaluations (copies of the batch) the check will run
    loop_evaluations: int      # what a per-entry central-difference loop would run (2 per entry)
    base_bytes: int            # everything but the perturbed copies
    chunk_bytes: int           # the largest chunk of perturbed copies, at ``budget``
    min_chunk_bytes: int       # the smallest possible chunk: one pair of copies
    budget: int                # bytes of perturbed copies per call the check will use
    limit: int | None

    @property
    def peak_bytes(self) -> int:
        return self.base_bytes + self.chunk_bytes

    @property
    def fits(self) -> bool:
        return self.limit is None or self.base_bytes + self.min_chunk_bytes <= self.limit

    def summary(self) -> str:
        return (f"{self.name}: {self.entries:,} entries, {self.evaluations:,} forward evaluations "
                f"(a per-entry loop: {self.loop_evaluations:,}), about {human(self.peak_bytes)} peak memory")

    def refusal(self) -> str:
        need = self.base_bytes + self.min_chunk_bytes
        return (f"{self.name}: the check needs about {human(need)} ({self.entries:,} entries, "
                f"{self.evaluations:,} forward evaluations), over the memory limit of "
                f"{human(self.limit or 0)} (--max-memory / {ENV}); check fewer entries with "
                f"--sample K or use a smaller batch")


def estimate(net, plans, n_forms: int, limit: int | None) -> Estimate:
    """Estimate the cost of checking ``plans`` (numeric.Plan) of ``net`` with ``n_forms`` forms."""
    shapes = net.shapes
    acts = sum(_size(s) for s in shapes)
    params = sum(int(v.size) for p in net.params for v in p.values())
    base = OVERHEAD + 8 * (acts * (3 + n_forms) + params * (2 + n_forms))
    base += 3 * max((layer.workspace(s) for layer, s in zip(net.layers, shapes)), default=0)
    structure = max((p.structure.nnz for p in plans if p.structure is not None), default=0)
    base += 40 * structure              # int64 pairs while building, csr + csc copies
    base += 8 * 3 * max((len(p.index) for p in plans), default=0)   # per-entry results
    terms = _size(shapes[-1]) // max(1, shapes[0][0]) if net.loss.loss.entrywise else 1
    base += 8 * min(max((p.colours for p in plans), default=0) * terms, OWNER_MAX)   # owner map
    copies = [2 * net.copy_bytes(p.layer, p.tensor) for p in plans]
    smallest = max(copies, default=0)
    budget = CHUNK_BUDGET if limit is None else int(min(CHUNK_BUDGET, max(smallest, limit - base)))
    chunk = max((min(max(1, budget // c), p.colours) * c for p, c in zip(plans, copies)), default=0)
    entries = sum(len(p.index) for p in plans)
    return Estimate(net.case.name, entries, sum(p.evaluations for p in plans), 2 * entries,
                    int(base), int(chunk), int(smallest), int(budget), limit)


def estimate_views(net, views, n_forms: int, limit: int | None) -> Estimate:
    """The cost of a check made of views (local.py): [(view network, its plans)].

    The views run one after the other: evaluations and entries add up; at the peak the whole
    network's arrays (activations, each form's gradients) are alive beside the largest view's.
    """
    if len(views) == 1 and views[0][0] is net:
        return estimate(net, views[0][1], n_forms, limit)
    whole = estimate(net, [], n_forms, None).base_bytes
    parts = [estimate(v, plans, n_forms, None) for v, plans in views]
    base = whole + max((p.base_bytes - OVERHEAD for p in parts), default=0)
    smallest = max((p.min_chunk_bytes for p in parts), default=0)
    budget = CHUNK_BUDGET if limit is None else int(min(CHUNK_BUDGET, max(smallest, limit - base)))
    redo = [estimate(v, plans, n_forms, budget + base) for v, plans in views] if limit else parts
    return Estimate(net.case.name, sum(p.entries for p in parts), sum(p.evaluations for p in parts),
                    sum(p.loop_evaluations for p in parts), int(base),
                    max((p.chunk_bytes for p in redo), default=0), int(smallest), budget, limit)
