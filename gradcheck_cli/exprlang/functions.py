"""The functions an expression may call: each a shape rule (shapes.py) and a numpy/scipy body.

A rule gets the arguments as the shape pass sees them (arrays as ``A``) and returns the result's
shape and the multiply-adds it costs; the evaluator checks both against the limits before the
body runs. Every body is a plain function of numpy arrays and Python numbers.
"""
from __future__ import annotations

import math
import string

import numpy as np

from .matrices import MATRICES
from .shapes import A, Fault, Fn, array, axes, axis, broadcast, choice, fmt, integer, ints, reduce

MODES = ("full", "valid", "same")


def _same(a):
    return array(a, 0).shape, array(a, 0).size


def _elementwise(f, doc):
    return Fn(("a",), _same, f, doc=doc)


def _reduction(f, doc):
    def rule(a, ax):
        a = array(a, 0)
        return reduce(a, ax), a.size
    return Fn(("a", "axis"), rule, lambda a, ax: f(a, axis=axes(ax, np.ndim(a), 1)),
              defaults=(None,), doc=doc)


def _kron(a, b):
    a, b = array(a, 0), array(b, 1)
    n = max(a.ndim, b.ndim)
    sa, sb = (1,) * (n - a.ndim) + a.shape, (1,) * (n - b.ndim) + b.shape
    out = tuple(p * q for p, q in zip(sa, sb))
    return out, math.prod(out)


def _mat(v, rows, cols):
    v, r, c = array(v, 0), integer(rows, 1, 1), integer(cols, 2, 1)
    if v.size != r * c:
        raise Fault(f"mat(v, {r}, {c}) needs {r * c} entries, v has shape {fmt(v.shape)} ({v.size})", 0)
    return (r, c), v.size


def _dims(args: tuple) -> tuple[int, ...]:
    if len(args) == 1 and isinstance(args[0], tuple):
        args = args[0]
    return tuple(integer(s, i, 1) for i, s in enumerate(args))


def _filled(*dims):
    shape = _dims(dims)
    return shape, math.prod(shape)


def _diag(a):
    a = array(a, 0)
    if a.ndim == 1:
        return (a.shape[0],) * 2, a.shape[0] ** 2
    if a.ndim == 2:
        return (min(a.shape),), min(a.shape)
    raise Fault(f"diag takes a vector or a matrix, got shape {fmt(a.shape)}", 0)


def _einsum_parse(spec, ops):
    if not isinstance(spec, str) or "->" not in spec:
        raise Fault("the first argument is a subscript string with `->`, e.g. 'ij,jk->ik'", 0)
    lhs, out = spec.replace(" ", "").split("->", 1)
    terms = lhs.split(",")
    letters = set(string.ascii_letters)
    if len(terms) != len(ops) or not set("".join(terms) + out) <= letters or len(set(out)) != len(out):
        raise Fault(f"subscripts {spec!r} do not fit {len(ops)} operand(s) (letters only, no ...)", 0)
    sizes: dict[str, int] = {}
    for k, (t, op) in enumerate(zip(terms, ops)):
        op = array(op, k + 1)
        if len(t) != op.ndim:
            raise Fault(f"{t!r} names {len(t)} axes, the operand has shape {fmt(op.shape)}", k + 1)
        for ch, s in zip(t, op.shape):
            if sizes.setdefault(ch, s) != s:
                raise Fault(f"axis {ch!r} has size {sizes[ch]} and {s}", k + 1)
    if not set(out) <= set(sizes):
        raise Fault(f"output axis not among the inputs' in {spec!r}", 0)
    return tuple(sizes[c] for c in out), math.prod(sizes.values())


def _einsum(spec, *ops):
    return _einsum_parse(spec, ops)


def _square(a, arg=0):
    a = array(a, arg)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise Fault(f"needs a square matrix, got shape {fmt(a.shape)}", arg)
    return a


def _inv(a):
    a = _square(a)
    return a.shape, a.size * a.shape[-1]


def _pinv(a):
    a = array(a, 0)
    if a.ndim < 2:
        raise Fault(f"needs a matrix, got shape {fmt(a.shape)}", 0)
    return (*a.shape[:-2], a.shape[-1], a.shape[-2]), a.size * min(a.shape[-2:])


def _solve(a, b):
    a, b = _square(a), array(b, 1)
    if a.ndim != 2 or b.ndim not in (1, 2) or b.shape[0] != a.shape[0]:
        raise Fault(f"solve(a, b) needs a (n, n) and b (n,) or (n, k); got {fmt(a.shape)} and {fmt(b.shape)}")
    return b.shape, a.size * a.shape[0] + a.size * b.size


