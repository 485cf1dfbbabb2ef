"""The user's loss function: ``loss: {type: function, impl: FILE.py:function}``.

CS231n-style: ``f(scores, y) -> (loss, dscores)`` with the case's integer labels y (drawn from
the seed, or ``target:`` as for cross_entropy). The case holds the loss's name as a
:class:`FunctionRef` (the string "function" carrying the impl); ``losses.get_loss`` makes the
:class:`FunctionLoss` through its ``make_loss``. It is not in ``losses.LOSSES``: it cannot exist without its impl.
"""
from __future__ import annotations

import numpy as np

from .losses import CrossEntropy


class FunctionRef(str):
    """The loss name "function" carrying its ``impl``, the case's folder and file."""

    def __new__(cls, impl: str, base=".", file: str = "") -> "FunctionRef":
        ref = super().__new__(cls, "function")
        ref.impl, ref.base, ref.file = impl, base, file
        return ref

    def __getnewargs__(self):       # pickling (cases go to --jobs workers)
        return (self.impl, self.base, self.file)

    def make_loss(self) -> "FunctionLoss":
        """The loss itself (``losses.get_loss`` calls this, so losses.py need not import us)."""
        return FunctionLoss(self)


class FunctionLoss(CrossEntropy):
    """A CS231n-style loss ``f(scores, y) -> (loss, dscores)`` with integer labels y.

    Its per-sample terms are f on one sample at a time, scaled by 1/N when f averages over the
    batch (found by comparing f on the batch with the sum of its one-sample values; a function
    that is neither a sum nor a mean of per-sample terms is refused). dL/dy is f's dscores.
    """

    name = "function"
    summary = "your loss function: impl FILE.py:function, f(scores, y) -> (loss, dscores), labels y"

    def __init__(self, ref: FunctionRef | None = None) -> None:
        from .layers.usercode import UserCode, resolve_impl

        if ref is None:
            raise TypeError("loss `function` needs its impl")  # pragma: no cover (cases.py refuses)
        self.code = UserCode()
        self.code.type_name, self.code.where = "function", f"{ref.file}: loss"
        self.code._code_init(resolve_impl(ref.impl, ref.base))
        self.fn = self.code._load(kind="function")
        self.scale: float | None = None

    def _call(self, y: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
        y_, t_ = np.array(y, copy=True), np.array(t, copy=True)
        res = self.code._call("loss function", lambda: self.fn(y_, t_))
        if not isinstance(res, tuple) or len(res) != 2:
            self.code._fail(f"returned {type(res).__name__}, expected a pair (loss, dscores)")
        loss, d = res
        try:
            loss = float(loss)
        except (TypeError, ValueError):
            self.code._fail(f"returned a loss of type {type(loss).__name__}, expected a number")
        return loss, self.code._array("dscores", d, y.shape, y.dtype)

    def _scale(self, y: np.ndarray, t: np.ndarray) -> float:
        """1 when f sums its per-sample terms, 1/N when it averages them."""
        if self.scale is None:
            n = y.shape[0]
            whole = self._call(y, t)[0]
            parts = sum(self._call(y[i:i + 1], t[i:i + 1])[0] for i in range(n))
            tol = 1e-9 * max(1.0, abs(parts))
            if abs(whole - parts) <= tol:
                self.scale = 1.0
            elif abs(whole - parts / n) <= tol:
                self.scale = 1.0 / n
            else:
                self.code._fail(f"the loss of the batch ({whole:.6g}) is neither the sum ({parts:.6g}) "
                                f"nor the mean of its one-sample losses")
        return self.scale

    def per_sample(self, y, t):
        K, N = y.shape[:2]
        s = self._scale(y[0], t)
        out = np.empty((K, N))
        for k in range(K):
            for n in range(N):
                out[k, n] = s * self._call(y[k, n:n + 1], t[n:n + 1])[0]
        return out

    def grad(self, y, t):
        self._scale(y, t)
        return self._call(y, t)[1]

