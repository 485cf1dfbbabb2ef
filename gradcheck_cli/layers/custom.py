"""The user's own layer: ``type: custom`` with ``impl: FILE.py:Class`` or ``impl: pkg.mod:Class``.

The class the user writes (plain numpy, no base class needed)::

    class LeakyReLU:
        per_sample = True                 # optional: sample n of y depends only on sample n of x
        def __init__(self, slope=0.01): ...              # the case's `options`, as keywords
        def init_params(self, input_shape, rng) -> dict  # name -> ndarray (may be {})
        def forward(self, x, params) -> y
        def backward(self, dy, x, params) -> dict        # "x" and every parameter name
        def structure(self, input_shape, name) -> S      # optional: which outputs each entry reaches
        def kink_distance(self, x, params) -> d          # optional: distance of each x entry to a kink

The tool checks ``x`` and every parameter like a built-in layer, with one form, ``custom``.
Everything the user's code does wrong -- a missing file or class, a constructor that rejects
the options, a method that raises, a result of the wrong kind, keys, shape or dtype, NaN/Inf --
is a :class:`UserCodeError` naming the case file, the layer (``layers[2]``) and the user's file,
with the traceback cut down to the user's own frames.

Security: the file (or module) named in ``impl`` is executed; nothing else in the case is.
A file is loaded by its path alone: its folder is not added to ``sys.path``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import numpy as np

from ..registry import Layer, Option, form, register
from .usercode import Impl, Probed, UserCode, UserParams, object_ref, resolve_impl

__all__ = ["Custom", "Impl", "object_ref"]   # object_ref: for api.py


@register("custom")
class Custom(UserParams, UserCode, Probed, Layer):
    summary = "your own layer: impl FILE.py:Class (or pkg.mod:Class), options passed to its constructor"
    options = (
        Option("impl", "str", help="FILE.py:Class (relative to the case file) or package.module:Class",
               resolve=resolve_impl),
        Option("options", "mapping", default={}, help="keyword arguments of the class's constructor"),
    )
    na = {"kron": "a custom layer has one form, its own backward",
          "correlation": "a custom layer has one form, its own backward",
          "spray": "a custom layer has one form, its own backward"}
    example = {"impl": "gradcheck_cli.layers.custom_example:LeakyReLU", "options": {"slope": 0.2}}

    def __init__(self, impl: Impl | str = "", options: Mapping[str, Any] | None = None, **_: Any) -> None:
        self._code_init(impl)
        self.user_options = dict(options or {})
        self._user: Any = None
        self._probe: dict[tuple[int, ...], tuple[tuple[int, ...], dict[str, tuple[int, ...]]]] = {}

    @classmethod
    def starter_case(cls) -> str:
        """The starter case runs a shipped example layer; the comments say how to use your own."""
        return super().starter_case().replace("# run: gradcheck run this.yaml\n", (
            "# run: gradcheck run this.yaml\n"
            "# impl: your FILE.py:Class (relative to this file) or package.module:Class. The class:\n"
            "#   __init__(**options); init_params(input_shape, rng) -> {name: array};\n"
            "#   forward(x, params) -> y; backward(dy, x, params) -> {'x': dL/dx, name: dL/dname}\n"
            "#   optional: per_sample = True, structure(input_shape, name), kink_distance(x, params)\n"
            "# The example below is gradcheck_cli/layers/custom_example.py: copy it to start yours.\n"))

    # -- the user's object, loaded on first use (after make_layer has set `where`) -----------
    @property
    def user(self) -> Any:
        if self._user is None:
            cls = self._load()
            self._sources = {self._file} | {
                m.__code__.co_filename for k in ("__init__", "init_params", "forward", "backward",
                                                 "structure", "kink_distance")
                if hasattr(m := getattr(cls, k, None), "__code__")}
            user = self._call("__init__", lambda: cls(**self.user_options),
                              hint=f"options given: {self.user_options or 'none'}")
            for method in ("init_params", "forward", "backward"):
                if not callable(getattr(user, method, None)):
                    self._fail(f"class {cls.__name__} has no method `{method}`; a custom layer needs "
                               "init_params(input_shape, rng), forward(x, params), backward(dy, x, params)")
            self._user = user
        return self._user

    @property
    def per_sample(self) -> bool:     # type: ignore[override]
        """The user's ``per_sample`` (default False: the numerical check then runs copies one by one)."""
        return bool(getattr(self.user, "per_sample", False))

    # -- the Layer protocol ----------------------------------------------------------------------
    def forward(self, x, params):
        return self._forward(x, params)

    def _forward(self, x, params, finite: bool = True) -> np.ndarray:
        user = self.user
        x_, p_ = x.copy(), {k: v.copy() for k, v in params.items()}   # the user may write in place
        y = self._call("forward", lambda: user.forward(x_, p_))
        return self._array("forward() output", y, None, x.dtype, finite)

    # -- optional hooks, passed through when the user's class defines them ---------------------
    def _hook(self, name: str) -> Callable | None:
        fn = getattr(self.user, name, None)
        return fn if callable(fn) else None

    def structure(self, in_shape, name):
        """The user's ``structure(input_shape, name)``: None, or a boolean (outputs of one sample x
        entries of one sample of x | of the parameter) numpy array or scipy.sparse matrix. Used
        only with ``per_sample = True``; the numerical check's probes catch one that is too small."""
        fn = self._hook("structure")
        if fn is None:
            return None
        in_shape = tuple(in_shape)
        S = self._call("structure", lambda: fn(in_shape, name))
        if S is None:
            return None
        out_shape, shapes = self._shapes(in_shape)
        entries = int(np.prod(in_shape[1:])) if name == "x" else int(np.prod(shapes[name]))
        want = (int(np.prod(out_shape[1:])), entries)
        what = f"structure({list(in_shape)}, {name!r})"
        from scipy import sparse

        if sparse.issparse(S):
            S = sparse.csr_matrix(S)
        elif isinstance(S, np.ndarray):
            if S.dtype.kind not in "bui":
                self._fail(f"{what} has dtype {S.dtype}, expected bool (true where an entry reaches an output)")
        else:
            self._fail(f"{what} returned {type(S).__name__}, expected None, a boolean numpy array "
                       "or a scipy.sparse matrix")
        if tuple(S.shape) != want:
            self._fail(f"{what} has shape {list(S.shape)}, expected {list(want)} "
                       "(outputs of one sample x entries" + (" of one sample)" if name == "x" else ")"))
        return sparse.csr_matrix(S != 0, dtype=bool) if sparse.issparse(S) else sparse.csr_matrix(S != 0)

    def kink_distance(self, x, params):
        """The user's ``kink_distance(x, params)``: None, or for each entry of x the distance it
        must move before the output stops being differentiable in it (real numbers, x's shape)."""
        fn = self._hook("kink_distance")
        if fn is None:
            return None
        x_, p_ = np.array(x, copy=True), {k: np.array(v, copy=True) for k, v in params.items()}
        d = self._call("kink_distance", lambda: fn(x_, p_))
        if d is None:
            return None
        what = "kink_distance() output"
        if not isinstance(d, np.ndarray):
            self._fail(f"{what} is {type(d).__name__}, expected a numpy array")
        if d.dtype.kind not in "uif":
            self._fail(f"{what} has dtype {d.dtype}, expected real numbers")
        if tuple(d.shape) != tuple(x.shape):
            self._fail(f"{what} has shape {list(d.shape)}, expected x's {list(x.shape)}")
        if np.any(np.isnan(d)):
            bad = tuple(int(i) for i in np.argwhere(np.isnan(d))[0])
            self._fail(f"{what} holds NaN (first at index {list(bad)}); use inf for 'no kink'")
        return np.abs(d.astype(np.float64))

    @form("custom", seed="the user's own backward")
    def custom(self, dy, x, params):
        user = self.user
        args = (dy.copy(), x.copy(), {k: v.copy() for k, v in params.items()})
        g = self._call("backward", lambda: user.backward(*args))
        if not isinstance(g, Mapping):
            self._fail(f"backward returned {type(g).__name__}, expected a dict with 'x'"
                       + "".join(f", {k!r}" for k in params))
        wanted = ("x", *params)
        missing = [k for k in wanted if k not in g]
        extra = [k for k in g if k not in wanted]
        if missing or extra:
            self._fail("backward returned keys " + (", ".join(map(repr, g)) or "none")
                       + f"; expected {', '.join(map(repr, wanted))}"
                       + (f" (missing {', '.join(map(repr, missing))})" if missing else "")
                       + (f" (unknown {', '.join(map(repr, extra))})" if extra else ""))
        shapes = {"x": x.shape, **{k: v.shape for k, v in params.items()}}
        return {k: self._array(f"backward()[{k!r}]", g[k], shapes[k], dy.dtype) for k in wanted}
