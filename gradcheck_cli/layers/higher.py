"""What ``type: torch`` and ``type: jax`` layers add to the first-order reverse check: forward mode
and second order, as YAML fields (docs/torch.md, "Forward mode, second order and tuple outputs")::

    - type: torch
      impl: higher.py:Swish
      modes: [rev, fwd]      # rev: the backward / vjp (the default); fwd: Jacobian-vector products
      order: 2               # also the second derivatives: the backward's own backward

Each mode is a form of the layer: ``rev`` is the form ``custom`` (its rows as before), ``fwd`` the
form ``fwd``, the gradient dL/dv assembled entry by entry from forward-mode products
<dy, J e_j> (batched by vmap where the framework allows), so it is judged against the same
central differences as the backward. ``order: 2`` adds a view of its own (side_views.py): rows
of the form ``gradgrad``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..registry import FormInfo, Option

MODES = ("rev", "fwd")
REV = FormInfo("custom", "custom", "reverse mode: the framework's backward (vjp), its custom rules")
FWD = FormInfo("fwd", "fwd", "with `modes: [fwd]`: forward mode, <dy, J e_j> from Jacobian-vector products")
FORM_OF_MODE = {"rev": REV, "fwd": FWD}

OPTIONS = (
    Option("modes", "choices", default=("rev",), choices=MODES,
           help="rev: check the backward (vjp); fwd: the forward-mode rule (jvp); both: [rev, fwd]"),
    Option("order", "int", default=1, min=1, max=2,
           help="2: also check the second derivatives (the backward's own backward, as gradgradcheck)"),
)


class Higher:
    """Mixin of a layer with ``modes`` and ``order``: its forms follow its modes."""

    modes: tuple[str, ...] = ("rev",)
    order: int = 1
    optional_forms = (FWD, FormInfo("gradgrad", "", "with `order: 2`: the backward's own backward "
                                                    "(side_views.py), rows for x, the parameters and dy"))

    def _higher_init(self, modes: Any, order: int) -> None:
        self.modes = tuple(modes or ("rev",))
        self.order = int(order)
        self.forms = {FORM_OF_MODE[m].name: FORM_OF_MODE[m] for m in MODES if m in self.modes}

    @classmethod
    def form_names(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        modes = options.get("modes") or ("rev",)
        return tuple(FORM_OF_MODE[m].name for m in MODES if m in modes)


def fwd_from_jvps(jvp_dot, shape: tuple[int, ...], zeros) -> np.ndarray:
    """dL/dv of one tensor v of ``shape``, entry j being ``jvp_dot(j)`` = <dy, J_v e_j>.
    ``zeros(shape)`` makes the result array."""
    g = zeros(shape)
    flat = g.reshape(-1)
    for j in range(flat.size):
        flat[j] = jvp_dot(j)
    return g
