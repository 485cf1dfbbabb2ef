"""gradcheck: verify the analytic gradients of neural-network layers against numerical ones.

Python API (imported on first use): :func:`check_case` and :func:`assert_gradients`;
``gradcheck_cli.torch.assert_module_gradients`` and ``gradcheck_cli.jax.assert_function_gradients``
for torch modules and JAX functions (each needs its framework installed).
"""
__version__ = "0.1.0"
__all__ = ["check_case", "assert_gradients", "__version__"]


def __getattr__(name: str):
    if name in ("check_case", "assert_gradients"):
        from . import api

        return getattr(api, name)
    if name in ("torch", "jax"):         # submodules; the frameworks load only when used
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'gradcheck_cli' has no attribute {name!r}")
