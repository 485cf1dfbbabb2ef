"""Running the user's code: loading what an ``impl`` names, calling it, and reporting its faults.

Shared by every layer (and loss) that runs code the case names: ``custom``, ``torch``, ``jax``,
``functions`` and the ``function`` loss. Everything the user's code does wrong is a
:class:`UserCodeError` naming the case file, the place in it (``layers[2]``, ``loss``) and the
user's file, with the traceback cut down to the user's own frames.

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

_MODULES: dict[tuple[str, float], Any] = {}    # (path, mtime) -> loaded module
_OBJECTS: dict[str, Any] = {}                  # "<module.Name>" -> an object handed to the Python API
SHAPE_PROBE_SEED = 20240611                    # fixed draws for discovering shapes; not the case's


@dataclasses.dataclass(frozen=True)
class Impl:
    """``impl`` as written, with the case's folder (relative files are found from there)."""

    text: str
    base: Path

    def parse(self, noun: str = "Class") -> tuple[str, str, bool]:
        """(file or module, object name, is_file); ValueError if ``text`` has neither form."""
        where, sep, name = self.text.rpartition(":")
        if not sep or not where or not name.isidentifier():
            raise ValueError(f"impl {self.text!r} is not FILE.py:{noun} or package.module:{noun}")
        is_file = where.endswith(".py") or "/" in where or os.sep in where
        if not is_file and not all(part.isidentifier() for part in where.split(".")):
            raise ValueError(f"impl {self.text!r}: {where!r} is neither a .py file nor a module name")
        return where, name, is_file


def object_ref(obj: Any) -> str:
    """The ``impl`` text for an object (a class, a function, a torch module) given through the
    Python API. Only objects passed in this process are ever found this way; a YAML file cannot
    name code by it that was not already given as an object."""
    name = getattr(obj, "__qualname__", type(obj).__qualname__)
    key = f"<{getattr(obj, '__module__', '')}.{name}#{id(obj)}>" if not isinstance(obj, type) \
        else f"<{obj.__module__}.{obj.__qualname__}>"
    _OBJECTS[key] = obj
    return key


def resolve_impl(value: str, base: Path) -> Impl:
    """``Option.resolve`` for an ``impl`` field: keep the case's folder with the text."""
    return Impl(value, Path(base).resolve())


def as_impl(impl: Impl | str) -> Impl:
    return impl if isinstance(impl, Impl) else Impl(str(impl), Path.cwd())


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


def shown(path: str | Path) -> str:
    """A path as short as it can be: relative to the working folder when inside it."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def fan_in_normal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Standard normal / sqrt(fan-in), as the built-in layers draw (1 for vectors)."""
    fan_in = max(1, int(np.prod(shape[1:])) if len(shape) > 1 else 1)
    return rng.standard_normal(shape) / np.sqrt(fan_in)


class UserParams:
    """Mixin for a user object whose ``init_params(input_shape, rng)`` returns name -> array:
    the parameter names are what it returned (``self._names``, None until it has run)."""

    _names: tuple[str, ...] | None = None

    def params(self) -> tuple[str, ...]:
        if self._names is None:
            raise RuntimeError(f"{self.type_name} layer: params() before init_params()")  # pragma: no cover
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
            out[k] = self._array(f"init_params()[{k!r}]", self._numpy(v), None).astype(np.float64)
        self._names = tuple(out)
        return out

    def _numpy(self, a: Any) -> Any:
        """The user's array as numpy (a framework's arrays convert here); as is by default."""
        return a


