"""The layers a case can name: the built-in ones (imported on first use) and any registered since.

registry.py defines what a layer is and how it registers; the modules under layers/ register
themselves with it; this module is the one place that imports them all, so neither of those two
imports the other's dependants (no registry <-> layers cycle).
"""
from __future__ import annotations

from typing import Any

from . import registry
from .registry import Layer, LayerSpec


def layers() -> dict[str, LayerSpec]:
    """Every registered layer, importing the built-in layer modules on first use."""
    from . import layers as _builtin  # noqa: F401  (registers by import)

    return registry.LAYERS


def get(name: str) -> LayerSpec:
    return layers()[name]


def make_layer(cfg: Any, file: str) -> Layer:
    """Instantiate the registered layer class of ``cfg`` (a cases.LayerConfig) with its options."""
    layer = get(cfg.type).cls(**dict(cfg.options))
    layer.where = f"{file}: {cfg.field}"    # lets a layer name itself in the errors it raises
    return layer
