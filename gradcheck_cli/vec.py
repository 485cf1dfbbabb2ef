"""vec / mat in the column-major convention of seed 001 (see shared notes vec-form.md)."""
from __future__ import annotations

import numpy as np


def vec(a: np.ndarray) -> np.ndarray:
    """Stack the columns of ``a`` (column-major, first index fastest)."""
    return np.asarray(a).reshape(-1, order="F")


def mat(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`vec`."""
    return np.asarray(v).reshape(shape, order="F")
