"""What a check returns: rows, the composition check, form agreement, the case's result.

Plain data with ``to_json``; the renderers (report/) read only these.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from . import kinks
from .numeric import json_number as _num

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
    cotangent: str = ""         # local mode: "upstream" | "random"; "" otherwise
    diagnosis: Any = None       # a failing row's diagnosis.Diagnosis, or None (nothing explains it)
    # per checked entry, |a - n| / its threshold (noise and float32 estimate included): > 1
    # exactly where the entry fails, 0 where the kink rule passed it. check.py moves it into
    # the result's arrays (``....verdict``) for the HTML maps; never in JSON
    verdict: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def is_loss(self) -> bool:
        """The loss's own row (local mode): dL/dy of the case's loss."""
        return self.form == "loss"

    @property
    def label(self) -> str:
        return f"loss.{self.tensor}" if self.is_loss else f"layers[{self.layer}].{self.tensor}"

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer, "type": self.type, "tensor": self.tensor, "form": self.form,
            "shape": list(self.shape), "checked": self.checked,
            "max_abs_error": _num(self.max_abs_error), "max_rel_error": _num(self.max_rel_error),
            "worst_index": list(self.worst_index), "failed": self.failed, "kinks": self.kinks,
            "passed": self.passed, "note": self.note, "cotangent": self.cotangent,
            "worst": [e.to_json() for e in self.worst],
            "diagnosis": self.diagnosis.to_json() if self.diagnosis is not None else None,
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
    note: str = ""

    @property
    def label(self) -> str:
        return f"network <grad, d{self.direction}>"

    def to_json(self) -> dict[str, Any]:
        return {"form": self.form, "direction": self.direction, "analytic": _num(self.analytic),
                "numerical": _num(self.numerical), "abs_error": _num(self.abs_error),
                "rel_error": _num(self.rel_error), "tolerance": _num(self.tolerance),
                "passed": self.passed, "note": self.note}


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
    loss_rows: list[Row] = dataclasses.field(default_factory=list)   # local mode: dL/dy of the loss

    @property
    def passed(self) -> bool:
        return (all(r.passed for r in self.rows) and all(r.passed for r in self.loss_rows)
                and all(d.passed for d in self.composition))

    @property
    def checks(self) -> list[Row]:
        """Every row: the layers' tensors, then the loss's own (local mode)."""
        return [*self.rows, *self.loss_rows]

    @property
    def culprits(self) -> list[tuple[int, str]]:
        """The (layer, tensor) pairs named wrong, in layer order.

        Mode "local": exactly the tensors whose layer-local check fails in some form. Mode
        "network": the failing tensors of the layer where the disagreement starts (the layers
        before it fail too, only because they receive its gradient).
        """
        failing = []
        for r in [*self.rows, *self.loss_rows]:
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
                "loss_checks": [r.to_json() for r in self.loss_rows],
                "composition": [d.to_json() for d in self.composition],
                "form_agreement": [a.to_json() for a in self.agreement],
                "kink_distance": {"resampled_samples": self.resampled,
                                  "layers": [k.to_json() for k in self.kink_layers]},
                "unchecked_layers": [{"layer": i, "type": t} for i, t in self.unchecked]}
