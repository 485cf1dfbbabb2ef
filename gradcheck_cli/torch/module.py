"""One call from pytest for a torch module that is not in a YAML case.

    import gradcheck_cli.torch

    def test_my_layernorm():
        gradcheck_cli.torch.assert_module_gradients(LayerNorm(6), torch.randn(4, 6))

The module is checked as a ``type: torch`` layer with its own parameter values (a copy, in
float64; the module itself is not changed): ``x`` and every ``named_parameters()`` entry, the
analytic side being torch autograd (so its custom autograd.Functions' backward).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..api import assert_gradients as _assert, check_case
from ..check import CaseResult

__all__ = ["check_module", "assert_module_gradients"]


def _array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _case(module: Any, x: Any, loss: str | dict, seed: int, dtype: str, per_sample: bool,
          init: str, folder: Path, higher: dict | None = None) -> dict:
    from ..layers.usercode import object_ref

    np.save(folder / "x.npy", _array(x))
    layer = {"type": "torch", "impl": object_ref(module), "per_sample": per_sample, "init": init,
             **{k: list(v) if k == "modes" else v for k, v in (higher or {}).items()}}
    return {"name": type(module).__name__, "seed": seed, "dtype": dtype,
            "input": {"data": "x.npy"}, "layers": [layer], "loss": loss}


def check_module(module: Any, x: Any, *, loss: str | dict = "projection", seed: int = 0,
                 dtype: str = "float64", per_sample: bool = False, init: str = "constructor",
                 sample: int | None = None, modes: tuple[str, ...] = ("rev",), order: int = 1,
                 output: int = 0) -> CaseResult:
    """Check ``module`` (a ``torch.nn.Module`` instance) at input ``x`` (tensor or array).

    ``loss`` is the case's ``loss`` field (default ``projection``); ``init="random"`` redraws the
    parameters from ``seed`` instead of using the module's values; ``per_sample=True`` makes the
    custom layers' promise (also read from a ``per_sample`` attribute of the module).
    ``modes``, ``order`` and ``output`` are the YAML fields (docs/torch.md): ``modes=("rev", "fwd")``
    also checks the forward mode, ``order=2`` the double backward, ``output`` the tensor of a
    tuple passed on (every floating one is checked).
    Returns the :class:`~gradcheck_cli.check.CaseResult`; a mismatch is not an exception here.
    """
    with tempfile.TemporaryDirectory() as d:
        doc = _case(module, x, loss, seed, dtype, per_sample, init, Path(d),
                    {"modes": modes, "order": order, "output": output})
        return check_case(doc, base_dir=d, sample=sample)


def assert_module_gradients(module: Any, x: Any, **kw: Any) -> CaseResult:
    """:func:`check_module`, raising AssertionError with ``gradcheck run``'s table when a
    gradient disagrees (like :func:`gradcheck_cli.assert_gradients`). Returns the result."""
    __tracebackhide__ = True
    with tempfile.TemporaryDirectory() as d:
        opts = {k: kw.pop(k) for k in ("loss", "seed", "dtype", "per_sample", "init") if k in kw}
        higher = {k: kw.pop(k) for k in ("modes", "order", "output") if k in kw}
        doc = _case(module, x, opts.get("loss", "projection"), opts.get("seed", 0),
                    opts.get("dtype", "float64"), opts.get("per_sample", False),
                    opts.get("init", "constructor"), Path(d), higher)
        return _assert(doc, base_dir=d, **kw)
