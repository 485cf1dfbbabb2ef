"""A small, safe language for equations typed in a case (``type: expression`` layers).

Python's ``ast`` parses the text and a whitelist checks the tree (parse.py); nothing is ever
passed to ``eval``. One walker (evaluate.py) runs either on shapes alone, before any array
exists, or on numpy arrays, refusing any result over the memory limit before it is made.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .evaluate import MAX_WORK, Context, Walker
from .functions import FUNCTIONS
from .parse import MAX_DEPTH, MAX_LENGTH, MAX_NESTING, ExprError, Parsed, caret, parse
from .shapes import A, fmt

__all__ = ["A", "Expr", "ExprError", "FUNCTIONS", "MAX_DEPTH", "MAX_LENGTH", "MAX_NESTING", "MAX_WORK",
           "caret", "fmt"]


class Expr:
    """One expression of a case, parsed and checked once."""

    def __init__(self, text: Any) -> None:
        self.parsed: Parsed = parse(text)
        self.text = self.parsed.text

    def shape(self, names: dict[str, Any], max_bytes: int = 2**40, limit_source: str = "the memory limit"):
        """The result's shape (a tuple) or, for a result known from shapes, the value itself;
        ``names`` maps names to arrays (``A`` or ndarray) and numbers."""
        out = Walker(self.parsed, Context(names, True, np.float64, max_bytes, limit_source)).run()
        return out.shape if isinstance(out, A) else out

    def abstract(self, names: dict[str, Any], max_bytes: int = 2**40, limit_source: str = "the memory limit"):
        """The shape pass's result itself: an ``A`` for an array, else the concrete value."""
        return self.costed(names, max_bytes, limit_source)[0]

    def costed(self, names: dict[str, Any], max_bytes: int = 2**40, limit_source: str = "the memory limit"):
        """(the shape pass's result, bytes of every array result made on the way, in float64)."""
        w = Walker(self.parsed, Context(names, True, np.float64, max_bytes, limit_source))
        return w.run(), w.bytes

    def value(self, names: dict[str, Any], dtype=np.float64, max_bytes: int = 2**40,
              limit_source: str = "the memory limit") -> Any:
        """The expression's value with numpy; :class:`ExprError` on any fault."""
        return Walker(self.parsed, Context(names, False, dtype, max_bytes, limit_source)).run()