def _reshape(a, *dims):
    a = array(a, 0)
    shape = list(dims[0] if len(dims) == 1 and isinstance(dims[0], tuple) else dims)
    shape = [integer(s, 1) for s in shape]
    if shape.count(-1) > 1 or any(s < -1 or s == 0 for s in shape):
        raise Fault(f"sizes must be >= 1, with at most one -1; got {tuple(shape)}", 1)
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if a.size % known:
            raise Fault(f"cannot reshape {fmt(a.shape)} to {tuple(shape)}", 1)
        shape[shape.index(-1)] = a.size // known
    if math.prod(shape) != a.size:
        raise Fault(f"cannot reshape {fmt(a.shape)} ({a.size} entries) to {fmt(tuple(shape))}", 1)
    return tuple(shape), a.size


def _transpose(a, ax):
    a = array(a, 0)
    if ax is None:
        return a.shape[::-1], a.size
    perm = tuple(axis(v, a.ndim, 1) for v in ints(ax, 1))
    if sorted(perm) != list(range(a.ndim)):
        raise Fault(f"{ax} is not a permutation of the {a.ndim} axes", 1)
    return tuple(a.shape[p] for p in perm), a.size


def _widths(w, ndim):
    """pad's widths: an int (every side), one int per axis, or a (before, after) pair per axis."""
    if not isinstance(w, tuple):
        return ((integer(w, 1, 0),) * 2,) * ndim
    if len(w) != ndim:
        raise Fault(f"widths {w} give {len(w)} axes, the array has {ndim}", 1)
    out = []
    for e in w:
        pair = ints(e, 1, 0)
        out.append(pair * 2 if len(pair) == 1 else pair)
        if len(out[-1]) != 2:
            raise Fault(f"widths {w}: each axis takes an int or a pair (before, after)", 1)
    return tuple(out)


def _pad(a, w):
    a = array(a, 0)
    shape = tuple(s + p + q for s, (p, q) in zip(a.shape, _widths(w, a.ndim)))
    return shape, math.prod(shape)


def _signal(a, k, mode):
    a, k = array(a, 0), array(k, 1)
    mode = choice(mode, 2, MODES)
    if a.ndim != k.ndim or a.ndim == 0:
        raise Fault(f"a and k need the same number of axes, got shapes {fmt(a.shape)} and {fmt(k.shape)}")
    if mode == "full":
        out = tuple(p + q - 1 for p, q in zip(a.shape, k.shape))
    elif mode == "same":
        out = a.shape
    else:
        if not (all(p >= q for p, q in zip(a.shape, k.shape)) or all(q >= p for p, q in zip(a.shape, k.shape))):
            raise Fault(f"mode 'valid' needs one of {fmt(a.shape)} and {fmt(k.shape)} at least as large "
                        "as the other in every axis")
        out = tuple(abs(p - q) + 1 for p, q in zip(a.shape, k.shape))
    return out, a.size * k.size


def _dilate_args(a, stride, ax):
    a = array(a, 0)
    chosen = axes(ax, a.ndim, 2) or ()
    s = ints(stride, 1, 1)
    s = s * len(chosen) if len(s) == 1 else s
    if len(s) != len(chosen):
        raise Fault(f"{len(s)} strides for {len(chosen)} axes", 1)
    return a, chosen, s


def _dilate_rule(a, stride, ax):
    a, chosen, s = _dilate_args(a, stride, ax)
    shape = list(a.shape)
    for c, k in zip(chosen, s):
        shape[c] = (shape[c] - 1) * k + 1
    return tuple(shape), math.prod(shape)


def _dilate(a, stride, ax):
    _, chosen, s = _dilate_args(A(np.shape(a)), stride, ax)
    shape, _ = _dilate_rule(A(np.shape(a)), stride, ax)
    out = np.zeros(shape, dtype=np.result_type(a, np.float32))
    key = [slice(None)] * np.ndim(a)
    for c, k in zip(chosen, s):
        key[c] = slice(None, None, k)
    out[tuple(key)] = a
    return out


def _where(c, a, b):
    return broadcast("where", array(c, 0).shape, array(a, 1).shape, array(b, 2).shape), 0


def _pair(name):
    def rule(a, b):
        return broadcast(name, array(a, 0).shape, array(b, 1).shape), 0
    return rule


def _outer(a, b):
    a, b = array(a, 0), array(b, 1)
    return (a.size, b.size), a.size * b.size


def _vec(a):
    a = array(a, 0)
    return (a.size,), a.size


def _eye(n):
    n = integer(n, 0, 1)
    return (n, n), n * n


def _flip(a, ax):
    a = array(a, 0)
    axes(ax, a.ndim, 1)
    return a.shape, a.size


def _trace(a):
    a = array(a, 0)
    if a.ndim != 2:
        raise Fault(f"trace takes a matrix, got shape {fmt(a.shape)}", 0)
    return (), min(a.shape)


def _signal_body(name):
    def body(a, k, mode):
        from scipy import signal
        return getattr(signal, name)(np.asarray(a), np.asarray(k), mode=mode)
    return body


def _std(a, axis=None):
    return np.std(a, axis=axis)


