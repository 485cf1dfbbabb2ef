"""Scalar losses on the network output y (batch first).

Every loss is a sum of per-sample terms, ``L = sum_n l_n`` (``reduction: mean`` divides by N),
which is what lets the numerical check read many perturbed copies from one forward call.
``per_sample`` takes y with a leading axis of copies, shape (K, N, ...), and returns (K, N).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np


class Loss:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    target_kind: ClassVar[str | None] = None   # "projection" | "target" | "labels" | None

    def make_target(self, out_shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray | None:
        return None

    def check_target(self, t: np.ndarray, out_shape: tuple[int, ...]) -> str | None:
        """A message when ``t`` cannot serve as this loss's target for ``out_shape``."""
        if tuple(t.shape) != tuple(out_shape):
            return f"has shape {list(t.shape)}, the network output has shape {list(out_shape)}"
        return None

    def per_sample(self, y: np.ndarray, t: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    #: True when each sample's term is itself a sum over the output entries (l_n = sum_r l_nr);
    #: then ``terms`` returns the l_nr and the numerical check can read which entries moved.
    entrywise: ClassVar[bool] = False

    def terms(self, y: np.ndarray, t: np.ndarray | None) -> np.ndarray:
        """Loss terms that add up to L: (K, N, M). Default: one term per sample (M = 1)."""
        return self.per_sample(y, t)[..., None]

    def grad(self, y: np.ndarray, t: np.ndarray | None) -> np.ndarray:
        """dL/dy of the summed loss, shape of y (N, ...)."""
        raise NotImplementedError

    def kink_distance(self, y: np.ndarray, t: np.ndarray | None) -> np.ndarray | None:
        """Optional hook, the loss's side of ``Layer.kink_distance``: for each entry of the
        network output y (N, ...), how far that entry alone must move before L stops being
        differentiable in it. None (the default): smooth, or the loss does not say."""
        return None


LOSSES: dict[str, type[Loss]] = {}


def register_loss(cls: type[Loss]) -> type[Loss]:
    LOSSES[cls.name] = cls
    return cls


def _flat(y: np.ndarray) -> np.ndarray:
    return y.reshape(*y.shape[:2], -1)


@register_loss
class Projection(Loss):
    name = "projection"
    summary = "L = sum(R * y), R standard normal from the seed: every output entry weighs in"
    target_kind = "projection"

    def make_target(self, out_shape, rng):
        return rng.standard_normal(out_shape)

    entrywise = True

    def per_sample(self, y, t):
        return _flat(y * t).sum(axis=-1)

    def terms(self, y, t):
        return _flat(y * t)

    def grad(self, y, t):
        return np.broadcast_to(t, y.shape).astype(y.dtype)


@register_loss
class Sum(Loss):
    name = "sum"
    summary = "L = sum(y)"

    entrywise = True

    def per_sample(self, y, t):
        return _flat(y).sum(axis=-1)

    def terms(self, y, t):
        return _flat(y)

    def grad(self, y, t):
        return np.ones_like(y)


@register_loss
class MSE(Loss):
    name = "mse"
    summary = "L = 0.5 * sum((y - t)^2) (seed 003 §3); dL/dy = y - t"
    target_kind = "target"

    def make_target(self, out_shape, rng):
        return rng.standard_normal(out_shape)

    entrywise = True

    def per_sample(self, y, t):
        return 0.5 * (_flat(y - t) ** 2).sum(axis=-1)

    def terms(self, y, t):
        return 0.5 * _flat(y - t) ** 2

    def grad(self, y, t):
        return (y - t).astype(y.dtype)


@register_loss
class CrossEntropy(Loss):
    name = "cross_entropy"
    summary = "L = sum_n -log softmax(y_n)[t_n], integer labels t; dL/dy = softmax(y) - onehot(t)"
    target_kind = "labels"

    def make_target(self, out_shape, rng):
        return rng.integers(0, int(np.prod(out_shape[1:])), size=out_shape[0])

    def check_target(self, t, out_shape):
        n_classes = int(np.prod(out_shape[1:]))
        if t.shape != (out_shape[0],):
            return f"needs one integer label per sample, shape [{out_shape[0]}], got {list(t.shape)}"
        if not np.issubdtype(t.dtype, np.integer):
            return f"needs integer labels, got dtype {t.dtype}"
        if t.size and (t.min() < 0 or t.max() >= n_classes):
            return f"labels must lie in 0..{n_classes - 1}"
        return None

    @staticmethod
    def _log_softmax(z):
        z = z - z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))

    def per_sample(self, y, t):
        logp = self._log_softmax(_flat(y))
        idx = np.broadcast_to(t.reshape(1, -1, 1), (logp.shape[0], logp.shape[1], 1))
        return -np.take_along_axis(logp, idx, axis=-1)[..., 0]

    def grad(self, y, t):
        z = y.reshape(y.shape[0], -1)
        p = np.exp(self._log_softmax(z[None]))[0]
        p[np.arange(z.shape[0]), t] -= 1
        return p.reshape(y.shape).astype(y.dtype)


