"""Built-in layers: importing a module registers its layers."""
from . import dense  # noqa: F401
from . import conv, conv1d, pool  # noqa: F401
from . import abc  # noqa: F401
from . import custom  # noqa: F401
from . import torch_module, jax_module, functions  # noqa: F401  (torch, jax imported on first use)
from . import expression  # noqa: F401
