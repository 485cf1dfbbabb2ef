"""A PyTorch module as a layer: ``type: torch`` with ``impl: FILE.py:Class`` (a ``torch.nn.Module``).

    - type: torch
      impl: my_modules.py:LayerNorm     # or package.module:Class, e.g. torch.nn:Linear
      options: {features: 6}            # keyword arguments of the constructor
      per_sample: true                  # optional (or a `per_sample = True` class attribute)
      init: random                      # optional: redraw every parameter from the case's seed

Tensors: ``x`` and every entry of ``named_parameters()`` under its own name (``weight``,
``0.weight``). Values: what the constructor gives, constructed with torch's generator seeded by
a number drawn from the case's generator at this layer's turn (so the case's seed reproduces
them); ``init: random`` draws every parameter instead like a built-in layer (standard normal /
sqrt(fan-in)), since a constructor's weight = 1 or bias = 0 can hide a bug.

Analytic side: torch autograd through the module (a custom ``autograd.Function``'s ``backward``
is what gets checked), ``torch.autograd.grad`` of y with dL/dy as grad_outputs. Numerical side:
the module's forward in float64 under ``no_grad``. Every call runs with torch's generator
seeded the same, so a module that draws random numbers (dropout) draws the same ones each time.

torch is an optional dependency: without it such a case exits 2 naming the pip command.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..registry import Layer, Option, form, register
from .usercode import Impl, Probed, UserCode, fan_in_normal, resolve_impl

CALL_SEED = 0    # torch's generator is seeded with this before every call of the module
INSTALL = "pip install 'gradcheck-cli[torch]'"


def import_torch(fail) -> Any:
    """torch, or ``fail(message)`` naming the pip command when it is not installed."""
    try:
        import torch
    except ImportError:
        fail(f"needs PyTorch, which is not installed: {INSTALL}")
    return torch


@register("torch")
class TorchModule(UserCode, Probed, Layer):
    summary = "a torch.nn.Module: impl FILE.py:Class; its autograd (custom autograd.Functions) is checked"
    options = (
        Option("impl", "str", help="FILE.py:Class (relative to the case file) or package.module:Class, "
                                   "a torch.nn.Module", resolve=resolve_impl),
        Option("options", "mapping", default={}, help="keyword arguments of the module's constructor"),
        Option("per_sample", "bool", default=False,
               help="sample n of the output depends only on sample n of x (or a class attribute)"),
        Option("init", "choice", default="constructor", choices=("constructor", "random"),
               help="parameter values: the constructor's (seeded), or drawn from the case's seed"),
    )
    na = {f: "a torch layer has one form, torch autograd" for f in ("kron", "correlation", "spray")}
    example = {"impl": "torch.nn:Linear", "options": {"in_features": 6, "out_features": 3},
               "per_sample": True}

    def __init__(self, impl: Impl | str = "", options: Mapping[str, Any] | None = None,
                 per_sample: bool = False, init: str = "constructor", **_: Any) -> None:
        self._code_init(impl)
        self.user_options = dict(options or {})
        self.yaml_per_sample = bool(per_sample)
        self.init = init
        self._cls: Any = None
        self._modules: dict[str, Any] = {}     # torch dtype name -> the module in that dtype
        self._names: tuple[str, ...] | None = None
        self._probe: dict = {}
        self._anchor: dict[str, np.ndarray] = {}
        self._unchecked: list[int] = []      # floating tuple outputs after the first

    # -- the user's module ---------------------------------------------------------------------
    @property
    def torch(self) -> Any:
        return import_torch(self._fail)

    def _class(self) -> Any:
        if self._cls is None:
            torch = self.torch
            obj = self._load()
            is_module = isinstance(obj, type) and issubclass(obj, torch.nn.Module) \
                or isinstance(obj, torch.nn.Module)
            if not is_module:
                self._fail(f"{getattr(obj, '__name__', type(obj).__name__)} is not a torch.nn.Module")
            cls = obj if isinstance(obj, type) else type(obj)
            self._sources |= {f.__code__.co_filename for f in vars(cls).values() if hasattr(f, "__code__")}
            self._cls = obj
        return self._cls

    def _construct(self, seed: int) -> Any:
        """A fresh float64 module; its parameters as the constructor draws them from ``seed``.
        A module given as an object (the Python API) is copied with its own values."""
        torch, obj = self.torch, self._class()
        if not isinstance(obj, type):
            return copy.deepcopy(obj).double()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            m = self._call("__init__", lambda: obj(**self.user_options),
                           hint=f"options given: {self.user_options or 'none'}")
        return m.double()

    def _module(self, dtype: np.dtype) -> Any:
        """The module whose buffers are in ``dtype`` (its parameters are always substituted)."""
        key = np.dtype(dtype).name
        if key not in self._modules:
            base = self._modules.get("float64") or self._construct(0)
            self._modules.setdefault("float64", base)
            if key != "float64":
                self._modules[key] = copy.deepcopy(base).to(getattr(self.torch, key))
        return self._modules[key]

    @property
    def per_sample(self) -> bool:     # type: ignore[override]
        """The YAML key or the class attribute (default False: copies are run one by one)."""
        return self.yaml_per_sample or bool(getattr(self._class(), "per_sample", False))

    # -- the Layer protocol ----------------------------------------------------------------------
    def params(self) -> tuple[str, ...]:
        if self._names is None:
            raise RuntimeError("torch layer: params() before init_params()")  # pragma: no cover
        return self._names

    def init_params(self, in_shape, rng):
        seed = int(rng.integers(2 ** 31))      # torch's seed, drawn at this layer's turn
        m = self._construct(seed)
        lazy = self.torch.nn.modules.lazy.LazyModuleMixin
        if any(isinstance(s, lazy) and s.has_uninitialized_params() for s in m.modules()):
            self._fail("has uninitialised lazy parameters (nn.LazyLinear, LazyConv...): run it once "
                       "on an input of the right shape, then check the module object")
        self._modules["float64"] = m
        out = {k: p.detach().cpu().numpy().astype(np.float64, copy=True) for k, p in m.named_parameters()}
        if "x" in out:
            self._fail("has a parameter named 'x'; that name is the layer's input")
        if self.init == "random":
            out = {k: fan_in_normal(v.shape, rng) for k, v in out.items()}
        self._names = tuple(out)
        return out

    def anchor(self, params):
        self._anchor = {k: np.asarray(v) for k, v in params.items()}

    def row_note(self, tensor, form, analytic, numerical):
        if self._unchecked:
            return (f"forward returns a tuple: output[0] is checked and passed on; floating outputs "
                    f"{self._unchecked} (flattened) are not (gradcheck_cli.torch.gradcheck checks every output)")
        v = self._anchor.get(tensor)
        if v is None or v.size < 2 or self.init == "random" or np.ptp(v) != 0:
            return ""
        return (f"{tensor} is constant ({float(v.flat[0]):g} everywhere, as the constructor sets it): "
                "a bug that scales by it or drops it can pass; `init: random` redraws it")

    def forward(self, x, params):
        return self._forward(x, params)

    def _tensors(self, x, params, grad: bool):
        torch = self.torch
        t = lambda a: torch.tensor(np.array(a, copy=True), requires_grad=grad)  # noqa: E731
        return t(x), {k: t(v) for k, v in params.items()}

    def _apply(self, xt, pt) -> Any:
        """y = module(x) with the parameters ``pt``, torch's generator seeded with CALL_SEED."""
        torch = self.torch
        m = self._module(np.dtype(str(xt.dtype).replace("torch.", "")))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(CALL_SEED)
            y = self._call("forward", lambda: torch.func.functional_call(m, pt, (xt,)))
        if isinstance(y, (tuple, list)) and y and isinstance(y[0], torch.Tensor):
            # RNN/LSTM (output, h_n), pools with return_indices: the next layer gets the first
            rest = torch.utils._pytree.tree_leaves(list(y[1:]))
            self._unchecked = [k for k, t in enumerate(rest, 1) if isinstance(t, torch.Tensor)
                               and (t.is_floating_point() or t.is_complex())]
            y = y[0]
        if not isinstance(y, torch.Tensor):
            self._fail(f"forward returned {type(y).__name__}, expected a torch.Tensor "
                       "(or a tuple whose first entry is one)")
        return y

    def _forward(self, x, params, finite: bool = True) -> np.ndarray:
        torch = self.torch
        xt, pt = self._tensors(x, params, grad=False)
        with torch.no_grad():
            y = self._apply(xt, pt)
        return self._array("forward() output", y.detach().cpu().numpy(), None, x.dtype, finite)

    @form("custom", seed="torch autograd: the module's own backward (its autograd.Functions)")
    def custom(self, dy, x, params):
        torch = self.torch
        xt, pt = self._tensors(x, params, grad=True)
        with torch.enable_grad():
            y = self._apply(xt, pt)
            if tuple(y.shape) != tuple(dy.shape):
                self._fail(f"forward output has shape {list(y.shape)}, expected {list(dy.shape)}")
            if not y.requires_grad:
                self._fail("the output does not depend on x or any parameter through autograd "
                           "(a forward that detaches, or runs in numpy?)")
            inputs = [xt, *pt.values()]
            g = self._call("backward", lambda: torch.autograd.grad(
                y, inputs, grad_outputs=torch.from_numpy(np.asarray(dy, dtype=x.dtype).copy()), allow_unused=True))
        out = {}
        for name, t, gi in zip(("x", *pt), inputs, g):
            a = np.zeros(t.shape, dtype=x.dtype) if gi is None else gi.detach().cpu().numpy()
            out[name] = self._array(f"gradient of {name!r}", a, tuple(t.shape), x.dtype)
        return out
