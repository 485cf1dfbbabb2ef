"""One call from pytest for a JAX function that is not in a YAML case.

    import gradcheck_cli.jax

    def test_my_layer_norm():
        gradcheck_cli.jax.assert_function_gradients(
            lambda x, p: layer_norm(x, p["gamma"], p["beta"]), x, {"gamma": g, "beta": b})

``forward(x, params)`` is checked as a ``type: jax`` layer at ``x`` and ``params`` (a dict of
arrays): its analytic side is ``jax.vjp`` (so the custom_vjp rules inside it), in float64.
"""
from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..api import assert_gradients as _assert, check_case
from ..check import CaseResult

__all__ = ["check_function", "assert_function_gradients"]
_count = itertools.count()


def _case(forward: Callable, x: Any, params: Mapping[str, Any] | None, loss: Any, seed: int,
          dtype: str, per_sample: bool, folder: Path, modes=("rev",), order: int = 1) -> dict:
    from ..layers.usercode import object_ref

    given = {k: np.asarray(v, dtype=np.float64) for k, v in (params or {}).items()}

    class Given:
        """The function and its parameter values as a jax layer class."""

        def init_params(self, input_shape, rng):
            return dict(given)

        def forward(self, x, params):
            return forward(x, params)

    Given.__qualname__ = f"{getattr(forward, '__qualname__', 'forward')}#{next(_count)}"
    np.save(folder / "x.npy", np.asarray(x, dtype=np.float64))
    layer = {"type": "jax", "impl": object_ref(Given), "per_sample": per_sample, "modes": list(modes),
             "order": order}
    return {"name": getattr(forward, "__name__", "forward"), "seed": seed, "dtype": dtype,
            "input": {"data": "x.npy"}, "layers": [layer], "loss": loss}


def check_function(forward: Callable, x: Any, params: Mapping[str, Any] | None = None, *,
                   loss: Any = "projection", seed: int = 0, dtype: str = "float64",
                   per_sample: bool = False, sample: int | None = None, modes: tuple[str, ...] = ("rev",),
                   order: int = 1) -> CaseResult:
    """Check ``forward(x, params)`` (jax.numpy) at ``x`` and ``params``; returns the result.
    ``per_sample=True``: sample n of the output depends only on sample n of x. ``modes=("rev",
    "fwd")`` also checks jax.jvp (custom_jvp rules), ``order=2`` the vjp's own vjp (docs/jax.md)."""
    with tempfile.TemporaryDirectory() as d:
        return check_case(_case(forward, x, params, loss, seed, dtype, per_sample, Path(d), modes, order),
                          base_dir=d, sample=sample)


def assert_function_gradients(forward: Callable, x: Any, params: Mapping[str, Any] | None = None, *,
                              loss: Any = "projection", seed: int = 0, dtype: str = "float64",
                              per_sample: bool = False, modes: tuple[str, ...] = ("rev",), order: int = 1,
                              **kw: Any) -> CaseResult:
    """:func:`check_function`, raising AssertionError with ``gradcheck run``'s table when a
    gradient disagrees (like :func:`gradcheck_cli.assert_gradients`). Returns the result."""
    __tracebackhide__ = True
    with tempfile.TemporaryDirectory() as d:
        return _assert(_case(forward, x, params, loss, seed, dtype, per_sample, Path(d), modes, order),
                       base_dir=d, **kw)
