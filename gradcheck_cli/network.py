"""A case made concrete: layers, their parameter values, the input and the loss.

The random draws follow one documented order from ``seed``: the input, then each layer's
parameters in layer order, then the loss's projection or target.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .catalog import make_layer
from .cases import Case
from .errors import CaseError
from .losses import BoundLoss, get_loss
from .registry import Layer


__all__ = ["Network", "make_layer"]


def _load_npy(path: Path, file: str, field: str) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's field error
        raise CaseError(file, field, f"cannot read {path.name} as .npy: {exc}") from None
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise CaseError(file, field, f"{path.name} holds NaN or Inf")
    return a


@dataclasses.dataclass
class Network:
    """Layers with parameter values, the input x0 and the bound loss, all in float64.

    ``dtype`` is the case's dtype: the analytic side runs in it; the numerical reference always
    runs in float64 from the same values. ``copies`` counts every stacked value run through
    :meth:`stacked_outputs`, so the forward evaluations reported are the ones actually run.
    """

    case: Case
    layers: list[Layer]
    params: list[dict[str, np.ndarray]]
    x0: np.ndarray
    loss: BoundLoss
    shapes: list[tuple[int, ...]]
    copies: int = 0     # perturbed copies of the batch run so far (forward evaluations)
    split_terms: bool = False   # the kink rule bounds each loss term, not each sample (local.py)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.case.dtype)

    # -- building ------------------------------------------------------------------------
    @classmethod
    def build(cls, case: Case, layers: list[Layer] | None = None) -> "Network":
        """Draw the input, parameters and target of ``case``. ``layers``: fresh instances of the
        case's layers when the caller already made them (check.py's preflight), else made here."""
        shapes = list(case.shapes)
        made = layers or [make_layer(cfg, case.file) for cfg in case.layers]
        rng = np.random.default_rng(case.seed)
        dt = np.dtype(case.dtype)
        x0 = rng.standard_normal(case.input_shape)
        if case.input_data is not None:
            x0 = _load_npy(case.input_data, case.file, "input.data").astype(np.float64)
            if x0.shape != case.input_shape:
                raise CaseError(case.file, "input.data",
                                f"has shape {list(x0.shape)}, input.shape says {list(case.input_shape)}")
        layers, params = [], []
        for cfg, layer, shape in zip(case.layers, made, shapes):
            p = layer.init_params(shape, rng)
            expected = layer.param_shapes(shape)
            for name, path in cfg.params.items():
                field = f"{cfg.field}.params.{name}"
                if name not in layer.params():
                    raise CaseError(case.file, field, f"layer `{cfg.type}` has no parameter `{name}`; "
                                                      f"it has: {', '.join(layer.params()) or 'none'}")
                a = _load_npy(path, case.file, field)
                if name in expected and tuple(a.shape) != tuple(expected[name]):
                    raise CaseError(case.file, field,
                                    f"has shape {list(a.shape)}, the layer needs {list(expected[name])}")
                p[name] = a.astype(np.float64)
            # values the analytic side sees (dtype) are the values the numerical side uses
            p = {k: v.astype(dt).astype(np.float64) for k, v in p.items()}
            layer.anchor(p)
            layers.append(layer)
            params.append(p)
        x0 = x0.astype(dt).astype(np.float64)
        loss = get_loss(case.loss)
        target = loss.make_target(shapes[-1], rng)
        if case.target is not None:
            target = _load_npy(case.target, case.file, "loss.target")
            msg = loss.check_target(target, shapes[-1])
            if msg:
                raise CaseError(case.file, "loss.target", msg)
        if target is not None and loss.target_kind != "labels":
            target = target.astype(dt).astype(np.float64)
        return cls(case, layers, params, x0, BoundLoss(loss, target, case.reduction), shapes)

    # -- evaluation ----------------------------------------------------------------------
    def forward(self, dtype=np.float64) -> list[np.ndarray]:
        """Inputs of every layer and the final output: [x_0, x_1, ..., y], in ``dtype``."""
        xs = [self.x0.astype(dtype)]
        for layer, p in zip(self.layers, self.params):
            xs.append(np.asarray(layer.forward(xs[-1], self._cast(p, dtype))))
        return xs

    def reg_value(self, override: tuple[int, str, np.ndarray] | None = None) -> np.ndarray | float:
        """l2/2 * sum of squared regularized parameters (seed 004: lambda * Omega)."""
        if not self.case.l2:
            return 0.0
        total = 0.0
        for i, (layer, p) in enumerate(zip(self.layers, self.params)):
            for name in layer.regularized:
                if name in p and not (override and override[:2] == (i, name)):
                    total += float(np.sum(p[name] ** 2))
        if override:
            i, name, values = override
            if name in self.layers[i].regularized:
                return 0.5 * self.case.l2 * (total + np.sum(values.reshape(len(values), -1) ** 2, axis=1))
        return 0.5 * self.case.l2 * total

    def backward(self, form: str, xs: list[np.ndarray], dtype=np.float64) -> list[dict[str, np.ndarray]]:
        """Analytic gradients of every layer's x and parameters, backpropagated with ``form``.

        A layer that lacks ``form`` passes dL/dx back with its first form, so the rows of the
        other layers can still be checked in ``form``.
        """
        grads: list[dict[str, np.ndarray]] = [{} for _ in self.layers]
        dy = self.loss.grad(xs[-1]).astype(dtype)
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            use = form if form in layer.forms else next(iter(layer.forms))
            g = layer.backward(use, dy, xs[i], self._cast(self.params[i], dtype))
            for name in layer.regularized:
                if name in g and self.case.l2:
                    g[name] = g[name] + (self.case.l2 * self.params[i][name]).astype(dtype)
            grads[i] = g
            dy = g["x"]
        return grads

    def stacked_outputs(self, i: int, tensor: str, values: np.ndarray, xs: list[np.ndarray]) -> np.ndarray:
        """The network's output (K, N, ...) for K values of layer i's ``tensor`` (x or a parameter),
        values (K, *shape). The callers reduce it (the loss, its terms, per-sample losses).

        Only layers i.. run again (the inputs of the layers before do not change). Copies are
        folded into the batch axis when every later layer is per-sample.
        """
        K = values.shape[0]
        self.copies += K
        if tensor == "x":
            return self._run_folded(i, values, K)
        out = self.layers[i].forward_stacked(xs[i], self.params[i], tensor, values)
        return self._run_folded(i + 1, out, K)

    def stacked_reg(self, i: int, tensor: str, values: np.ndarray) -> np.ndarray:
        """The regulariser (K,) for K values of layer i's ``tensor`` (constant for x)."""
        reg = self.reg_value((i, tensor, values) if tensor != "x" else None)
        return np.broadcast_to(np.asarray(reg, dtype=np.float64), (values.shape[0],))

    def stacked_loss(self, i: int, tensor: str, values: np.ndarray, xs: list[np.ndarray]) -> np.ndarray:
        """L for K values of layer i's ``tensor``: values (K, *shape) -> (K,)."""
        return self.loss.value_stacked(self.stacked_outputs(i, tensor, values, xs)) + self.stacked_reg(i, tensor, values)

    def base_terms(self, xs: list[np.ndarray]) -> np.ndarray:
        """Loss terms (N, M) at the unperturbed point."""
        return self.loss.terms_stacked(xs[-1][None])[0]

    def per_sample_from(self, i: int) -> bool:
        """Whether layers i.. all keep samples apart (then samples can share a perturbed copy)."""
        return all(layer.per_sample for layer in self.layers[i:])

    def structure(self, i: int, tensor: str):
        """Which loss terms of one sample each entry of layer i's ``tensor`` can change.

        Boolean sparse (terms of one sample, entries of one sample of x | of the parameter), or
        None for "all of them"; composed from each later layer's ``structure`` (sparsity.py).
        """
        from . import sparsity

        S = self.layers[i].structure(self.shapes[i], tensor)
        for j in range(i + 1, len(self.layers)):
            if S is None:
                return None
            S = sparsity.compose(self.layers[j].structure(self.shapes[j], "x"), S)
        return S if self.loss.loss.entrywise else None

    def reg_terms(self, i: int, tensor: str, v: np.ndarray) -> np.ndarray | None:
        """The regulariser's term of each entry value v (l2/2 v^2), or None if ``tensor`` has none."""
        if not self.case.l2 or tensor not in self.layers[i].regularized:
            return None
        return 0.5 * self.case.l2 * v ** 2

    def _run_folded(self, start: int, h: np.ndarray, K: int) -> np.ndarray:
        """Run layers start.. on K stacked inputs (K, N, ...); returns (K, N, ...)."""
        rest = list(zip(self.layers[start:], self.params[start:]))
        if all(layer.per_sample for layer, _ in rest):
            h = h.reshape(K * h.shape[1], *h.shape[2:])
            for layer, p in rest:
                h = layer.forward(h, p)
            return h.reshape(K, -1, *h.shape[1:])
        outs = []
        for k in range(K):
            hk = h[k]
            for layer, p in rest:
                hk = layer.forward(hk, p)
            outs.append(hk)
        return np.stack(outs)

    def copy_bytes(self, i: int, tensor: str) -> int:
        """Bytes one perturbed copy of layer i's ``tensor`` holds while it runs through layers i.."""
        size = (lambda shape: int(np.prod(shape)))
        shapes = self.shapes
        b = 8 * (size(shapes[i]) if tensor == "x" else int(self.params[i][tensor].size))
        for j in range(i, len(self.layers)):
            b += 2 * 8 * size(shapes[j + 1]) + self.layers[j].workspace(shapes[j])
        N = shapes[0][0] if shapes[0] else 1
        terms = size(shapes[-1]) if self.loss.loss.entrywise else N
        return b + 4 * 8 * terms        # the terms, their differences, magnitudes, a mask

    def tensors(self) -> list[tuple[int, str]]:
        """Every (layer index, tensor name) to check: each layer's x, then its parameters."""
        return [(i, t) for i, layer in enumerate(self.layers) for t in ("x", *layer.params())]

    def value_of(self, i: int, tensor: str, xs: list[np.ndarray]) -> np.ndarray:
        return xs[i] if tensor == "x" else self.params[i][tensor]

    @staticmethod
    def _cast(p: dict[str, np.ndarray], dtype) -> dict[str, np.ndarray]:
        return {k: v.astype(dtype, copy=False) for k, v in p.items()}
