"""A case made ready to check (check.prepare): its network, views and plans, and the units of
work they split into (one tensor of one view; distribute.py runs them on workers)."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .cases import Case
from .network import Network


@dataclasses.dataclass
class Prepared:
    """A case made ready to check: the network, its views and their plans (one per tensor).
    Everything in it follows from the case and the options, so a worker that prepares the same
    case gets the same object (distribute.py)."""

    case: Case
    mode: str
    sample: int | None
    net: Network
    form_names: list[str]
    skipped: set[int]
    picks: dict
    grads: dict
    views: list
    plans: list[dict]
    budget: int
    xs64: list[np.ndarray]
    margins: Any
    resampled: int
    started: float
    base_copies: list[int]
    _view_state: dict = dataclasses.field(default_factory=dict)

    def units(self) -> list[tuple[int, tuple[int, str]]]:
        """(view index, (layer in the view, tensor)) of every tensor check, in report order; a
        layer's random-cotangent view goes with its upstream view (:meth:`partner`)."""
        return [(v, key) for v, ps in enumerate(self.plans) if not (v and self.partner(v - 1)) for key in ps]

    def partner(self, v: int) -> bool:
        """Whether view v + 1 is view v's layer with the random cotangent: the same plans and
        the same perturbed copies, only the projection differs (one run of the copies for both)."""
        return (v + 1 < len(self.views) and self.plans[v + 1] is self.plans[v]
                and self.views[v + 1].cotangent == "random")


class Plans(dict):
    """A view's plans by (layer in the view, tensor), each made on first use (numeric.plan)."""

    def __init__(self, net: Network, picks: dict):
        super().__init__({key: None for key in picks})
        self.net, self.picks = net, picks

    def __getitem__(self, key):
        p = super().__getitem__(key)
        if p is None:
            from . import numeric

            p = numeric.plan(self.net, *key, self.picks[key])
            self[key] = p
        return p

    def values(self):
        return [self[key] for key in self]
