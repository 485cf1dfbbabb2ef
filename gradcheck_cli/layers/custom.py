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

import dataclasses
import importlib
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import UserCodeError
from ..registry import Layer, Option, form, register

_MODULES: dict[tuple[str, float], Any] = {}    # (path, mtime) -> loaded module
_OBJECTS: dict[str, type] = {}                 # "<module.Class>" -> a class handed to the Python API
_SHAPE_PROBE_SEED = 20240611                   # fixed draws for discovering shapes; not the case's


@dataclasses.dataclass(frozen=True)
class Impl:
    """``impl`` as written, with the case's folder (relative files are found from there)."""

    text: str
    base: Path

    def parse(self) -> tuple[str, str, bool]:
        """(file or module, class name, is_file); ValueError if ``text`` has neither form."""
        where, sep, name = self.text.rpartition(":")
        if not sep or not where or not name.isidentifier():
            raise ValueError(f"impl {self.text!r} is not FILE.py:Class or package.module:Class")
        is_file = where.endswith(".py") or "/" in where or os.sep in where
        if not is_file and not all(part.isidentifier() for part in where.split(".")):
            raise ValueError(f"impl {self.text!r}: {where!r} is neither a .py file nor a module name")
        return where, name, is_file


def object_ref(cls: type) -> str:
    """The ``impl`` text for a class given as an object through the Python API.

    Only classes passed to :func:`gradcheck_cli.check_case` in this process are ever found this
    way; a YAML file cannot name code by it that was not already given as an object.
    """
    key = f"<{cls.__module__}.{cls.__qualname__}>"
    _OBJECTS[key] = cls
    return key


MAX_FRAMES = 8     # user frames shown in an error: the first few and the innermost


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, cut to ``limit`` characters."""
    text = str(exc).strip().split("\n", 1)[0]
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _shorten(frames: list[str]) -> list[str]:
    """Frames as Python prints them for deep recursion: a run of identical lines is shown once
    with its count, and at most MAX_FRAMES lines are kept (the outermost 3, the innermost rest)."""
    out: list[str] = []
    k = 0
    while k < len(frames):
        run = 1
        while k + run < len(frames) and frames[k + run] == frames[k]:
            run += 1
        out.append(frames[k])
        if run > 1:
            out.append(f"(the line above repeated {run - 1} more times)")
        k += run
    if len(out) > MAX_FRAMES:
        out = out[:3] + [f"... {len(out) - MAX_FRAMES + 1} more frames"] + out[-(MAX_FRAMES - 4):]
    return out


def _impl(value: str, base: Path) -> Impl:
    return Impl(value, Path(base).resolve())


def _shown(path: str | Path) -> str:
    """A path as short as it can be: relative to the working folder when inside it."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


