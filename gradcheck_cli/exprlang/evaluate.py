"""Evaluating a parsed expression: the shape pass and the value pass share one walker.

In the shape pass (``abstract=True``) arrays are :class:`~.shapes.A` and no array is made; in
the value pass every operation first works out its result's shape and cost by the same rule and
refuses it over the limits, then computes it with numpy. Integers, floats, strings and tuples
are concrete in both passes.
"""
from __future__ import annotations

import ast
import dataclasses
import math
import operator
from typing import Any

import numpy as np

from .functions import FUNCTIONS, Fn
from .parse import ExprError, Parsed
from .shapes import A, Fault, abstract, broadcast, describe, fmt, index, is_number, matmul

MAX_WORK = 10**10          # multiply-adds of one operation (about ten seconds of numpy)
MAX_INT = 2**62
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv, ast.Pow: operator.pow, ast.FloorDiv: operator.floordiv,
          ast.Mod: operator.mod}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.MatMult: "@",
           ast.FloorDiv: "//", ast.Mod: "%"}
_CMP = {ast.Gt: np.greater, ast.Lt: np.less, ast.GtE: np.greater_equal, ast.LtE: np.less_equal,
        ast.Eq: np.equal, ast.NotEq: np.not_equal}


@dataclasses.dataclass
class Context:
    """What an evaluation may use: the names, whether arrays are abstract, the dtype of arrays it
    makes, and the limit in bytes of any one result."""

    names: dict[str, Any]
    abstract: bool = False
    dtype: Any = np.float64
    max_bytes: int = 2**40
    limit_source: str = "the memory limit"


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _close(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


class Walker:
    """One evaluation of one expression."""

    def __init__(self, parsed: Parsed, ctx: Context) -> None:
        self.p, self.ctx = parsed, ctx
        self.nan_at: ast.AST | None = None     # the first node that made NaN/Inf from finite inputs
        self.bytes = 0                          # every array result, added up (a forward's scratch)

    def run(self) -> Any:
        with np.errstate(all="ignore"):
            out = self.eval(self.p.tree)
        if not self.ctx.abstract and isinstance(out, np.ndarray) and out.dtype.kind == "f" \
                and not np.all(np.isfinite(out)):
            node = self.nan_at or self.p.tree
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
            at = self.p.op_position(node) if isinstance(node, (ast.BinOp, ast.Compare)) else self.p.position(node)
            raise ExprError(f"the result holds NaN or Inf (first at index {list(bad)}); it starts here", *at)
        return out

    # -- checks -----------------------------------------------------------------------------
    def fail(self, node: ast.AST, message: str, op: bool = False) -> None:
        raise ExprError(message, *(self.p.op_position(node) if op else self.p.position(node)))

    def admit(self, node: ast.AST, what: str, shape: tuple[int, ...], work: int = 0, op: bool = False) -> None:
        """Refuse a result over the memory limit or an operation over the work limit, before it runs."""
        n = min(math.prod(shape), 10**300)      # a float for the message, never an overflow
        self.bytes += 8 * n
        if 8 * n > self.ctx.max_bytes:
            self.fail(node, f"{what} would have shape {fmt(shape)}: {n:.3g} entries, {human(8 * n)}, over "
                            f"{self.ctx.limit_source} of {human(self.ctx.max_bytes)}", op)
        if work > MAX_WORK:
            self.fail(node, f"{what} would take {work:.3g} multiply-adds, over the limit of {MAX_WORK:.0e}", op)

    def scalar(self, node: ast.AST, v: Any) -> Any:
        if isinstance(v, complex):
            self.fail(node, f"this gives the complex number {v}; expressions are real")
        if isinstance(v, float) and not math.isfinite(v):
            self.fail(node, f"this gives {v}")
        if isinstance(v, int) and abs(v) > MAX_INT:
            self.fail(node, f"integer too large (over 2^62)")
        return v

    def made(self, node: ast.AST, out: Any, *inputs: Any) -> Any:
        """Note where NaN/Inf first appear from finite inputs (value pass)."""
        if isinstance(out, np.generic):
            out = np.asarray(out)
        if self.nan_at is None and isinstance(out, np.ndarray) and out.dtype.kind == "f" \
                and not np.all(np.isfinite(out)):
            if all(not isinstance(v, np.ndarray) or v.dtype.kind != "f" or np.all(np.isfinite(v)) for v in inputs):
                self.nan_at = node
        return out

    # -- nodes -----------------------------------------------------------------------------
    def eval(self, node: ast.AST) -> Any:
        method = getattr(self, "_" + type(node).__name__)
        return method(node)

    def _Constant(self, node: ast.Constant) -> Any:
        return self.scalar(node, node.value)

    def _Name(self, node: ast.Name) -> Any:
        names = self.ctx.names
        if node.id not in names:
            known = ", ".join(sorted(names)[:12]) + (", ..." if len(names) > 12 else "")
            what = f"`{node.id}` is a function: call it, e.g. {node.id}(...)" if node.id in FUNCTIONS else \
                f"unknown name `{node.id}`{_close(node.id, names)}; known here: {known}"
            self.fail(node, what)
        v = names[node.id]
        return abstract(v) if self.ctx.abstract else v

    def _Tuple(self, node: ast.Tuple | ast.List) -> tuple:
        out = tuple(self.eval(e) for e in node.elts)
        for e, v in zip(node.elts, out):
            if isinstance(v, (A, np.ndarray)):
                self.fail(e, "an array cannot go in a list or tuple; write sizes and axes here")
        return out

    _List = _Tuple

    def _Slice(self, node: ast.Slice) -> slice:
        parts = [None if e is None else self.eval(e) for e in (node.lower, node.upper, node.step)]
        for e, v in zip((node.lower, node.upper, node.step), parts):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                self.fail(e, f"a slice bound must be an integer, got {describe(abstract(v))}")
        if parts[2] == 0:
            self.fail(node.step, "slice step cannot be zero")
        return slice(*parts)

    def _Attribute(self, node: ast.Attribute) -> Any:
        v = self.eval(node.value)
        a = abstract(v)
        if not isinstance(a, A):
            self.fail(node.value, f".{node.attr} needs an array, got {describe(a)}")
        if node.attr == "shape":
            return a.shape
        return A(a.shape[::-1]) if isinstance(v, A) else v.T

    def _Subscript(self, node: ast.Subscript) -> Any:
        v = self.eval(node.value)
        key = self.eval(node.slice)
        if isinstance(v, tuple):
            if not isinstance(key, (int, slice)) or isinstance(key, bool):
                self.fail(node.slice, f"a shape is indexed by an integer or a slice, got {describe(key)}")
            try:
                return v[key]
            except IndexError:
                self.fail(node.slice, f"index {key} out of range for {v}")
        a = abstract(v)
        if not isinstance(a, A):
            self.fail(node.value, f"cannot index {describe(a)}")
        try:
            shape = index(a.shape, key)
        except Fault as f:
            self.fail(node.slice, f.message)
        return A(shape) if isinstance(v, A) else self.made(node, v[key])

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        v = self.eval(node.operand)
        if isinstance(v, (str, tuple)) or v is None:
            self.fail(node, f"cannot negate {describe(v)}")
        if isinstance(v, A):
            return v
        return self.scalar(node, -v if isinstance(node.op, ast.USub) else +v)

    def _Compare(self, node: ast.Compare) -> Any:
        a, b = self.eval(node.left), self.eval(node.comparators[0])
        self._operands(node, a, b, "a comparison")
        shape = self._shape(node, a, b, "a comparison")
        if isinstance(a, A) or isinstance(b, A):
            return A(shape)
        if is_number(a) and is_number(b):
            return float(_CMP[type(node.ops[0])](a, b))
        self.admit(node, "the comparison", shape, op=True)
        return np.asarray(_CMP[type(node.ops[0])](a, b), dtype=self.ctx.dtype)

    def _operands(self, node, a, b, what) -> None:
        for v, side in ((a, node.left), (b, getattr(node, "right", None) or node.comparators[0])):
            if not (isinstance(v, (A, np.ndarray, np.generic)) or is_number(v)):
                self.fail(side, f"{what} needs arrays or numbers, got {describe(abstract(v))}")

    def _shape(self, node, a, b, what) -> tuple[int, ...]:
        sa, sb = abstract(a), abstract(b)
        try:
            return broadcast(what, getattr(sa, "shape", ()), getattr(sb, "shape", ()))
        except Fault as f:
            self.fail(node, f.message, op=True)

    def _BinOp(self, node: ast.BinOp) -> Any:
        a, b = self.eval(node.left), self.eval(node.right)
        sym = _SYMBOL[type(node.op)]
        self._operands(node, a, b, f"`{sym}`")
        arrays = isinstance(abstract(a), A) or isinstance(abstract(b), A)
        if isinstance(node.op, ast.MatMult):
            sa, sb = abstract(a), abstract(b)
            if not (isinstance(sa, A) and isinstance(sb, A)):
                self.fail(node, f"@ needs two arrays, got {describe(sa)} and {describe(sb)}", op=True)
            try:
                shape, work = matmul(sa.shape, sb.shape)
            except Fault as f:
                self.fail(node, f.message, op=True)
            self.admit(node, "the product", shape, work, op=True)
            return A(shape) if isinstance(a, A) else self.made(node, np.matmul(a, b), a, b)
        if not arrays:
            return self._scalar_op(node, a, b)
        shape = self._shape(node, a, b, f"`{sym}`")
        self.admit(node, f"`{sym}`", shape, op=True)
        if isinstance(a, A) or isinstance(b, A):
            return A(shape)
        return self.made(node, _ARITH[type(node.op)](a, b), a, b)

    def _scalar_op(self, node: ast.BinOp, a: Any, b: Any) -> Any:
        if isinstance(node.op, ast.Pow) and isinstance(a, int) and isinstance(b, int):
            if b < 0:
                a = float(a)
            elif abs(a) > 1 and b * math.log2(abs(a)) > 62:
                self.fail(node, f"{a} ** {b} is too large (over 2^62)", op=True)
        try:
            return self.scalar(node, _ARITH[type(node.op)](a, b))
        except ZeroDivisionError:
            self.fail(node, "division by zero", op=True)
        except (OverflowError, ValueError) as exc:
            self.fail(node, f"{exc}", op=True)

    def _Call(self, node: ast.Call) -> Any:
        name = node.func.id
        fn = FUNCTIONS.get(name)
        if fn is None:
            hint = f"; `{name}` is a value here, not a function" if name in self.ctx.names else ""
            self.fail(node, f"unknown function `{name}`{hint}{_close(name, FUNCTIONS)} (the functions: "
                            "docs/expression.md)")
        args, nodes = self._bind(node, name, fn)
        values = [self.eval(n) if n is not None else d for n, d in zip(nodes, args)]
        view = [abstract(v) for v in values]
        try:
            shape, work = fn.rule(*view)
        except Fault as f:
            at = nodes[f.arg] if isinstance(f.arg, int) and f.arg < len(nodes) and nodes[f.arg] is not None else node
            self.fail(at, f"{name}: {f.message}")
        self.admit(node, f"{name}(...)", shape, work)
        if any(isinstance(v, A) for v in values) or self.ctx.abstract:
            return A(shape)
        try:
            out = np.asarray(fn.body(*values))
        except (ValueError, TypeError, ArithmeticError, np.linalg.LinAlgError) as exc:
            self.fail(node, f"{name} failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        if out.dtype.kind == "b":
            out = out.astype(self.ctx.dtype)
        return self.made(node, out, *values)

    def _bind(self, node: ast.Call, name: str, fn: Fn) -> tuple[list, list]:
        """Arguments in the order of ``fn.params`` (a ``*rest`` parameter takes the remaining
        positional ones): (defaults, argument nodes or None)."""
        rest = next((i for i, p in enumerate(fn.params) if p.startswith("*")), None)
        fixed = fn.params[:rest] if rest is not None else fn.params
        if rest is None and len(node.args) > len(fixed):
            self.fail(node, f"{name} takes at most {len(fixed)} argument(s): {', '.join(fixed)}")
        nodes: list = list(node.args) + [None] * max(0, len(fixed) - len(node.args))
        for kw in node.keywords:
            if kw.arg not in fixed or kw.arg is None:
                self.fail(kw.value, f"{name} has no argument `{kw.arg}`; it takes {', '.join(fn.params)}")
            i = fixed.index(kw.arg)
            if nodes[i] is not None:
                self.fail(kw.value, f"{name}: argument `{kw.arg}` given twice")
            nodes[i] = kw.value
        given = sum(n is not None for n in nodes)
        if given < fn.required or any(n is None for n in nodes[:min(fn.required, len(fixed))]):
            self.fail(node, f"{name} needs {fn.required} argument(s): {', '.join(fn.params)}")
        n_opt = len(fixed) - len(fn.defaults)
        defaults = [fn.defaults[i - n_opt] if i >= n_opt and i < len(fixed) else None for i in range(len(nodes))]
        return defaults, nodes
