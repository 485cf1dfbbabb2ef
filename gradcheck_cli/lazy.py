"""Modules imported on first use, so that commands which never touch them do not pay for them.

``from ..lazy import sparse as sp`` gives an object that imports scipy.sparse (~0.1 s) the first
time one of its attributes is read; `gradcheck list`, `validate` and `run --form correlation`
never do.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

# numpy submodules scipy (>= 1.15, its array_api_compat copy of numpy's namespace) imports
# although nothing here uses them: numpy.f2py alone (with charset_normalizer) is ~0.2 s
_UNUSED_NUMPY = frozenset({"f2py", "testing"})


def import_module(name: str) -> ModuleType:
    """``importlib.import_module(name)``; for scipy, with numpy's unused submodules hidden from
    the namespace copy its import makes (numpy itself is untouched once the import is done)."""
    if not name.startswith("scipy") or name in sys.modules:
        return importlib.import_module(name)
    import numpy

    old_all, old_dir = numpy.__all__, numpy.__dir__
    numpy.__all__ = [n for n in old_all if n not in _UNUSED_NUMPY]
    numpy.__dir__ = lambda: [n for n in old_dir() if n not in _UNUSED_NUMPY]
    try:
        return importlib.import_module(name)
    finally:
        numpy.__all__, numpy.__dir__ = old_all, old_dir


class LazyModule(ModuleType):
    """A stand-in for the module ``name`` that imports it on first attribute access."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr == "_module":
            raise AttributeError(attr)
        if self._module is None:
            self._module = import_module(self.__name__)
        return getattr(self._module, attr)


sparse = LazyModule("scipy.sparse")


def framework_getattr(package: str, names: tuple[str, ...], framework: str, display: str,
                      pip_hint: str):
    """A module ``__getattr__`` for ``package`` (gradcheck_cli.torch / .jax) that imports its
    ``dropin`` submodule on first use of one of ``names``; where ``framework`` is not installed,
    an ImportError naming the pip command."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            dropin = importlib.import_module(f"{package}.dropin")
        except ImportError as e:
            if framework not in str(e):
                raise
            raise ImportError(f"{package}.{name} needs {display}, which is not installed: "
                              f"{pip_hint}") from e
        return getattr(dropin, name)

    return __getattr__