@register("custom")
class Custom(Layer):
    summary = "your own layer: impl FILE.py:Class (or pkg.mod:Class), options passed to its constructor"
    options = (
        Option("impl", "str", help="FILE.py:Class (relative to the case file) or package.module:Class",
               resolve=_impl),
        Option("options", "mapping", default={}, help="keyword arguments of the class's constructor"),
    )
    na = {"kron": "a custom layer has one form, its own backward",
          "correlation": "a custom layer has one form, its own backward",
          "spray": "a custom layer has one form, its own backward"}
    example = {"impl": "gradcheck_cli.layers.custom_example:LeakyReLU", "options": {"slope": 0.2}}

    where = ""   # "case.yaml: layers[2]", set by network.make_layer; names this layer in errors

    def __init__(self, impl: Impl | str = "", options: Mapping[str, Any] | None = None, **_: Any) -> None:
        self.impl = impl if isinstance(impl, Impl) else Impl(str(impl), Path.cwd())
        self.user_options = dict(options or {})
        self._user: Any = None
        self._file = ""                 # the user's source file, for messages
        self._sources: set[str] = set()  # files of the user's code: their frames are shown
        self._names: tuple[str, ...] | None = None
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
            cls = self._load_class()
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

    def _load_class(self) -> type:
        if self.impl.text in _OBJECTS:
            cls = _OBJECTS[self.impl.text]
            code = getattr(getattr(cls, "forward", None), "__code__", None)
            self._file = code.co_filename if code else ""
            return cls
        try:
            where, name, is_file = self.impl.parse()
        except ValueError as exc:
            self._fail(str(exc))
        if not is_file and (self.impl.base / where).is_file():
            is_file = True      # `layer.txt:L`: a file that exists, not a module name
        if is_file:
            path = (self.impl.base / where).resolve()
            self._file = str(path)
            if path.exists() and not path.is_file():
                self._fail(f"impl {_shown(path)} is not a regular file")
            if not path.is_file():
                self._fail(f"impl file not found: {_shown(path)}")
            if path.suffix != ".py":
                self._fail(f"impl file {_shown(path)} is not a Python file (.py); name the .py file "
                           "that defines the class")
            module = self._load_file(path)
        else:
            module = self._import(where)
        cls = getattr(module, name, None)
        if cls is None:
            found = sorted(k for k, v in vars(module).items() if isinstance(v, type)
                           and v.__module__ == module.__name__)
            self._fail(f"no class `{name}` in {_shown(self._file) or where}"
                       + (f"; it defines: {', '.join(found)}" if found else ""))
        if not isinstance(cls, type):
            self._fail(f"`{name}` in {_shown(self._file) or where} is not a class")
        return cls

    def _load_file(self, path: Path) -> Any:
        key = (str(path), path.stat().st_mtime)
        if key not in _MODULES:
            mod_name = "gradcheck_user_" + re.sub(r"\W", "_", str(path))
            spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module          # dataclasses and pickling look modules up here
            try:
                self._call("import", lambda: spec.loader.exec_module(module))
            except UserCodeError:
                sys.modules.pop(mod_name, None)
                raise
            _MODULES[key] = module
        return _MODULES[key]

    def _import(self, name: str) -> Any:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            self._fail(f"cannot find module `{name}` (install it, or put its folder on PYTHONPATH; "
                       "or name a file: path/to/file.py:Class)")
        self._file = spec.origin or ""
        return self._call("import", lambda: importlib.import_module(name))

    # -- error reporting -----------------------------------------------------------------------
    def _fail(self, msg: str) -> None:
        raise UserCodeError(f"{self.where or 'custom layer'} (custom {self.impl.text}): {msg}")

    def _call(self, what: str, fn: Callable[[], Any], hint: str = "") -> Any:
        """Run user code; an exception becomes a UserCodeError showing only the user's frames."""
        try:
            return fn()
        except UserCodeError:
            raise
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of user code is reported
            label = {"__init__": "the constructor", "import": "loading the file"}.get(what, what)
            msg = f"{label} raised {type(exc).__name__}: {_first_line(exc)}"
            if hint:
                msg += f" ({hint})"
            frames = _shorten(self._user_frames(exc))
            raise UserCodeError(f"{self.where or 'custom layer'} (custom {self.impl.text}): {msg}"
                                + "".join(f"\n  {f}" for f in frames)) from None

    def _user_frames(self, exc: BaseException) -> list[str]:
        """'file:line in func: code' for the frames of the user's code only: the impl file and
        the files that define the class's methods (a base class may live elsewhere)."""
        norm = lambda f: os.path.normcase(os.path.abspath(f))  # noqa: E731
        mine = {norm(f) for f in self._sources | {self._file} if f}
        out = []
        for fr in traceback.extract_tb(exc.__traceback__):
            if norm(fr.filename) in mine:
                out.append(f"{_shown(fr.filename)}:{fr.lineno} in {fr.name}: {(fr.line or '').strip()}")
        if not out and isinstance(exc, SyntaxError) and exc.filename:
            out.append(f"{_shown(exc.filename)}:{exc.lineno}: {(exc.text or '').strip()}")
        return out

    def _array(self, what: str, a: Any, shape: tuple[int, ...] | None, dtype: Any = None,
               finite: bool = True) -> np.ndarray:
        """Check one array the user returned: an ndarray of real floats at least as precise as
        ``dtype`` (the dtype the user's code was given), of ``shape``, finite."""
        if not isinstance(a, np.ndarray):
            self._fail(f"{what} is {type(a).__name__}, expected a numpy array")
        if a.dtype.kind != "f":
            self._fail(f"{what} has dtype {a.dtype}, expected floating point"
                       + (f" ({np.dtype(dtype)})" if dtype is not None else ""))
        if dtype is not None and a.dtype.itemsize < np.dtype(dtype).itemsize:
            self._fail(f"{what} has dtype {a.dtype}, less precise than the case's {dtype}")
        if shape is not None and tuple(a.shape) != tuple(shape):
            self._fail(f"{what} has shape {list(a.shape)}, expected {list(shape)}")
        if finite and not np.all(np.isfinite(a)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
            self._fail(f"{what} holds NaN or Inf (first at index {list(bad)})")
        return a

    # -- the Layer protocol ----------------------------------------------------------------------
    def params(self) -> tuple[str, ...]:
        if self._names is None:
            raise RuntimeError("custom layer: params() before init_params()")  # pragma: no cover
        return self._names

    def init_params(self, in_shape, rng):
        user = self.user
        p = self._call("init_params", lambda: user.init_params(tuple(in_shape), rng))
        if p is None:
            p = {}
        if not isinstance(p, Mapping):
            self._fail(f"init_params returned {type(p).__name__}, expected a dict name -> array")
        out = {}
        for k, v in p.items():
            if not isinstance(k, str) or not k.isidentifier() or k == "x":
                self._fail(f"init_params: parameter name {k!r} must be an identifier other than 'x'")
            out[k] = self._array(f"init_params()[{k!r}]", v, None).astype(np.float64)
        self._names = tuple(out)
        return out

    def param_shapes(self, in_shape):
        return self._shapes(tuple(in_shape))[1]

    def output_shape(self, in_shape):
        return self._shapes(tuple(in_shape))[0]

    def _shapes(self, in_shape: tuple[int, ...]):
        """Output and parameter shapes, found by running the user's code on fixed draws (twice:
        what the check needs to be reproducible -- same seed, same values -- is checked here)."""
        if in_shape not in self._probe:
            p = self.init_params(in_shape, np.random.default_rng(_SHAPE_PROBE_SEED))
            p2 = self.init_params(in_shape, np.random.default_rng(_SHAPE_PROBE_SEED))
            if any(not np.array_equal(p[k], p2.get(k)) for k in p):
                self._fail("init_params gave different values for the same rng seed; draw from the "
                           "`rng` argument (not np.random) so that the case's seed reproduces them")
            # probe inputs are not the case's: a layer may give NaN on them (log of a negative)
            x = np.random.default_rng(_SHAPE_PROBE_SEED).standard_normal(in_shape)
            y = self._forward(x, p, finite=False)
            if not np.array_equal(y, self._forward(x, p, finite=False), equal_nan=True):
                self._fail("forward gave different outputs for the same x and params; the check "
                           "needs a deterministic forward (fix any random draw, e.g. a dropout mask)")
            if self.per_sample:
                self._check_per_sample(x, y, p)
            self._probe[in_shape] = (tuple(y.shape), {k: tuple(v.shape) for k, v in p.items()})
        return self._probe[in_shape]

    def _check_per_sample(self, x: np.ndarray, y: np.ndarray, p: dict[str, np.ndarray]) -> None:
        """``per_sample = True`` lets the check fold copies into the batch axis; a false claim would
        give wrong numerical gradients, so test it: a doubled batch with sample 0 of the second
        half changed must give [y, y with only sample 0 changed]."""
        n = x.shape[0]
        xb = np.concatenate([x, x])
        xb[n] += 0.5
        yb = self._forward(xb, p, finite=False)
        tol = 1e-10 * max(1.0, float(np.nanmax(np.abs(y), initial=0.0)))
        if (yb.shape != (2 * n, *y.shape[1:])
                or not np.allclose(yb[:n], y, rtol=0, atol=tol, equal_nan=True)
                or not np.allclose(yb[n + 1:], y[1:], rtol=0, atol=tol, equal_nan=True)):
            self._fail("per_sample = True, but the output is not one row per sample that depends "
                       "only on that sample's input (checked by changing one sample of a doubled "
                       "batch); remove per_sample and the check runs its copies one by one")

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