class UserCode:
    """Mixin: ``self.impl`` names the user's code; ``self.where`` ("case.yaml: layers[2]") and
    ``type_name`` name it in errors. Subclasses call ``_load``, ``_call``, ``_fail``, ``_array``."""

    type_name = ""
    where = ""    # set by network.make_layer (or the loss's parser)
    impl: Impl

    def _code_init(self, impl: Impl | str) -> None:
        self.impl = as_impl(impl)
        self._file = ""                   # the user's source file, for messages
        self._sources: set[str] = set()   # files of the user's code: their frames are shown

    @property
    def label(self) -> str:
        return f"{self.where or self.type_name + ' layer'} ({self.type_name} {self.impl.text})"

    # -- loading -------------------------------------------------------------------------------
    def _load(self, impl: Impl | None = None, kind: str = "class") -> Any:
        """The class (``kind="class"``) or function (``"function"``) ``impl`` names."""
        impl = impl or self.impl
        if impl.text in _OBJECTS:
            obj = _OBJECTS[impl.text]
            fn = getattr(obj, "forward", obj)
            code = getattr(fn, "__code__", None)
            self._file = code.co_filename if code else ""
            return obj
        try:
            where, name, is_file = impl.parse("Class" if kind == "class" else "function")
        except ValueError as exc:
            self._fail(str(exc))
        if not is_file and (impl.base / where).is_file():
            is_file = True      # `layer.txt:L`: a file that exists, not a module name
        if is_file:
            path = (impl.base / where).resolve()
            self._file = str(path)
            if path.exists() and not path.is_file():
                self._fail(f"impl {shown(path)} is not a regular file")
            if not path.is_file():
                self._fail(f"impl file not found: {shown(path)}")
            if path.suffix != ".py":
                self._fail(f"impl file {shown(path)} is not a Python file (.py); name the .py file "
                           "that defines the {kind}".replace("{kind}", kind))
            module = self._load_file(path)
        else:
            module = self._import(where)
        obj = getattr(module, name, None)
        ok = isinstance(obj, type) if kind == "class" else callable(obj) and not isinstance(obj, type)
        if obj is None or not ok:
            found = sorted(k for k, v in vars(module).items()
                           if (isinstance(v, type) if kind == "class" else callable(v) and not isinstance(v, type))
                           and getattr(v, "__module__", None) == module.__name__)
            what = f"no {kind} `{name}`" if obj is None else f"`{name}` is not a {kind}"
            self._fail(f"{what} in {shown(self._file) or where}"
                       + (f"; it defines: {', '.join(found)}" if found and obj is None else ""))
        code = getattr(obj, "__code__", None)
        if code is not None:
            self._sources.add(code.co_filename)
        return obj

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
        raise UserCodeError(f"{self.label}: {msg}")

    def _call(self, what: str, fn: Callable[[], Any], hint: str = "") -> Any:
        """Run user code; an exception becomes a UserCodeError showing only the user's frames."""
        try:
            return fn()
        except UserCodeError:
            raise
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of user code is reported
            label = {"__init__": "the constructor", "import": "loading the file"}.get(what, what)
            msg = f"{label} raised {type(exc).__name__}: {_first_line(exc)}".rstrip()
            if hint:
                msg += f" ({hint})"
            frames = _shorten(self._user_frames(exc))
            raise UserCodeError(f"{self.label}: {msg}" + "".join(f"\n  {f}" for f in frames)) from None

    def _user_frames(self, exc: BaseException) -> list[str]:
        """'file:line in func: code' for the frames of the user's code only: the impl file and
        the files that define the class's methods (a base class may live elsewhere)."""
        norm = lambda f: os.path.normcase(os.path.abspath(f))  # noqa: E731
        mine = {norm(f) for f in self._sources | {self._file} if f}
        out = []
        for fr in traceback.extract_tb(exc.__traceback__):
            if norm(fr.filename) in mine:
                out.append(f"{shown(fr.filename)}:{fr.lineno} in {fr.name}: {(fr.line or '').strip()}")
        if not out and isinstance(exc, SyntaxError) and exc.filename:
            out.append(f"{shown(exc.filename)}:{exc.lineno}: {(exc.text or '').strip()}")
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


class Probed:
    """Mixin for a layer whose shapes are found by running it: ``init_params`` on fixed draws
    and ``_forward(x, params, finite)``. Checks reproducibility and the ``per_sample`` promise."""

    _probe: dict

    def _shapes(self, in_shape: tuple[int, ...]):
        """Output and parameter shapes, found by running the user's code on fixed draws (twice:
        what the check needs to be reproducible -- same seed, same values -- is checked here)."""
        in_shape = tuple(in_shape)
        if in_shape not in self._probe:
            p = self.init_params(in_shape, np.random.default_rng(SHAPE_PROBE_SEED))
            p2 = self.init_params(in_shape, np.random.default_rng(SHAPE_PROBE_SEED))
            if any(not np.array_equal(p[k], p2.get(k)) for k in p):
                self._fail("init_params gave different values for the same rng seed; draw from the "
                           "`rng` argument (not np.random) so that the case's seed reproduces them")
            # probe inputs are not the case's: a layer may give NaN on them (log of a negative)
            x = np.random.default_rng(SHAPE_PROBE_SEED).standard_normal(in_shape)
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

    def param_shapes(self, in_shape):
        return self._shapes(tuple(in_shape))[1]

    def output_shape(self, in_shape):
        return self._shapes(tuple(in_shape))[0]
