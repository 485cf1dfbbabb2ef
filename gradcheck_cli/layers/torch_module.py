"""A PyTorch module as a layer: ``type: torch`` with ``impl: FILE.py:Class`` (a ``torch.nn.Module``).

    - type: torch
      impl: my_modules.py:LayerNorm     # or package.module:Class, e.g. torch.nn:Linear
      options: {features: 6}            # keyword arguments of the constructor
      per_sample: true                  # optional (or a `per_sample = True` class attribute)
      init: random                      # optional: redraw every parameter from the case's seed
      output: 0                         # optional: a tuple's tensor passed on (flattened index)
      modes: [rev, fwd]                 # optional: also forward mode (higher.py); order: 2 too

Tensors: ``x`` and every entry of ``named_parameters()`` under its own name (``weight``,
``0.weight``). Values: what the constructor gives, constructed with torch's generator seeded by
a number drawn from the case's generator at this layer's turn (so the case's seed reproduces
them); ``init: random`` draws every parameter instead like a built-in layer (standard normal /
sqrt(fan-in)), since a constructor's weight = 1 or bias = 0 can hide a bug.

Analytic side: torch autograd through the module (a custom ``autograd.Function``'s ``backward``
is what gets checked), ``torch.autograd.grad`` of y with dL/dy as grad_outputs. Numerical side:
the module's forward in float64 under ``no_grad``. Every call runs with torch's generator
seeded the same, so a module that draws random numbers (dropout) draws the same ones each time.
A forward returning a tuple (LSTM, pools with ``return_indices``) passes ``output`` on; its other
floating tensors are checked in views of their own (side_views.py), as is ``order: 2``.

torch is an optional dependency: without it such a case exits 2 naming the pip command.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..registry import Layer, Option, form, register
from .higher import OPTIONS, Higher, fwd_from_jvps
from .usercode import Impl, Probed, UserCode, fan_in_normal, resolve_impl

CALL_SEED = 0    # torch's generator is seeded with this before every call of the module
JVP_BATCH = 2 ** 22     # tangents x entries held at once by the forward mode's vmap
INSTALL = "pip install 'gradcheck-cli[torch]'"


def import_torch(fail) -> Any:
    """torch, or ``fail(message)`` naming the pip command when it is not installed."""
    try:
        import torch
    except ImportError:
        fail(f"needs PyTorch, which is not installed: {INSTALL}")
    return torch


@register("torch")
class TorchModule(Higher, UserCode, Probed, Layer):
    summary = "a torch.nn.Module: impl FILE.py:Class; its autograd (custom autograd.Functions) is checked"
    options = (
        Option("impl", "str", help="FILE.py:Class (relative to the case file) or package.module:Class, "
                                   "a torch.nn.Module", resolve=resolve_impl),
        Option("options", "mapping", default={}, help="keyword arguments of the module's constructor"),
        Option("per_sample", "bool", default=False,
               help="sample n of the output depends only on sample n of x (or a class attribute)"),
        Option("init", "choice", default="constructor", choices=("constructor", "random"),
               help="parameter values: the constructor's (seeded), or drawn from the case's seed"),
        Option("output", "int", default=0, min=0,
               help="a forward returning a tuple: which tensor the next layer receives (flattened: "
                    "LSTM's output 0, h_n 1, c_n 2); every floating one is checked"),
        *OPTIONS,
    )
    na = {f: "a torch layer has one form, torch autograd" for f in ("kron", "correlation", "spray")}
    example = {"impl": "torch.nn:Linear", "options": {"in_features": 6, "out_features": 3},
               "per_sample": True}

    def __init__(self, impl: Impl | str = "", options: Mapping[str, Any] | None = None,
                 per_sample: bool = False, init: str = "constructor", output: int = 0,
                 modes: Any = ("rev",), order: int = 1, **_: Any) -> None:
        self._code_init(impl)
        self._higher_init(modes, order)
        self.output = int(output)
        self.user_options = dict(options or {})
        self.yaml_per_sample = bool(per_sample)
        self.init = init
        self._cls: Any = None
        self._modules: dict[str, Any] = {}     # torch dtype name -> the module in that dtype
        self._names: tuple[str, ...] | None = None
        self._probe: dict = {}
        self._anchor: dict[str, np.ndarray] = {}
        self._floating: list[int] = [0]      # which outputs (flattened) are floating tensors
        self._vmap_jvp = True                # forward mode batched by torch.func (else a loop)

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

    def _outputs(self, xt, pt) -> list:
        """Every tensor module(x) returns (a tuple's, flattened: LSTM's [output, h_n, c_n]) with
        the parameters ``pt``, torch's generator seeded with CALL_SEED."""
        torch = self.torch
        m = self._module(np.dtype(str(xt.dtype).replace("torch.", "")))
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed also queues a seed for every lazy device
            # backend, formatting a stack trace each time (most of a small module's call time)
            torch.default_generator.manual_seed(CALL_SEED)
            y = self._call("forward", lambda: torch.func.functional_call(m, pt, (xt,)))
        leaves = torch.utils._pytree.tree_leaves(y) if isinstance(y, (tuple, list)) else [y]
        leaves = [t for t in leaves if isinstance(t, torch.Tensor)]
        if not leaves:
            self._fail(f"forward returned {type(y).__name__}, expected a torch.Tensor (or a tuple of them)")
        self._floating = [k for k, t in enumerate(leaves) if t.is_floating_point()]
        if self.output not in self._floating:
            self._fail(f"`output: {self.output}` names no floating tensor of forward's result: it returns "
                       f"{len(leaves)} tensor(s), floating at {self._floating} (flattened)")
        return leaves

    def side_outputs(self) -> list[int]:
        """The floating outputs besides the one passed on (side_views.py checks each of them)."""
        return [k for k in self._floating if k != self.output]

    def _forward(self, x, params, finite: bool = True, out: int | None = None) -> np.ndarray:
        torch = self.torch
        xt, pt = self._tensors(x, params, grad=False)
        with torch.no_grad():
            y = self._outputs(xt, pt)[self.output if out is None else out]
        return self._array("forward() output", y.detach().cpu().numpy(), None, x.dtype, finite)

    def side_forward(self, x, params, out: int) -> np.ndarray:
        return self._forward(x, params, out=out)

    def side_backward(self, form_name: str, dy, x, params, out: int) -> dict:
        return (self._rev if form_name == "custom" else self._fwd)(dy, x, params, out)

    @form("custom", seed="torch autograd: the module's own backward (its autograd.Functions)")
    def custom(self, dy, x, params):
        return self._rev(dy, x, params, self.output)

    def fwd(self, dy, x, params):
        """Form ``fwd`` (modes: [fwd]): dL/dv from Jacobian-vector products, one tangent per entry."""
        return self._fwd(dy, x, params, self.output)

    def _graph(self, x, params, dys: dict):
        """(outputs, inputs, cotangents as tensors) with autograd recording, for the outputs (flat
        indices) that are the keys of ``dys``, each checked against its cotangent's shape."""
        torch = self.torch
        xt, pt = self._tensors(x, params, grad=True)
        with torch.enable_grad():
            leaves = self._outputs(xt, pt)
        ys = [leaves[k] for k in dys]
        for y, dy in zip(ys, dys.values()):
            if tuple(y.shape) != tuple(dy.shape):
                self._fail(f"forward output has shape {list(y.shape)}, expected {list(dy.shape)}")
        if not any(y.requires_grad for y in ys):
            self._fail("the output does not depend on x or any parameter through autograd "
                       "(a forward that detaches, or runs in numpy?)")
        dyts = [torch.from_numpy(np.asarray(dy, dtype=x.dtype).copy()) for dy in dys.values()]
        return ys, {"x": xt, **pt}, dyts

    def _rev(self, dy, x, params, out: int) -> dict:
        return self.joint_backward({out: dy}, x, params)

    def joint_backward(self, dys: dict, x, params, create_graph: bool = False):
        """The backward at a cotangent for each output in ``dys`` (flat index -> dy), summed."""
        torch = self.torch
        ys, inputs, dyts = self._graph(x, params, dys)
        for d in dyts if create_graph else ():
            d.requires_grad_(True)
        pairs = [(y, d) for y, d in zip(ys, dyts) if y.requires_grad]
        g = self._call("backward", lambda: torch.autograd.grad(
            [y for y, _ in pairs], list(inputs.values()), grad_outputs=[d for _, d in pairs],
            allow_unused=True, create_graph=create_graph))
        if create_graph:
            return dict(zip(inputs, g)), inputs, dyts
        return self._grads(dict(zip(inputs, g)), inputs, x.dtype)

    def _grads(self, g: dict, like: dict, dtype) -> dict:
        out = {}
        for name, t in like.items():
            gi = g.get(name)
            a = np.zeros(t.shape, dtype=dtype) if gi is None else gi.detach().cpu().numpy()
            out[name] = self._array(f"gradient of {name!r}", a, tuple(t.shape), dtype)
        return out

    def _fwd(self, dy, x, params, out: int) -> dict:
        torch = self.torch
        xt, pt = self._tensors(x, params, grad=False)
        primal = {"x": xt, **pt}
        dyt = torch.from_numpy(np.asarray(dy, dtype=x.dtype).copy())
        with torch.no_grad():
            y = self._outputs(xt, pt)[out]
        if tuple(y.shape) != tuple(dyt.shape):
            self._fail(f"forward output has shape {list(y.shape)}, expected {list(dyt.shape)}")
        g = {}
        for name, v in primal.items():
            a = self._jvps_vmapped(primal, name, dyt, out) if self._vmap_jvp else None
            g[name] = a if a is not None else self._jvps_looped(primal, name, dyt, out)
        return {k: self._array(f"forward-mode gradient of {k!r}", v, tuple(primal[k].shape), x.dtype)
                for k, v in g.items()}

    def _jvps_vmapped(self, primal: dict, name: str, dyt, out: int) -> np.ndarray | None:
        """<dy, J e_j> for every entry j of ``name``: torch.func.jvp, tangents batched by vmap.
        None where the module does not take torch.func transforms (an autograd.Function without
        setup_context, in-place buffer updates): then never again for this layer, the loop serves."""
        torch = self.torch
        v = primal[name]
        n = v.numel()

        def dot(t):
            def f(w):
                p = dict(primal, **{name: w})
                return self._outputs(p.pop("x"), p)[out]
            return (torch.func.jvp(f, (v,), (t,))[1] * dyt).sum()

        chunk, parts = max(1, JVP_BATCH // max(1, n, dyt.numel())), []
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            basis = torch.zeros(m, n, dtype=v.dtype)
            basis[torch.arange(m), s + torch.arange(m)] = 1
            try:
                parts.append(torch.func.vmap(dot, randomness="same")(basis.reshape(m, *v.shape)))
            except Exception:  # noqa: BLE001 - any refusal of the transforms: the loop reports real errors
                self._vmap_jvp = False
                return None
        return torch.cat(parts).reshape(v.shape).detach().cpu().numpy() if parts else np.zeros(v.shape, v.dtype)

    def _jvps_looped(self, primal: dict, name: str, dyt, out: int) -> np.ndarray:
        """The same, one torch.autograd.forward_ad dual-number forward per entry (any autograd.Function
        with a ``jvp`` staticmethod)."""
        torch = self.torch
        fwAD = torch.autograd.forward_ad

        def jvp_dot(j: int) -> float:
            tangent = torch.zeros_like(primal[name])
            tangent.view(-1)[j] = 1
            with fwAD.dual_level():
                dual = dict(primal, **{name: fwAD.make_dual(primal[name], tangent)})
                y = self._outputs(dual.pop("x"), dual)[out]
                t = fwAD.unpack_dual(y).tangent
            return 0.0 if t is None else float((t * dyt).sum())

        return fwd_from_jvps(jvp_dot, primal[name].shape, lambda s: np.zeros(s, dtype=dyt.numpy().dtype))

    def double_backward(self, r: dict, dys: dict, x, params) -> tuple[dict, dict]:
        """Order 2: the gradients of <r, (dx, dparams)> (the backward at the cotangents ``dys``, flat
        output index -> dy) with respect to x, the parameters and each dy, by differentiating the
        module's backward (create_graph)."""
        torch = self.torch
        g, inputs, dyts = self.joint_backward(dys, x, params, create_graph=True)
        s = sum((gi * torch.from_numpy(np.asarray(r[n], dtype=x.dtype))).sum()
                for n, gi in g.items() if gi is not None and gi.requires_grad)
        zeros = {k: np.zeros(np.shape(d), dtype=x.dtype) for k, d in dys.items()}
        if not isinstance(s, torch.Tensor):      # no first-order gradient depends on anything
            return self._grads({}, inputs, x.dtype), zeros
        gg = self._call("backward of the backward", lambda: torch.autograd.grad(
            s, [*inputs.values(), *dyts], allow_unused=True))
        out = self._grads(dict(zip(inputs, gg)), inputs, x.dtype)
        gdy = self._grads(dict(zip(dys, gg[len(inputs):])), dict(zip(dys, dyts)), x.dtype)
        return out, gdy
