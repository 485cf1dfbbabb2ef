"""A layer typed as equations: ``type: expression``, every derivation of its backward a form.

    - type: expression
      axes: [N, D]                    # the input's axes, named; sizes bound from its shape
      params: {W: [D, 3], b: [3]}     # shapes from axis names and integers; drawn from the seed
      forward: x @ W + b
      backward:                       # one derivation per form; each gives every gradient
        correlation: {x: dy @ W.T, W: x.T @ dy, b: sum(dy, 0)}
        kron: {x: "mat(kron(W, I(N)) @ vec(dy), N, D)", ...}
      kinks: x                        # optional: zero where the forward is not differentiable

The expressions are parsed and checked by :mod:`gradcheck_cli.exprlang` (never ``eval``); when
the case loads, every one is run on shapes alone, so a wrong shape is bad input before anything
is computed. Each fault names the file, the layer, the field (``backward.kron.W``) and the
column, with a caret under it.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import GradcheckError
from ..exprlang import FUNCTIONS, A, Expr, ExprError, caret, fmt
from ..registry import FormInfo, Layer, Option, register
from .usercode import SHAPE_PROBE_SEED, fan_in_normal

RESERVED = ("x", "y", "dy", "loss")
MAX_FORMS = 16
DEFAULT_BYTES = 2**40


def _fails(where: str, field: str, message: str, text: str | None = None, col: int = 0) -> GradcheckError:
    """One line naming the place, then (for a fault inside an expression) the text and a caret."""
    at = f", column {col + 1}" if text is not None else ""
    return GradcheckError(f"{where}.{field}{at}: {message}" + (f"\n{caret(text, col)}" if text is not None else ""))


@register("expression")
class Expression(Layer):
    summary = "equations as written: forward and one backward derivation per form (docs/expression.md)"
    options = (
        Option("axes", "any", help="names of the input's axes, e.g. [N, D]"),
        Option("params", "mapping", default={}, help="name: shape from axis names and integers, e.g. {W: [D, 3]}"),
        Option("define", "mapping", default={},
               help="name: expression, in order; usable in every later expression (e.g. B: sign(W))"),
        Option("forward", "any", help="y as an expression of x, the parameters and the axis sizes"),
        Option("backward", "mapping", help="form name: {x: ..., <param>: ...}, each dL/d<tensor> given dy"),
        Option("kinks", "any", default=None, help="an expression of x, zero where the forward has a kink"),
        Option("per_sample", "bool", default=False,
               help="sample n of y depends only on sample n of x (faster numerical check)"),
        Option("regularized", "any", default=(),
               help="parameters the case's l2 regularization covers; gradcheck adds l2 * p to their gradients"),
    )
    na = {f: "an expression layer's forms are the keys of its `backward`" for f in ("kron", "correlation", "spray")}
    example_input = (4, 6)

    def __init__(self, axes: Any = (), params: Mapping | None = None, forward: Any = "",
                 backward: Mapping | None = None, kinks: Any = None, per_sample: bool = False,
                 define: Mapping | None = None, regularized: Any = (), **_: Any) -> None:
        self.axes_spec, self.param_spec = axes, dict(params or {})
        self.define_spec = _rejoin(define or {})
        self.regularized = tuple(regularized) if isinstance(regularized, (list, tuple)) else regularized
        self.forward_text, self.backward_spec, self.kinks_text = forward, dict(backward or {}), kinks
        self.per_sample = bool(per_sample)
        self.where = "expression layer"
        self.memory_limit: int | None = None        # set by the check from --max-memory
        self._exprs: dict[str, Expr] | None = None
        self._limit: int | None = None
        self._checked: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._scratch: dict[tuple[int, ...], int] = {}     # bytes of a forward's intermediates
        self._bytes = 0
        self.forms = {name: FormInfo(str(name), "custom", f"backward.{name} as written")
                      for name in self.backward_spec}

    @classmethod
    def form_names(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        back = options.get("backward")
        return tuple(str(k) for k in back) if isinstance(back, Mapping) else ()

    # -- the spec, checked -------------------------------------------------------------------
    def _fail(self, field: str, message: str, text: str | None = None, col: int = 0) -> None:
        raise _fails(self.where, field, message, text, col)

    def _names(self, field: str, value: Any, taken: tuple[str, ...], functions: bool = True) -> None:
        if not isinstance(value, str) or not value.isidentifier() or not value.isascii() or "__" in value:
            hint = " (YAML reads yes/no/on/off as booleans: quote the name)" if isinstance(value, bool) else ""
            self._fail(field, f"{value!r} is not a name (letters, digits, _; no __){hint}")
        if value in taken or (functions and value in FUNCTIONS):
            self._fail(field, f"the name {value!r} is taken (by x, y, dy, a function or another name)")

    def _axes(self) -> tuple[str, ...]:
        ax = self.axes_spec
        if not isinstance(ax, (list, tuple)) or not ax:
            self._fail("axes", "expected a list of axis names like [N, D]")
        for i, a in enumerate(ax):
            self._names(f"axes[{i}]", a, (*RESERVED, *ax[:i]))
        return tuple(ax)

    def _param_dims(self) -> dict[str, tuple[Any, ...]]:
        axes, out = self._axes(), {}
        for name, dims in self.param_spec.items():
            self._names(f"params.{name}", name, (*RESERVED, *axes, *out))
            if not isinstance(dims, (list, tuple)) or not dims or not all(
                    (isinstance(d, int) and not isinstance(d, bool) and d >= 1) or d in axes for d in dims):
                self._fail(f"params.{name}", f"expected a shape of axis names ({', '.join(axes)}) and "
                                             f"integers >= 1, e.g. [{axes[-1]}, 3]; got {dims!r}")
            out[name] = tuple(dims)
        if not isinstance(self.regularized, tuple) or any(r not in out for r in self.regularized):
            self._fail("regularized", f"expected a list of this layer's parameters ({', '.join(out) or 'none'}), "
                                      f"got {self.regularized!r}")
        return out

    def exprs(self) -> dict[str, Expr]:
        """Every expression, parsed once, by field: forward, backward.<form>.<tensor>, kinks."""
        if self._exprs is None:
            wanted = ("x", *self._param_dims())
            texts = {}
            for i, name in enumerate(self.define_spec):
                self._names(f"define.{name}", name, (*RESERVED, *self._axes(), *wanted,
                                                     *list(self.define_spec)[:i]))
                texts[f"define.{name}"] = self.define_spec[name]
            texts["forward"] = self.forward_text
            if not self.backward_spec:
                self._fail("backward", "needs at least one derivation: {form name: {x: ..., param: ...}}")
            if len(self.backward_spec) > MAX_FORMS:
                self._fail("backward", f"{len(self.backward_spec)} derivations; at most {MAX_FORMS}")
            for form, grads in self.backward_spec.items():
                self._names(f"backward.{form}", form, ("loss",), functions=False)
                if not isinstance(grads, Mapping):
                    self._fail(f"backward.{form}", f"expected a mapping of {', '.join(wanted)} to expressions")
                grads = _rejoin(grads)
                for k in grads:
                    if k not in wanted:
                        self._fail(f"backward.{form}.{k}", f"not a tensor of this layer; it has {', '.join(wanted)}")
                for k in wanted:
                    if k not in grads:
                        self._fail(f"backward.{form}", f"gives no `{k}`; each derivation gives {', '.join(wanted)}")
                    texts[f"backward.{form}.{k}"] = grads[k]
            if self.kinks_text is not None:
                texts["kinks"] = self.kinks_text
            out = {}
            for field, text in texts.items():
                try:
                    out[field] = Expr(text)
                except ExprError as e:
                    shown = str(text) if isinstance(text, (str, int, float)) else None
                    if shown is not None and (len(shown) > 2000 or "\n" in shown):
                        shown = " ".join(shown[:2000].split())
                    self._fail(field, e.message, shown, e.col)
            self._exprs = out
        return self._exprs

    def _run(self, field: str, names: dict, dtype=None, raw: bool = False) -> Any:
        """Shape pass, then (with ``dtype``) the value pass, of one expression. The shape pass
        gives a shape, or with ``raw`` the abstract value itself (for a definition)."""
        if self._limit is None:
            self._limit = _default_limit()
        limit = self.memory_limit or self._limit
        source = "the memory limit (--max-memory)" if self.memory_limit else "the memory limit"
        e = self.exprs()[field]
        try:
            shapes = {k: A(v.shape) if isinstance(v, np.ndarray) else v for k, v in names.items()}
            out, self._bytes = e.costed(shapes, limit, source)
            if dtype is None:
                return out if raw else (out.shape if isinstance(out, A) else out)
            return e.value(names, dtype, limit, source)
        except ExprError as err:
            self._fail(field, err.message, e.text, err.col)

    # -- the Layer protocol ----------------------------------------------------------------------
    def _bind(self, in_shape: tuple[int, ...]) -> dict[str, int]:
        axes = self._axes()
        if len(axes) != len(in_shape):
            self._fail("axes", f"names {len(axes)} axes, the input has {len(in_shape)} (shape {list(in_shape)})")
        return dict(zip(axes, (int(s) for s in in_shape)))

    def params(self) -> tuple[str, ...]:
        return tuple(self.param_spec)

    def param_shapes(self, in_shape):
        sizes = self._bind(tuple(in_shape))
        return {k: tuple(sizes.get(d, d) for d in dims) for k, dims in self._param_dims().items()}

    def output_shape(self, in_shape):
        in_shape = tuple(int(s) for s in in_shape)
        if in_shape not in self._checked:
            self._checked[in_shape] = self._check_shapes(in_shape)
        return self._checked[in_shape]

    def _check_shapes(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Every expression on shapes alone: the forward's shape, each gradient's against its tensor's."""
        shapes = {"x": in_shape, **self.param_shapes(in_shape)}
        names = {**self._bind(in_shape), **{k: A(s) for k, s in shapes.items()}}
        exprs = self.exprs()
        scratch = 0
        for name in self.define_spec:
            names[name] = self._run(f"define.{name}", names, raw=True)
            scratch += self._bytes
        y = self._run("forward", names)
        self._scratch[in_shape] = scratch + self._bytes
        if not isinstance(y, tuple) or not y:
            what = "a number" if not isinstance(y, tuple) else "a 0-d array"
            self._fail("forward", f"gives {what}; a layer's output keeps at least the batch axis",
                       exprs["forward"].text, 0)
        back = {**names, "y": A(y), "dy": A(y)}
        for field in exprs:
            if field.startswith("backward."):
                tensor = field.rsplit(".", 1)[1]
                got = self._run(field, back)
                if got != shapes[tensor]:
                    shown = fmt(got) if isinstance(got, tuple) else f"the number {got}"
                    self._fail(field, f"gives shape {shown}, but {tensor} has shape {fmt(shapes[tensor])}",
                               exprs[field].text, 0)
        if "kinks" in exprs:
            k = self._run("kinks", names)
            k = k if isinstance(k, tuple) else ()
            try:
                fits = np.broadcast_shapes(k, in_shape) == in_shape
            except ValueError:
                fits = False
            if not fits:
                self._fail("kinks", f"gives shape {fmt(k)}, which does not broadcast to x's {fmt(in_shape)}",
                           exprs["kinks"].text, 0)
        return y

    def workspace(self, in_shape):
        """Bytes of every array the definitions and the forward make (the shape pass's count)."""
        self.output_shape(in_shape)
        return self._scratch[tuple(int(s) for s in in_shape)]

    def init_params(self, in_shape, rng):
        self._in_shape = tuple(in_shape)
        return {k: fan_in_normal(s, rng) for k, s in self.param_shapes(in_shape).items()}

    def anchor(self, params):
        """Test the ``per_sample`` promise once the parameter values are known: a doubled batch
        with one sample of its second half changed must give [y, y with only that sample changed]
        (a false promise would give wrong numerical gradients). Fixed probe draws, not the case's;
        a probe on which the forward fails (log of a negative) leaves the test to the real input."""
        shape = getattr(self, "_in_shape", None)
        if not self.per_sample or shape is None:
            return
        x = np.random.default_rng(SHAPE_PROBE_SEED).standard_normal(shape)
        try:
            y = self.forward(x, params)
            xb = np.concatenate([x, x])
            xb[len(x)] += 0.5
            yb = self.forward(xb, params)
        except GradcheckError:
            return
        tol = 1e-10 * max(1.0, float(np.max(np.abs(y), initial=0.0)))
        if yb.shape != (2 * len(y), *y.shape[1:]) or not np.allclose(yb[:len(y)], y, rtol=0, atol=tol) \
                or not np.allclose(yb[len(y) + 1:], y[1:], rtol=0, atol=tol):
            self._fail("per_sample", "is true, but the output is not one row per sample that depends only "
                                     "on that sample's input (checked by changing one sample of a doubled "
                                     "batch); remove it and the check runs its copies one by one")

    def _values(self, x: np.ndarray, params: dict[str, np.ndarray]) -> dict[str, Any]:
        names = {**self._bind(x.shape), "x": x, **params}
        for name in self.define_spec:
            names[name] = self._run(f"define.{name}", names, x.dtype)
        return names

    def forward(self, x, params):
        y = self._run("forward", self._values(x, params), x.dtype)
        return np.asarray(y, dtype=x.dtype)

    def backward(self, form_name, dy, x, params):
        names = self._values(x, params)
        names.update(y=self.forward(x, params), dy=dy)
        out = {}
        for t in ("x", *self.param_spec):
            field = f"backward.{form_name}.{t}"
            g = np.asarray(self._run(field, names, dy.dtype))
            want = x.shape if t == "x" else params[t].shape
            if g.shape != want:
                self._fail(field, f"gives shape {fmt(g.shape)}, but {t} has shape {fmt(want)}",
                           self.exprs()[field].text, 0)
            out[t] = g.astype(dy.dtype, copy=False)
        return out

    def kink_distance(self, x, params):
        if self.kinks_text is None:
            return None
        k = np.asarray(self._run("kinks", self._values(x, params), np.float64), dtype=np.float64)
        return np.abs(np.broadcast_to(k, x.shape)).copy()

    @classmethod
    def starter_case(cls) -> str:
        """The linear layer of docs/expression.md, with two derivations; it passes as printed."""
        from pathlib import Path

        return (Path(__file__).parent.parent / "data" / "expression-starter.yaml").read_text("utf-8")


def _balance(text: str) -> int:
    return sum(text.count(c) for c in "([{") - sum(text.count(c) for c in ")]}")


def _rejoin(grads: Mapping) -> dict:
    """Undo YAML's split of a flow mapping at the commas inside brackets: ``{b: sum(dy, 0)}``
    reads as ``{b: "sum(dy", "0)": None}``; the pieces are joined back while brackets are open."""
    out: dict = {}
    open_key = None
    for k, v in grads.items():
        if open_key is not None and v is None and isinstance(k, (str, int, float)):
            out[open_key] = f"{out[open_key]}, {k}"
        else:
            out[k] = v
            open_key = k
        if not (isinstance(out[open_key], str) and _balance(out[open_key]) > 0):
            open_key = None
    return out


def _default_limit() -> int:
    from ..cost import memory_limit

    try:
        return memory_limit(None) or DEFAULT_BYTES
    except GradcheckError:
        return DEFAULT_BYTES
