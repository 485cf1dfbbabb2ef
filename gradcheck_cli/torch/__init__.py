"""gradcheck for PyTorch code that is not in a YAML case.

A module with one input (checked as a ``type: torch`` layer)::

    import gradcheck_cli.torch

    def test_my_layernorm():
        gradcheck_cli.torch.assert_module_gradients(LayerNorm(6), torch.randn(4, 6))

A function of several tensors, as ``torch.autograd.gradcheck`` / ``gradgradcheck`` take it (the
drop-ins, docs/dropin.md)::

    from gradcheck_cli.torch import gradcheck, gradgradcheck, GradcheckError
    assert gradcheck(MyFunction.apply, (x, w, 0.5))

Importing this package does not import torch: the drop-ins load it on first use, and without
torch installed they raise ImportError naming the pip command.
"""
from __future__ import annotations

from ..lazy import framework_getattr
from .module import assert_module_gradients, check_module

__all__ = ["check_module", "assert_module_gradients", "gradcheck", "gradgradcheck",
           "GradcheckError"]
_DROPIN = ("gradcheck", "gradgradcheck", "GradcheckError")
PIP_HINT = "pip install 'gradcheck-cli[torch]'"


__getattr__ = framework_getattr(__name__, _DROPIN, "torch", "PyTorch", PIP_HINT)