FUNCTIONS: dict[str, Fn] = {
    **{n: _elementwise(f, d) for n, (f, d) in {
        "abs": (np.abs, "|a|"), "sign": (np.sign, "-1, 0 or 1"), "exp": (np.exp, "e^a"),
        "log": (np.log, "natural log"), "sqrt": (np.sqrt, "square root"), "tanh": (np.tanh, "tanh"),
        "sin": (np.sin, "sine"), "cos": (np.cos, "cosine"),
        "sigmoid": (lambda a: 0.5 * (1 + np.tanh(0.5 * np.asarray(a))), "1 / (1 + e^-a)"),
        "step": (lambda a: (np.asarray(a) > 0).astype(np.result_type(a, np.float32)),
                 "1 where a > 0, else 0 (ReLU's derivative)")}.items()},
    **{n: _reduction(f, d) for n, (f, d) in {
        "sum": (np.sum, "sum over axis (None: all)"), "mean": (np.mean, "mean over axis"),
        "max": (np.max, "largest entry over axis"), "min": (np.min, "smallest entry over axis"),
        "std": (_std, "standard deviation (divides by n) over axis")}.items()},
    "argmax": Fn(("a", "axis"), lambda a, ax: (reduce(array(a, 0), None if ax is None else integer(ax, 1)),
                                               array(a, 0).size),
                 lambda a, ax: np.argmax(a, axis=ax), defaults=(None,), doc="index of the largest entry"),
    "maximum": Fn(("a", "b"), _pair("maximum"), np.maximum, 2, doc="entrywise larger"),
    "minimum": Fn(("a", "b"), _pair("minimum"), np.minimum, 2, doc="entrywise smaller"),
    "where": Fn(("cond", "a", "b"), _where, lambda c, a, b: np.where(np.asarray(c) != 0, a, b), 3,
                doc="a where cond is nonzero, else b"),
    "kron": Fn(("a", "b"), _kron, np.kron, 2, doc="Kronecker product"),
    "vec": Fn(("a",), _vec, lambda a: np.reshape(a, -1, order="F"), doc="column-major vector (seed 001)"),
    "mat": Fn(("v", "rows", "cols"), _mat, lambda v, r, c: np.reshape(v, (r, c), order="F"), 3,
              doc="inverse of vec: column-major rows x cols"),
    "I": Fn(("n",), _eye, np.eye, doc="n x n identity"),
    "ones": Fn(("*shape",), _filled, lambda *d: np.ones(_dims(d)), doc="ones(N, 1) or ones((N, 1))"),
    "zeros": Fn(("*shape",), _filled, lambda *d: np.zeros(_dims(d)), doc="zeros of a shape"),
    "diag": Fn(("a",), _diag, np.diag, doc="vector -> diagonal matrix; matrix -> its diagonal"),
    "outer": Fn(("a", "b"), _outer, np.outer, 2, doc="outer product of the flattened a and b"),
    "einsum": Fn(("subscripts", "*operands"), _einsum, lambda s, *ops: np.einsum(s, *ops), 2,
                 doc="einsum('ij,jk->ik', a, b): explicit output, letters only"),
    "inv": Fn(("a",), _inv, np.linalg.inv, doc="matrix inverse"),
    "pinv": Fn(("a",), _pinv, np.linalg.pinv, doc="pseudo-inverse"),
    "solve": Fn(("a", "b"), _solve, np.linalg.solve, 2, doc="x with a x = b"),
    "trace": Fn(("a",), _trace, np.trace, doc="sum of the diagonal"),
    "reshape": Fn(("a", "*shape"), _reshape, lambda a, *d: np.reshape(a, d[0] if len(d) == 1 else d), 2,
                  doc="row-major (numpy) reshape; mat/vec are column-major"),
    "transpose": Fn(("a", "axes"), _transpose, lambda a, ax: np.transpose(a, ax), defaults=(None,),
                    doc="permute axes (default: reverse them)"),
    "flip": Fn(("a", "axis"), _flip, lambda a, ax: np.flip(a, ax), defaults=(None,),
               doc="reverse along axis (None: every axis; a 180-degree rotation of a filter)"),
    "pad": Fn(("a", "widths"), _pad, lambda a, w: np.pad(a, _widths(w, np.ndim(a))), 2,
              doc="zeros around: widths an int, one per axis, or (before, after) per axis"),
    "correlate": Fn(("a", "k", "mode"), _signal, _signal_body("correlate"), 2, ("full",),
                    doc="scipy.signal.correlate: sum_j a[i+j] k[j]"),
    "convolve": Fn(("a", "k", "mode"), _signal, _signal_body("convolve"), 2, ("full",),
                   doc="scipy.signal.convolve: sum_j a[i-j] k[j]"),
    "dilate": Fn(("a", "stride", "axis"), _dilate_rule, _dilate, 2, (-1,),
                 doc="stride - 1 zeros between entries along axis (seed 002's trick)"),
}
FUNCTIONS.update(MATRICES)
