"""CS231n-style function pairs as a layer: ``type: functions``, no adapter.

    - type: functions
      forward: layers.py:conv_forward_naive     # f(x, *params, **args) -> (out, cache)
      backward: layers.py:conv_backward_naive   # g(dout, cache) -> (dx, *dparams), same order
      params: {w: [4, 3, 3, 3], b: [4]}         # names and shapes, in the order f takes them after x
      args: {conv_param: {stride: 1, pad: 1}}   # optional keyword arguments of f
      per_sample: false                         # optional, as for custom layers

A parameter's value is drawn from the case's seed (standard normal / sqrt(fan-in)); a string
instead of a shape names a .npy file with its value. Inputs that are differentiated but are not
weights (``prev_h`` of an RNN step) are parameters too. ``args`` is deep-copied for every call,
so a function that writes into it (a batch norm's running mean) sees the same args each time;
a function that draws random numbers must be given a fixed seed in ``args`` (CS231n's dropout
takes ``dropout_param: {p: 0.5, mode: train, seed: 0}``), or the check refuses its forward as
not deterministic. The backward's cache is always made by the forward at the same point.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..registry import Layer, Option, form, register
from .usercode import Impl, Probed, UserCode, fan_in_normal, resolve_impl


def _resolve_params(value: Mapping, base: Path) -> Mapping:
    """Keep shapes as written; a string names a .npy file relative to the case."""
    return MappingProxyType({k: (Path(base) / v).resolve() if isinstance(v, str) else v
                             for k, v in value.items()})


@register("functions")
class Functions(UserCode, Probed, Layer):
    summary = "a CS231n-style pair: forward f(x, *params, **args) -> (out, cache), backward g(dout, cache)"
    options = (
        Option("forward", "str", help="FILE.py:function, f(x, *params, **args) -> (out, cache)",
               resolve=resolve_impl),
        Option("backward", "str", help="FILE.py:function, g(dout, cache) -> (dx, *dparams)",
               resolve=resolve_impl),
        Option("params", "mapping", default={}, help="name: shape (or file.npy), in the order f takes them",
               resolve=_resolve_params),
        Option("args", "mapping", default={}, help="keyword arguments of the forward function"),
        Option("per_sample", "bool", default=False,
               help="sample n of the output depends only on sample n of x"),
    )
    na = {f: "a functions layer has one form, its backward function" for f in ("kron", "correlation", "spray")}
    example = {"forward": "gradcheck_cli.layers.functions_example:affine_forward",
               "backward": "gradcheck_cli.layers.functions_example:affine_backward",
               "params": {"w": [6, 3], "b": [3]}, "per_sample": True}

    def __init__(self, forward: Impl | str = "", backward: Impl | str = "",
                 params: Mapping[str, Any] | None = None, args: Mapping[str, Any] | None = None,
                 per_sample: bool = False, **_: Any) -> None:
        self._code_init(forward)
        self.back_impl = Impl(str(backward), Path.cwd()) if not isinstance(backward, Impl) else backward
        self.shapes = dict(params or {})
        self.args = dict(args or {})
        self.per_sample = bool(per_sample)
        self._fns: tuple[Any, Any] | None = None
        self._probe: dict = {}

    @property
    def label(self) -> str:
        return (f"{self.where or 'functions layer'} "
                f"(functions {self.impl.text} / {self.back_impl.text})")

    @property
    def fns(self) -> tuple[Any, Any]:
        if self._fns is None:
            f = self._load(self.impl, kind="function")
            g = self._load(self.back_impl, kind="function")
            self._fns = (f, g)
        return self._fns

    # -- the Layer protocol ----------------------------------------------------------------------
    def params(self) -> tuple[str, ...]:
        return tuple(self.shapes)

    def _declared(self) -> dict[str, tuple[int, ...] | Path]:
        out = {}
        for k, v in self.shapes.items():
            field = f"params.{k}"
            if not isinstance(k, str) or not k.isidentifier() or k == "x":
                raise ShapeError(field, "a parameter name must be an identifier other than 'x'")
            if isinstance(v, Path):
                if not v.is_file():
                    raise ShapeError(field, f"file not found: {v}")
                out[k] = v
            elif isinstance(v, list) and v and all(isinstance(s, int) and not isinstance(s, bool)
                                                   and s >= 1 for s in v):
                out[k] = tuple(v)
            else:
                raise ShapeError(field, f"expected a shape like [4, 3] or a .npy file, got {v!r}")
        return out

    def output_shape(self, in_shape):
        self._declared()               # a ShapeError names the field before any user code runs
        return super().output_shape(in_shape)

    def init_params(self, in_shape, rng):
        out = {}
        for k, v in self._declared().items():
            if isinstance(v, Path):
                try:
                    out[k] = np.load(v, allow_pickle=False).astype(np.float64)
                except Exception as exc:  # noqa: BLE001 - the user's file
                    self._fail(f"params.{k}: cannot read {v.name} as .npy: {exc}")
            else:
                out[k] = fan_in_normal(v, rng)
        return out

    def forward(self, x, params):
        return self._forward(x, params)

    def _run_forward(self, x, params) -> tuple[np.ndarray, Any]:
        f = self.fns[0]
        args = (np.array(x, copy=True), *(np.array(params[k], copy=True) for k in self.shapes))
        kw = copy.deepcopy(self.args)
        res = self._call("forward", lambda: f(*args, **kw))
        if not isinstance(res, tuple) or len(res) != 2:
            self._fail(f"forward returned {type(res).__name__}"
                       + (f" of {len(res)}" if isinstance(res, tuple) else "")
                       + ", expected a pair (out, cache)")
        return res

    def _forward(self, x, params, finite: bool = True) -> np.ndarray:
        out, _ = self._run_forward(x, params)
        return self._array("forward()[0] (out)", out, None, x.dtype, finite)

    @form("custom", seed="the user's backward function, given the forward's cache")
    def custom(self, dy, x, params):
        _, cache = self._run_forward(x, params)
        g = self.fns[1]
        res = self._call("backward", lambda: g(np.array(dy, copy=True), cache))
        names = ("x", *self.shapes)
        if len(names) == 1 and not isinstance(res, (tuple, list)) and np.ndim(res) > 0:
            res = (res,)              # one gradient to return: a bare dx (CS231n's relu_backward)
        if not isinstance(res, (tuple, list)) or len(res) != len(names):
            got = f"{len(res)} values" if isinstance(res, (tuple, list)) else type(res).__name__
            self._fail(f"backward returned {got}, expected {len(names)}: "
                       f"(d{', d'.join(names)}) in the order of params")
        shapes = {"x": x.shape, **{k: v.shape for k, v in params.items()}}
        return {k: self._array(f"backward()[{i}] (d{k})", a, shapes[k], dy.dtype)
                for i, (k, a) in enumerate(zip(names, res))}
