"""A JAX layer: ``type: jax`` with ``impl: FILE.py:Class``, written in jax.numpy, no backward.

    class LayerNorm:
        per_sample = True                             # optional, as for custom layers
        def __init__(self, **options): ...
        def init_params(self, input_shape, rng) -> dict   # rng: numpy Generator; numpy or jax arrays
        def forward(self, x, params) -> y                 # jax.numpy

Tensors: ``x`` and every key of ``init_params``. Analytic side: ``jax.vjp`` of ``forward`` at
(x, params) applied to dL/dy, so a ``jax.custom_vjp`` rule inside it is what gets checked.
Numerical side: ``forward`` in float64. ``modes: [rev, fwd]`` and ``order: 2`` (higher.py) add
``jax.jvp`` (a ``custom_jvp`` rule) and the vjp's own vjp. gradcheck turns on jax's x64 mode
(``jax_enable_x64``) when it loads the layer, for the whole process.

jax is an optional dependency: without it such a case exits 2 naming the pip command.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..registry import Layer, Option, form, register
from .higher import OPTIONS, Higher
from .usercode import Impl, Probed, UserCode, UserParams, resolve_impl

INSTALL = "pip install 'gradcheck-cli[jax]'"
JVP_BATCH = 2 ** 22     # tangents x entries held at once by the forward mode's vmap


def import_jax(fail) -> Any:
    """jax with x64 mode on, or ``fail(message)`` naming the pip command when it is not installed."""
    try:
        import jax
    except ImportError:
        fail(f"needs JAX, which is not installed: {INSTALL}")
    if not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    return jax


@register("jax")
class JaxModule(Higher, UserParams, UserCode, Probed, Layer):
    summary = "a JAX layer: impl FILE.py:Class with init_params and forward in jax.numpy; jax.vjp is checked"
    options = (
        Option("impl", "str", help="FILE.py:Class (relative to the case file) or package.module:Class",
               resolve=resolve_impl),
        Option("options", "mapping", default={}, help="keyword arguments of the class's constructor"),
        Option("per_sample", "bool", default=False,
               help="sample n of the output depends only on sample n of x (or a class attribute)"),
        *OPTIONS,
    )
    na = {f: "a jax layer has one form, jax.vjp" for f in ("kron", "correlation", "spray")}
    example = {"impl": "gradcheck_cli.layers.jax_example:Tanh", "per_sample": True}

    def __init__(self, impl: Impl | str = "", options: Mapping[str, Any] | None = None,
                 per_sample: bool = False, modes: Any = ("rev",), order: int = 1, **_: Any) -> None:
        self._code_init(impl)
        self._higher_init(modes, order)
        self.user_options = dict(options or {})
        self.yaml_per_sample = bool(per_sample)
        self._user: Any = None
        self._probe: dict = {}

    @property
    def jax(self) -> Any:
        return import_jax(self._fail)

    @property
    def user(self) -> Any:
        if self._user is None:
            self.jax                                   # x64 on before the user's module runs
            cls = self._load()
            self._sources |= {f.__code__.co_filename for f in vars(cls).values() if hasattr(f, "__code__")}
            user = self._call("__init__", lambda: cls(**self.user_options),
                              hint=f"options given: {self.user_options or 'none'}")
            for method in ("init_params", "forward"):
                if not callable(getattr(user, method, None)):
                    self._fail(f"class {cls.__name__} has no method `{method}`; a jax layer needs "
                               "init_params(input_shape, rng) and forward(x, params)")
            self._user = user
        return self._user

    @property
    def per_sample(self) -> bool:     # type: ignore[override]
        return self.yaml_per_sample or bool(getattr(self.user, "per_sample", False))

    # -- the Layer protocol ----------------------------------------------------------------------
    def _numpy(self, a: Any) -> Any:
        """A jax array as numpy (anything else is returned as is, for _array to judge)."""
        return np.asarray(a) if isinstance(a, self.jax.Array) else a

    def _inputs(self, x, params):
        jnp = self.jax.numpy
        return jnp.asarray(np.array(x, copy=True)), {k: jnp.asarray(np.array(v, copy=True))
                                                     for k, v in params.items()}

    def forward(self, x, params):
        return self._forward(x, params)

    def _forward(self, x, params, finite: bool = True) -> np.ndarray:
        user = self.user
        xj, pj = self._inputs(x, params)
        y = self._call("forward", lambda: user.forward(xj, pj))
        return self._array("forward() output", self._numpy(y), None, x.dtype, finite)

    def _vjp(self, x, params, dy):
        """(jax.vjp's function, x and params as jax arrays), y checked against dy's shape."""
        user, jax = self.user, self.jax
        xj, pj = self._inputs(x, params)
        y, vjp = self._call("forward", lambda: jax.vjp(user.forward, xj, pj))
        self._check_output(y, dy)
        return vjp, xj, pj

    def _check_output(self, y, dy) -> None:
        if not isinstance(y, self.jax.Array) or tuple(y.shape) != tuple(dy.shape):
            self._fail(f"forward output is {type(y).__name__} of shape {list(np.shape(y))}, "
                       f"expected a jax array of shape {list(dy.shape)}")

    def _grads(self, gx, gp, x, params, what: str = "gradient") -> dict:
        out = {"x": self._array(f"{what} of 'x'", self._numpy(gx), x.shape, x.dtype)}
        for k in params:
            out[k] = self._array(f"{what} of {k!r}", self._numpy(gp[k]), params[k].shape, x.dtype)
        return out

    @form("custom", seed="jax.vjp of forward: the custom_vjp rules inside it")
    def custom(self, dy, x, params):
        vjp, _, _ = self._vjp(x, params, dy)
        gx, gp = self._call("backward", lambda: vjp(self.jax.numpy.asarray(dy, dtype=x.dtype)))
        return self._grads(gx, gp, x, params)

    def fwd(self, dy, x, params):
        """Form ``fwd`` (modes: [fwd]): dL/dv entry by entry from jax.jvp (the custom_jvp rules)."""
        user, jax = self.user, self.jax
        jnp = jax.numpy
        xj, pj = self._inputs(x, params)
        dyj = jnp.asarray(dy, dtype=x.dtype)

        def dots(basis_x, basis_p):        # <dy, J (tx, tp)> for a batch of tangents
            one = lambda tx, tp: jnp.vdot(dyj, jax.jvp(user.forward, (xj, pj), (tx, tp))[1])  # noqa: E731
            return jax.vmap(one)(basis_x, basis_p)

        self._check_output(self._call("forward", lambda: user.forward(xj, pj)), dy)
        out = {}
        for name, v in (("x", xj), *pj.items()):
            n = int(v.size)
            chunk = max(1, JVP_BATCH // max(1, n, int(dyj.size)))     # tangents per vmap: bounded memory
            parts = []
            for s in range(0, n, chunk):
                m = min(chunk, n - s)
                basis = jnp.zeros((m, n), v.dtype).at[jnp.arange(m), s + jnp.arange(m)].set(1).reshape(m, *v.shape)
                tx = basis if name == "x" else jnp.zeros((m, *xj.shape), xj.dtype)
                tp = {k: basis if k == name else jnp.zeros((m, *p.shape), p.dtype) for k, p in pj.items()}
                parts.append(np.asarray(self._call("forward-mode (jvp)", lambda: dots(tx, tp))))
            g = np.concatenate(parts).reshape(v.shape) if parts else np.zeros(v.shape, x.dtype)
            out[name] = self._array(f"forward-mode gradient of {name!r}", g, tuple(v.shape), x.dtype)
        return out

    def joint_backward(self, dys: dict, x, params) -> dict:
        """The backward at the cotangent of its one output (``dys`` = {0: dy})."""
        return self.custom(dys[0], x, params)

    def double_backward(self, r: dict, dys: dict, x, params) -> tuple[dict, dict]:
        """Order 2: the gradients of <r, vjp(dy)> with respect to x, the parameters and dy
        (jax.vjp of the vjp: the custom rules differentiated once more); ``dys`` = {0: dy}."""
        user, jax = self.user, self.jax
        jnp = jax.numpy
        dy = dys[0]
        xj, pj = self._inputs(x, params)
        self._check_output(self._call("forward", lambda: user.forward(xj, pj)), dy)
        rx = jnp.asarray(r["x"], dtype=x.dtype)
        rp = {k: jnp.asarray(r[k], dtype=x.dtype) for k in params}

        def first(xv, pv, dyv):
            gx, gp = jax.vjp(user.forward, xv, pv)[1](dyv)
            return jnp.vdot(rx, gx) + sum(jnp.vdot(rp[k], gp[k]) for k in rp)

        gx, gp, gdy = self._call("backward of the backward", lambda: jax.grad(first, argnums=(0, 1, 2))(
            xj, pj, jnp.asarray(dy, dtype=x.dtype)))
        return self._grads(gx, gp, x, params, "second-order gradient"), \
            {0: self._array("second-order gradient of the cotangent", self._numpy(gdy), dy.shape, x.dtype)}

    def side_outputs(self) -> list[int]:
        return []