@register_loss
class Hinge(Loss):
    """Multiclass SVM loss (seed 002 §1, CS231n's svm_loss), integer labels t as cross_entropy:

        l_n = sum_{j != t_n} max(0, m_nj),   m_nj = y_nj - y_nt_n + 1 (the margin)

    dl_n/dy_nj = 1[m_nj > 0] for j != t_n and dl_n/dy_nt_n = -sum_{j != t_n} 1[m_nj > 0]: at
    m = 0 the derivative taken is 0, as ReLU's at x = 0 (the kink is max(0, .)'s).
    """

    name = "hinge"
    summary = ("L = sum_n sum_{j != t_n} max(0, y_nj - y_nt_n + 1), integer labels t (seed 002, "
               "CS231n svm_loss); dL/dy = 1[margin > 0], minus their count at t_n")
    target_kind = "labels"
    make_target = CrossEntropy.make_target
    check_target = CrossEntropy.check_target

    @staticmethod
    def margins(z: np.ndarray, t: np.ndarray) -> np.ndarray:
        """m_nj = z_nj - z_nt_n + 1 for scores z (..., N, classes), set to 0 at j = t_n."""
        idx = np.broadcast_to(t.reshape(*(1,) * (z.ndim - 2), -1, 1), (*z.shape[:-1], 1))
        m = z - np.take_along_axis(z, idx, axis=-1) + 1
        np.put_along_axis(m, idx, 0.0, axis=-1)
        return m

    def per_sample(self, y, t):
        return np.maximum(self.margins(_flat(y), t), 0).sum(axis=-1)

    def grad(self, y, t):
        m = self.margins(y.reshape(y.shape[0], -1), t)
        g = (m > 0).astype(y.dtype)
        g[np.arange(m.shape[0]), t] = -g.sum(axis=-1)          # y_nt enters every margin with -1
        return g.reshape(y.shape)

    def kink_distance(self, y: np.ndarray, t: np.ndarray) -> np.ndarray:
        """For each entry of y (N, ...), how far it alone must move before l_n stops being
        differentiable in it: |m_nj| for j != t_n; for y_nt_n, which moves every margin of
        sample n, the smallest |m_nj| over j != t_n."""
        m = np.abs(self.margins(y.reshape(y.shape[0], -1), t))
        n = np.arange(m.shape[0])
        m[n, t] = np.inf
        m[n, t] = m.min(axis=-1) if m.shape[1] > 1 else np.inf
        return m.reshape(y.shape)


@dataclasses.dataclass(frozen=True)
class BoundLoss:
    """A loss with its target and reduction: the case's scalar L as a function of y."""

    loss: Loss
    target: np.ndarray | None
    reduction: str = "sum"

    def _scale(self, n: int) -> float:
        return 1.0 / n if self.reduction == "mean" else 1.0

    def value_stacked(self, y: np.ndarray) -> np.ndarray:
        """L for each of K copies, y of shape (K, N, ...); returns (K,)."""
        t = self.target
        return self.loss.per_sample(y, t).sum(axis=1) * self._scale(y.shape[1])

    def per_sample_stacked(self, y: np.ndarray) -> np.ndarray:
        """Scaled per-sample terms l_n for K copies: (K, N)."""
        return self.loss.per_sample(y, self.target) * self._scale(y.shape[1])

    def terms_stacked(self, y: np.ndarray) -> np.ndarray:
        """Scaled loss terms for K copies: (K, N, M), summing to L of each copy."""
        return self.loss.terms(y, self.target) * self._scale(y.shape[1])

    def value(self, y: np.ndarray) -> float:
        return float(self.value_stacked(y[None])[0])

    def grad(self, y: np.ndarray) -> np.ndarray:
        t = self.target
        if t is not None and self.loss.target_kind != "labels":
            t = t.astype(y.dtype)
        return self.loss.grad(y, t) * y.dtype.type(self._scale(y.shape[0]))


def get_loss(name: str) -> Loss:
    make = getattr(name, "make_loss", None)     # loss: {type: function, impl}: loss_function.py
    if make is not None:
        return make()
    return LOSSES[name]()



def starter_case(name: str) -> str:
    """A YAML case that exercises the loss ``name`` (linear scores, reduction mean), passing as
    printed: what `gradcheck new LOSS` prints."""
    import yaml

    cls = LOSSES[name]
    doc = {"name": f"{name}-starter", "seed": 0, "dtype": "float64", "input": [6, 5],
           "layers": [{"type": "linear", "out_features": 4}],
           "loss": {"type": name, "reduction": "mean"}}
    return (f"# gradcheck case: loss {name}: {cls.summary}\n# run: gradcheck run this.yaml\n"
            + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
