"""Views a layer asks for besides the engine's (local.py): its other outputs and its second order.

A ``type: torch`` module returning a tuple passes one tensor on (``output:``, default the first);
each other floating output k gets a view of its own: the layer alone with the scalar
<c_k, out_k(x, theta)>, c_k a seeded random cotangent, its rows in the forms ``custom:out{k}``
(and ``fwd:out{k}``). A layer with ``order: 2`` gets the view of its first-order map

    G(x, theta, dy) = (dx, dtheta) = J^T dy          (the backward at cotangent dy)

with the scalar <r, G>, r seeded random: central differences of G (the backward run at
perturbed x, theta, dy) against the gradient of <r, G> by the framework's own double backward,
in the form ``gradgrad``, for x, every parameter and ``dy`` (as torch.autograd.gradgradcheck
builds it). dy is drawn at random too, so no entry of the output goes untested. A tuple's
every floating output has its cotangent (``dy`` for the one passed on, ``dy1``... for the others)
and the backward is the sum over them.

Every row of these views is judged as any other (check.py, verdict.py); their rows carry no
diagnosis (the diagnoses read a layer's output per sample, which G's is not).
"""
from __future__ import annotations

import numpy as np

from .local import View
from .losses import BoundLoss, Projection
from .network import Network
from .registry import FormInfo, Layer

GRADGRAD = "gradgrad"


class OutputOf(Layer):
    """Layer ``inner``'s output ``out`` (a flattened index of its tuple) as a layer of its own."""

    per_sample = False
    side = True         # check.py: its forms are checked whichever forms the case names

    def __init__(self, inner: Layer, out: int, forms: list[str]) -> None:
        self.inner, self.out, self.type_name = inner, out, inner.type_name
        self.forms = {f"{f}:out{out}": FormInfo(f"{f}:out{out}", f, inner.forms[f].seed) for f in forms}

    def params(self):
        return self.inner.params()

    def forward(self, x, params):
        return self.inner.side_forward(x, params, self.out)

    def backward(self, form_name, dy, x, params):
        return self.inner.side_backward(self.forms[form_name].method, dy, x, params, self.out)


class SecondOrder(Layer):
    """G(x, theta, dys) = the backward of ``inner`` at the cotangents dys (one per floating output,
    the parameters named in ``dy_names``: flat output index -> name), flattened to shape (1, M).
    Its one form is the double backward."""

    per_sample = False
    side = True

    def __init__(self, inner: Layer, shapes: dict[str, tuple[int, ...]], dy_names: dict[int, str]) -> None:
        self.inner, self.shapes, self.dy_names, self.type_name = inner, shapes, dy_names, inner.type_name
        self.forms = {GRADGRAD: FormInfo(GRADGRAD, "gradgrad", "the backward's own backward")}

    def params(self):
        return (*self.inner.params(), *self.dy_names.values())

    def _split(self, params):
        p = dict(params)
        return {k: p.pop(name) for k, name in self.dy_names.items()}, p

    def forward(self, x, params):
        dys, p = self._split(params)
        g = self.inner.joint_backward(dys, x, p)     # reverse mode, whatever the layer's modes
        return np.concatenate([np.asarray(g[k]).reshape(-1) for k in self.shapes])[None]

    def gradgrad(self, dr, x, params):
        dys, p = self._split(params)
        flat, r, at = np.asarray(dr).reshape(-1), {}, 0
        for k, s in self.shapes.items():
            n = int(np.prod(s))
            r[k], at = flat[at:at + n].reshape(s), at + n
        g, gdy = self.inner.double_backward(r, dys, x, p)
        return {**g, **{self.dy_names[k]: v for k, v in gdy.items()}}


def side_views(net: Network, xs_dt: list[np.ndarray], form_names: list[str], skipped: set[int]) -> list[View]:
    """The other outputs' views and the order-2 views of every layer that asks for them."""
    rng = np.random.default_rng([net.case.seed, 18])
    dt = net.dtype
    views = []
    for i, layer in enumerate(net.layers):
        if i in skipped:
            continue
        forms = [f for f in layer.forms if f in form_names]
        for k in getattr(layer, "side_outputs", lambda: [])():
            wrapper = OutputOf(layer, k, forms)
            y = np.asarray(wrapper.forward(np.asarray(xs_dt[i], np.float64), net.params[i]))
            c = rng.standard_normal(y.shape).astype(dt).astype(np.float64)
            sub = Network(net.case, [wrapper], [net.params[i]], np.asarray(xs_dt[i], np.float64),
                          BoundLoss(Projection(), c, "sum"), [net.shapes[i], tuple(y.shape)], split_terms=True)
            views.append(View(sub, [i], note=f"output {k} of the tuple forward returns, projected "
                                             "on a random cotangent", diagnose=False))
        if getattr(layer, "order", 1) == 2:
            views.append(_second_order(net, i, xs_dt[i], rng))
    return views


def _second_order(net: Network, i: int, x: np.ndarray, rng: np.random.Generator) -> View:
    """Layer i's order-2 view: its backward at random cotangents (one per floating output, ``dy``
    for the one passed on, ``dy{k}`` for output k), projected on a random r."""
    layer, params, dt = net.layers[i], net.params[i], net.dtype
    x64 = np.asarray(x, np.float64)
    passed = getattr(layer, "output", 0)
    outs = {passed: tuple(net.shapes[i + 1])}
    for k in getattr(layer, "side_outputs", lambda: [])():
        outs[k] = tuple(np.shape(layer.side_forward(x64, params, k)))
    names: dict[int, str] = {}
    for k in outs:
        name = "dy" if k == passed else f"dy{k}"
        while name in params or name in names.values():
            name += "_"
        names[k] = name
    draw = lambda shape: rng.standard_normal(shape).astype(dt).astype(np.float64)  # noqa: E731
    shapes = {"x": tuple(x.shape), **{k: tuple(v.shape) for k, v in params.items()}}
    g = SecondOrder(layer, shapes, names)
    p = {**params, **{names[k]: draw(s) for k, s in outs.items()}}
    r = draw((1, sum(int(np.prod(s)) for s in shapes.values())))
    sub = Network(net.case, [g], [p], x64, BoundLoss(Projection(), r, "sum"),
                  [net.shapes[i], r.shape], split_terms=True)
    dy = ", ".join(names.values())
    return View(sub, [i], note=f"order 2 (gradgrad): the gradient of <r, backward({dy})> in x, the "
                               f"parameters and {dy}, r and {dy} random", diagnose=False)
