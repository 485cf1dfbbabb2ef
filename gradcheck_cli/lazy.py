"""Modules imported on first use, so that commands which never touch them do not pay for them.

``from ..lazy import sparse as sp`` gives an object that imports scipy.sparse (~0.1 s) the first
time one of its attributes is read; `gradcheck list`, `validate` and `run --form correlation`
never do.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule(ModuleType):
    """A stand-in for the module ``name`` that imports it on first attribute access."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr == "_module":
            raise AttributeError(attr)
        if self._module is None:
            self._module = importlib.import_module(self.__name__)
        return getattr(self._module, attr)


sparse = LazyModule("scipy.sparse")
