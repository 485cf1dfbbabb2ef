"""Built-in layers: importing a module registers its layers."""
from . import dense  # noqa: F401
