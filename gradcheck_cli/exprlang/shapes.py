"""Shapes without arrays: the abstract values of the shape pass and the rules shared by operators.

An array is stood for by :class:`A` (its shape); integers, floats, strings, None and tuples of
them are concrete in both passes, so ``mat(v, N, D)`` or ``ones(N, 1)`` know their sizes before
anything is allocated. A rule raises :class:`Fault` naming the argument at fault, and the
evaluator puts the caret under that argument.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class A:
    """An array of this shape (its values are not known in the shape pass)."""

    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class Fn:
    """A function of the language: its shape rule and its numpy body. ``params``: names in
    order (``*name``: the rest of the positional arguments); ``required``: how many must be
    given; ``defaults``: the others'."""

    params: tuple[str, ...]
    rule: Callable[..., tuple[tuple[int, ...], int]]
    body: Callable[..., Any]
    required: int = 1
    defaults: tuple = ()
    doc: str = ""


class Fault(Exception):
    """A rule's complaint: ``arg`` is the index (or name) of the argument at fault, None: the call."""

    def __init__(self, message: str, arg: int | str | None = None) -> None:
        super().__init__(message)
        self.message, self.arg = message, arg


def fmt(shape: tuple[int, ...]) -> str:
    """A shape as the messages write it: (4, 3)."""
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def abstract(v: Any) -> Any:
    """A value as the rules see it: arrays become A, everything else stays."""
    if isinstance(v, np.ndarray):
        return A(tuple(v.shape))
    if isinstance(v, np.generic):
        return A(())
    return v


def is_number(v: Any) -> bool:
    """A Python int or float (not a bool, not a numpy scalar: those are 0-d arrays here)."""
    return type(v) in (int, float)


def array(v: Any, arg: int | str) -> A:
    """An array argument: an array, or a number as a 0-d array."""
    if isinstance(v, A):
        return v
    if is_number(v):
        return A(())
    raise Fault(f"expected an array, got {describe(v)}", arg)


def describe(v: Any) -> str:
    if isinstance(v, A):
        return f"an array of shape {fmt(v.shape)}"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, tuple):
        return f"the tuple {v}"
    return "nothing" if v is None else f"the number {v}"


def integer(v: Any, arg: int | str, lo: int | None = None) -> int:
    """An integer known from shapes (an axis size, a literal), at least ``lo``."""
    if isinstance(v, float) and v.is_integer() and abs(v) <= 2**62:
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        why = " (sizes must be known from shapes, not from values)" if isinstance(v, A) else ""
        raise Fault(f"expected an integer, got {describe(v)}{why}", arg)
    if lo is not None and v < lo:
        raise Fault(f"must be >= {lo}, got {v}", arg)
    if abs(v) > 2**62:
        raise Fault(f"{v:.3g} is too large for a size", arg)
    return v


def ints(v: Any, arg: int | str, lo: int | None = None) -> tuple[int, ...]:
    """An integer or a tuple/list of integers, as a tuple."""
    if isinstance(v, tuple):
        return tuple(integer(e, arg, lo) for e in v)
    return (integer(v, arg, lo),)


def axis(v: Any, ndim: int, arg: int | str) -> int:
    """An axis of an array of ``ndim`` axes (negative counts from the end)."""
    a = integer(v, arg)
    if not -ndim <= a < ndim:
        raise Fault(f"axis {a} is out of range for an array of {ndim} axes", arg)
    return a % ndim


def axes(v: Any, ndim: int, arg: int | str) -> tuple[int, ...] | None:
    """None (every axis), an axis or a tuple of distinct axes."""
    if v is None:
        return None
    out = tuple(axis(a, ndim, arg) for a in (v if isinstance(v, tuple) else (v,)))
    if len(set(out)) != len(out):
        raise Fault(f"repeated axis in {v}", arg)
    return out


def choice(v: Any, arg: int | str, choices: tuple[str, ...]) -> str:
    if not isinstance(v, str) or v not in choices:
        raise Fault(f"expected one of {', '.join(repr(c) for c in choices)}, got {describe(v)}", arg)
    return v


def broadcast(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """numpy's broadcasting of ``shapes``, or a Fault naming them all."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise Fault(f"shapes {' and '.join(fmt(s) for s in shapes)} do not broadcast for {op}") from None


def matmul(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """Shape of a @ b (numpy's rules) and its multiply-adds."""
    if not a or not b:
        raise Fault(f"@ needs arrays of at least one axis, got shapes {fmt(a)} and {fmt(b)}")
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise Fault(f"shapes {fmt(a)} and {fmt(b)} do not match for @ ({a2[-1]} != {b2[-2]})")
    batch = broadcast("@", a2[:-2], b2[:-2])
    out = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out, math.prod(batch) * a2[-2] * a2[-1] * b2[-1]


def reduce(a: A, ax: Any, arg: int | str = 1) -> tuple[int, ...]:
    """Shape after reducing ``ax`` (None: every axis) of ``a``."""
    chosen = axes(ax, a.ndim, arg)
    if chosen is None:
        return ()
    return tuple(s for i, s in enumerate(a.shape) if i not in chosen)


def index(shape: tuple[int, ...], key: Any) -> tuple[int, ...]:
    """Shape of a[key] for basic indexing (integers, slices, None): worked out on a view of
    zero strides, which costs nothing whatever the shape."""
    parts = key if isinstance(key, tuple) else (key,)
    for p in parts:
        if not (p is None or isinstance(p, slice) or (isinstance(p, int) and not isinstance(p, bool))):
            raise Fault(f"an index must be an integer, a slice or None, got {describe(p)}")
    try:
        return np.broadcast_to(np.empty((), dtype=np.int8), shape)[key].shape
    except IndexError as exc:
        raise Fault(f"index out of range for shape {fmt(shape)}: {exc}") from None
