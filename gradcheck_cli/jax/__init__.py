"""gradcheck for JAX code that is not in a YAML case.

A layer ``forward(x, params)`` (checked as a ``type: jax`` layer)::

    import gradcheck_cli.jax

    def test_my_layer_norm():
        gradcheck_cli.jax.assert_function_gradients(
            lambda x, p: layer_norm(x, p["gamma"], p["beta"]), x, {"gamma": g, "beta": b})

Any function of pytrees, as ``jax.test_util.check_grads`` takes it (the drop-in,
docs/dropin.md)::

    from gradcheck_cli.jax import check_grads
    check_grads(f, (x, params), order=2)

Importing this package does not import jax: check_grads loads it on first use, and without jax
installed it raises ImportError naming the pip command.
"""
from __future__ import annotations

from ..lazy import framework_getattr
from .module import assert_function_gradients, check_function

__all__ = ["check_function", "assert_function_gradients", "check_grads"]
PIP_HINT = "pip install 'gradcheck-cli[jax]'"


__getattr__ = framework_getattr(__name__, ("check_grads",), "jax", "JAX", PIP_HINT)
