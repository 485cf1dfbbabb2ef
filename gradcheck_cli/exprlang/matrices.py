"""Index vectors and seed 001's 0/1 matrices, made explicit so that its equations can be typed.

Layout as in Lin's notes and simpleNN (/work notes: vec-form): an image Z^{m,i} is a d x (a b)
matrix, channels by positions, vec column-major, so entry (c, r, q) of the d x a x b image is
vec index c + r d + q a d; row k of phi(Z) is k = i + j h + c h h (filter row fastest, then
filter column, then channel), its column t = P + Q a_conv. They are the kron form's own
matrices (layers/conv_grads.py), made dense here (the expression checks a derivation on a small
case; the memory limit refuses large ones).
"""
from __future__ import annotations

import numpy as np

from .shapes import Fault, Fn, integer


def _sizes(*args):
    return tuple(integer(v, i, 1) for i, v in enumerate(args))


def _conv_size(n: int, h: int, s: int, arg: int) -> int:
    if n < h:
        raise Fault(f"a filter of {h} does not fit {n} positions", arg)
    return (n - h) // s + 1


def _pad_rule(d, a, b, p):
    d, a, b = _sizes(d, a, b)
    p = integer(p, 3, 0)
    rows, cols = d * (a + 2 * p) * (b + 2 * p), d * a * b
    return (rows, cols), rows * cols


def p_pad(d, a, b, p):
    """P_pad: vec(pad(Z)) = P_pad vec(Z), zeros p wide around each d x a x b image."""
    from ..layers.conv_grads import kron_matrices    # layers imports exprlang: not at the top
    return kron_matrices(d, a, b, (1, 1), (1, 1), (p, p))[1].toarray()


def _phi_rule(d, a, b, h, s):
    d, a, b, h, s = _sizes(d, a, b, h, s)
    ac, bc = _conv_size(a, h, s, 1), _conv_size(b, h, s, 2)
    rows, cols = h * h * d * ac * bc, d * a * b
    return (rows, cols), rows * cols


def p_phi(d, a, b, h, s):
    """P_phi (im2col): vec(phi(Z)) = P_phi vec(Z) for a d x a x b image, an h x h filter, stride s."""
    from ..layers.conv_grads import kron_matrices
    return kron_matrices(d, a, b, (h, h), (s, s), (0, 0))[0].toarray()


def _arange_rule(n):
    n = integer(n, 0, 1)
    return (n,), n


MATRICES = {
    "arange": Fn(("n",), _arange_rule, lambda n: np.arange(n, dtype=np.float64), doc="0, 1, ..., n - 1"),
    "P_pad": Fn(("d", "a", "b", "p"), _pad_rule, p_pad, 4,
                doc="seed 001's P_pad: vec(pad(Z)) = P_pad vec(Z) (Z: d x a x b, zeros p wide)"),
    "P_phi": Fn(("d", "a", "b", "h", "s"), _phi_rule, p_phi, 5,
                doc="seed 001's P_phi (im2col): vec(phi(Z)) = P_phi vec(Z), h x h filter, stride s"),
}
