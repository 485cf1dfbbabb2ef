"""Where the numerical reference of each row comes from: the engine's modes as *views*.

A view is a network whose scalar loss the central differences are taken of, and the case's
layers it holds. Every row of a view is checked the same way (check.py: colouring, kinks,
float32, tolerances); only the view changes what a row proves.

``network`` mode: one view, the whole case. A row says "the gradient of the case's loss with
respect to this tensor, backpropagated in this form, is right"; a wrong backward in layer k
also fails every layer before k.

``local`` mode (the default): one view per layer i, the layer alone with the scalar

    L_i(x_i, theta_i) = <c_i, f_i(x_i, theta_i)>   (+ l2/2 |theta_i|^2 when regularized)

a projection of its output by a fixed cotangent c_i. Its numerical gradient is J_i^T c_i from
real evaluations of f_i, and each form's backward of layer i is given the same c_i. The
cotangent is the upstream gradient g_i = dL/dy_i (from the analytic backward of the layers
above, in the first form the check uses; any c_i is a valid test of layer i's rule, so a bug
above cannot make layer i fail). Where g_i has zero entries (below a dead ReLU, off a
max-pool's argmax) the outputs there test nothing, so layer i is checked a second time with a
random cotangent (standard normal, seeded, scaled to g_i's rms), and its rows fold in that
check too. The loss has a view of its own: dL/dy of the case's loss against its central
differences.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from .composition import DIRECTIONS
from .losses import BoundLoss, Projection
from .network import Network
from .registry import FormInfo, Layer
from .sparsity import identity

DEFAULT_MODE = "local"


@dataclasses.dataclass
class View:
    """A network to take central differences of, and the case's index of each of its layers."""

    net: Network
    layers: list[int]           # case index of each layer of ``net``
    cotangent: str = ""         # "upstream" | "random" (local mode), "" (whole network, the loss)
    tensor_names: dict[str, str] = dataclasses.field(default_factory=dict)  # row names ("x" -> "y")
    note: str = ""              # said on every failing row of the view (e.g. a replaced cotangent)
    diagnose: bool = True       # failing rows get a diagnosis (not side_views.py's)

    def rows_of(self, skipped: set[int]) -> list[tuple[int, int, str]]:
        """(layer in ``net``, case index, tensor) of every tensor the view checks."""
        return [(k, i, t) for k, (i, layer) in enumerate(zip(self.layers, self.net.layers))
                if i not in skipped for t in ("x", *layer.params())]

    def name(self, t: str) -> str:
        return self.tensor_names.get(t, t)


class LossInput(Layer):
    """The identity, so that the case's loss is checked as a one-layer network whose input is
    the network output y: its one form returns dL/dy as the loss computes it."""

    type_name = "loss"

    def forward(self, x, params):
        return x

    def loss_grad(self, dy, x, params):
        return {"x": dy}

    def structure(self, in_shape, name):
        return identity(int(np.prod(in_shape[1:])))

    def kink_distance(self, x, params):
        return self.loss.loss.kink_distance(x, self.loss.target)


LossInput.forms = {"loss": FormInfo("loss", "loss_grad", "the case's loss: dL/dy")}


def network_views(net: Network, xs_dt: list[np.ndarray], grads: dict) -> list[View]:
    """The whole case, as today's entrywise check of the whole loss."""
    return [View(net, list(range(len(net.layers))))]


def local_views(net: Network, xs_dt: list[np.ndarray], grads: dict) -> list[View]:
    """One view per layer and cotangent, then the loss's own view (see the module docstring).

    ``grads``: each form's whole-network backward; the upstream cotangent of layer i is what the
    first of them passes to layer i (dL/dx_{i+1}, in the case's dtype).
    """
    first = next(iter(grads.values()))
    dt = net.dtype
    rng = np.random.default_rng([net.case.seed, 5])
    views = []
    for i in range(len(net.layers)):
        g = np.asarray(first[i + 1]["x"] if i + 1 < len(net.layers) else net.loss.grad(xs_dt[-1]))
        r = rng.standard_normal(g.shape)
        scale = float(np.sqrt(np.mean(np.square(g, dtype=np.float64)))) if g.size else 0.0
        r = r * (scale if np.isfinite(scale) and scale > 0 else 1.0)
        note = ""
        if not np.all(np.isfinite(g)):
            g, note = r, "upstream gradient not finite (a layer above returns NaN/Inf): random cotangent used"
        pairs = [("upstream", g)] + ([("random", r)] if note or not np.all(g) else [])
        for name, c in pairs:
            views.append(View(_one_layer(net, i, xs_dt[i], c.astype(dt).astype(np.float64)), [i], name,
                              note=note if name == "upstream" else ""))
    views.append(loss_view(net, xs_dt[-1]))
    return views


def _one_layer(net: Network, i: int, x: np.ndarray, c: np.ndarray) -> Network:
    """Layer i alone, at input ``x``, with the loss <c, y> (and layer i's share of the l2 term)."""
    return Network(net.case, [net.layers[i]], [net.params[i]], np.asarray(x, np.float64),
                   BoundLoss(Projection(), c, "sum"), [net.shapes[i], net.shapes[i + 1]], split_terms=True)


def loss_view(net: Network, y: np.ndarray) -> View:
    """The case's loss alone, at the network output ``y`` (in the case's dtype)."""
    layer = LossInput()
    layer.type_name, layer.loss = net.case.loss, net.loss
    shape = tuple(net.shapes[-1])
    sub = Network(net.case, [layer], [{}], np.asarray(y, np.float64), net.loss, [shape, shape])
    return View(sub, [len(net.layers)], "", {"x": "y"})


@dataclasses.dataclass(frozen=True)
class Mode:
    """An engine mode: the views its rows come from, and how many random directions the
    composition check (composition.py) takes of the whole gradient (0: none)."""

    name: str
    views: Callable[[Network, list[np.ndarray], dict], list[View]]
    directions: int


MODES_BY_NAME = {"local": Mode("local", local_views, DIRECTIONS),
                 "network": Mode("network", network_views, 0)}
