"""Drop-in for ``jax.test_util.check_grads``: every Jacobian entry instead of one random direction.

``check_grads(f, args, order, modes=("fwd", "rev"), atol=None, rtol=None, eps=None)``: the
arguments are flattened (``jax.tree_util``) into one real vector, the outputs likewise. Central
differences of every input entry in one ``jax.vmap`` call; ``rev``: the Jacobian's rows by
``jax.vmap`` over the vjp of the identity's rows (or seeded random cotangents past the budget);
``fwd``: its columns by ``jax.vmap`` over jvp. Entry verdict as the torch drop-in's
(torch/compare.py): ``|a - n| <= atol + rtol |n| + 32 u max|f| / eps``, and the kink rule. Order 2
checks the same derivative maps jax's check_grads builds (``jvp`` of f at (args, args); args ->
``vjp(f)(f(args))``). A mismatch raises AssertionError whose table names the argument by its
pytree path (``args[1]['w']``).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..numeric.central import NOISE_FACTOR
from ..ranking import rank_desc

__all__ = ["check_grads"]
EPS = 1e-4                                   # jax's default step
TOL = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 2e-3, np.dtype(np.float16): 1e-2,
       np.dtype(np.complex128): 1e-5, np.dtype(np.complex64): 1e-3}   # jax's defaults
BUDGET = 2**24                               # Jacobian entries compared at once
RANDOM_ROWS = 8
WORST = 3


class _Flat:
    """``f`` on pytree ``args`` as a map from one flat real vector to another."""

    def __init__(self, f: Callable, args: tuple) -> None:
        leaves, self.tree = jax.tree_util.tree_flatten_with_path(args)
        self.paths = ["args" + jax.tree_util.keystr(p) for p, _ in leaves]
        vals = self.vals = [jnp.asarray(v) for _, v in leaves]
        self.shapes = [v.shape for v in vals]
        self.dtypes = [v.dtype for v in vals]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.f = f
        self.x0 = jnp.concatenate([v.reshape(-1) for v in vals]) if vals else jnp.zeros(0)
        out = f(*args)
        outs, _ = jax.tree_util.tree_flatten_with_path(out)
        self.out_paths = ["out" + jax.tree_util.keystr(p) for p, _ in outs]
        self.out_sizes = [int(np.size(v)) * (2 if jnp.iscomplexobj(v) else 1) for _, v in outs]
        self.out_shapes = [np.shape(v) + ((2,) if jnp.iscomplexobj(v) else ()) for _, v in outs]
        self.f0 = self(self.x0)

    def args(self, x: jax.Array) -> tuple:
        parts, off = [], 0
        for shape, dtype, n in zip(self.shapes, self.dtypes, self.sizes):
            parts.append(x[off:off + n].reshape(shape).astype(dtype))
            off += n
        return jax.tree_util.tree_unflatten(self.tree, parts)

    def leaf(self, t: int, xt: jax.Array) -> jax.Array:
        """The flat output with argument leaf t (flat ``xt``) replaced, the others fixed: vmapped
        over xt alone, so a conv's kernel is not batched when its input is perturbed."""
        vals = list(self.vals)
        vals[t] = xt.reshape(self.shapes[t]).astype(self.dtypes[t])
        return self._out(self.f(*jax.tree_util.tree_unflatten(self.tree, vals)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self._out(self.f(*self.args(x)))

    def _out(self, out: Any) -> jax.Array:
        leaves = jax.tree_util.tree_leaves(out)
        parts = [jnp.ravel(jnp.stack([v.real, v.imag], -1) if jnp.iscomplexobj(v) else v)
                 for v in map(jnp.asarray, leaves)]
        return jnp.concatenate(parts) if parts else jnp.zeros(0, self.x0.dtype)

    def where(self, k: int, sizes: list[int], paths: list[str], shapes=None) -> str:
        """Flat entry k as ``path[index]``."""
        off = 0
        for t, n in enumerate(sizes):
            if k < off + n:
                if shapes is None:
                    return f"{paths[t]}[{k - off}]"
                idx = np.unravel_index(k - off, shapes[t]) if shapes[t] else ()
                return f"{paths[t]}[{', '.join(str(int(i)) for i in idx)}]"
            off += n
        return f"[{k}]"


def _numerical(g: _Flat, eps: float) -> tuple[np.ndarray, ...]:
    """Central and one-sided differences of every input entry: (N, M) each, and the noise."""
    fp, fm = [], []
    for t, v in enumerate(g.vals):
        x = v.reshape(-1).astype(g.x0.dtype)
        E = jnp.eye(x.size, dtype=x.dtype) * eps
        one = partial(g.leaf, t)
        fp.append(np.asarray(jax.vmap(one)(x[None] + E), np.float64).reshape(x.size, -1))
        fm.append(np.asarray(jax.vmap(one)(x[None] - E), np.float64).reshape(x.size, -1))
    fp, fm = np.concatenate(fp), np.concatenate(fm)
    f0 = np.asarray(g.f0, np.float64)[None]
    u = float(jnp.finfo(g.x0.dtype).eps) if jnp.issubdtype(g.x0.dtype, jnp.floating) else 2.0**-52
    noise = NOISE_FACTOR * u * np.maximum(np.maximum(np.abs(fp), np.abs(fm)), np.abs(f0)) / eps
    return (fp - fm) / (2 * eps), (fp - f0) / eps, (f0 - fm) / eps, noise


def _analytic(g: _Flat, mode: str, C: np.ndarray | None) -> np.ndarray:
    """The Jacobian (N, M) from ``mode``; with cotangents/tangents C (K x M or K x N) the
    projections instead: rev -> (N, K) = J^T C^T, fwd -> (K, M) = C J^T."""
    if mode == "rev":
        _, vjp = jax.vjp(g, g.x0)
        rows = jnp.eye(g.f0.size, dtype=g.f0.dtype) if C is None else jnp.asarray(C, g.f0.dtype)
        return np.asarray(jax.vmap(lambda c: vjp(c)[0])(rows), np.float64).T
    if C is not None:
        cols = jnp.asarray(C, g.x0.dtype)
        return np.asarray(jax.vmap(lambda t: jax.jvp(g, (g.x0,), (t,))[1])(cols), np.float64)
    out = []
    for t, v in enumerate(g.vals):         # columns leaf by leaf, the other leaves unbatched
        x = v.reshape(-1).astype(g.x0.dtype)
        one = partial(g.leaf, t)
        jv = jax.vmap(lambda c: jax.jvp(one, (x,), (c,))[1])(jnp.eye(x.size, dtype=x.dtype))
        out.append(np.asarray(jv, np.float64).reshape(x.size, -1))
    return np.concatenate(out)


def _judge(a, n, r, l, noise, atol, rtol):
    err = np.abs(a - n)
    thr = atol + rtol * np.abs(n) + noise
    bad = ~(err <= thr)
    kink = bad & np.isfinite(a) & (np.abs(r - l) >= 0.1 * err) & \
        (a >= np.minimum(r, l) - thr) & (a <= np.maximum(r, l) + thr)
    return bad & ~kink, kink, err, thr


def _check_one(f: Callable, args: tuple, mode: str, atol, rtol, eps: float, what: str) -> None:
    g = _Flat(f, args)
    N, M = g.x0.size, g.f0.size
    if not N or not M:
        return
    dt = np.dtype(g.x0.dtype)
    atol = TOL.get(dt, 1e-5) if atol is None else atol
    rtol = TOL.get(dt, 1e-5) if rtol is None else rtol
    D, R, L, noise = _numerical(g, eps)                   # (N, M)
    if N * M <= BUDGET:
        A = _analytic(g, mode, None)
        how = f"every entry of the {M}x{N} Jacobian"
    else:
        rng = np.random.default_rng(0)
        C = rng.standard_normal((RANDOM_ROWS, M if mode == "rev" else N))
        A = _analytic(g, mode, C)
        if mode == "rev":         # J^T c against every input entry
            D, R, L, noise = D @ C.T, R @ C.T, L @ C.T, noise @ np.abs(C.T)
        else:                     # J t against every output entry
            D, R, L, noise = C @ D, C @ R, C @ L, np.abs(C) @ noise
        how = f"{RANDOM_ROWS} seeded random {'cotangents' if mode == 'rev' else 'tangents'}"
    bad, kink, err, thr = _judge(A, D, R, L, noise, atol, rtol)
    if bad.any():
        raise AssertionError(_table(g, mode, what, how, A, D, bad, kink, err, thr, N * M <= BUDGET,
                                    atol, rtol, eps))


def _table(g, mode, what, how, A, D, bad, kink, err, thr, full, atol, rtol, eps) -> str:
    rows_in = np.repeat(np.arange(len(g.sizes)), g.sizes)
    names = sorted({g.paths[t] for t in rows_in[np.nonzero(bad)[0]]}) if bad.shape[0] == g.x0.size \
        else sorted(set(g.paths))
    lines = [f"check_grads: {what} ({mode}) mismatch for {', '.join(names)}",
             f"compared {how}; eps {eps:g}, atol {atol:g}, rtol {rtol:g} (+ rounding term)",
             f"{'argument':<24} {'compared':>9} {'failed':>7} {'kinks':>6} {'max abs err':>12}"]
    per_in = bad.shape[0] == g.x0.size
    off = 0
    for t, n in enumerate(g.sizes if per_in else [bad.shape[0]]):
        b, k, e = bad[off:off + n], kink[off:off + n], err[off:off + n]
        if b.any():
            name = g.paths[t] if per_in else "(random tangents)"
            lines.append(f"{name:<24} {b.size:>9} {int(b.sum()):>7} {int(k.sum()):>6} "
                         f"{float(np.where(k, 0, e).max()):>12.3e}")
            ratio = np.where(b, err[off:off + n] / thr[off:off + n], 0)
            for flat in rank_desc(ratio)[:WORST]:      # the same order on every machine
                i, j = np.unravel_index(flat, b.shape)
                if not b[i, j]:
                    break
                src = g.where(off + i, g.sizes, g.paths, g.shapes) if per_in else f"t{i}"
                dst = g.where(j, g.out_sizes, g.out_paths, g.out_shapes) if (full or mode == "fwd") else f"c{j}"
                lines.append(f"    {src} / {dst}: analytic {A[off + i, j]:.6g}, "
                             f"numerical {D[off + i, j]:.6g}")
        off += n
    return "\n".join(lines)


def check_grads(f: Callable, args: Any, order: int, modes=("fwd", "rev"), atol=None, rtol=None,
                eps=None) -> None:
    """``jax.test_util.check_grads`` with the same arguments and meaning, compared entry by entry:
    raises AssertionError (a table naming the argument by pytree path) on a mismatch."""
    if order not in (1, 2):
        raise NotImplementedError(f"gradcheck_cli.jax.check_grads: order={order} (1 and 2 are "
                                  f"supported): use jax.test_util.check_grads for higher orders")
    unknown = set(modes) - {"fwd", "rev"}
    if unknown:
        raise NotImplementedError(f"gradcheck_cli.jax.check_grads: modes {sorted(unknown)} "
                                  f"(fwd and rev are supported)")
    args = tuple(args)
    eps = eps or EPS

    def run(f, args, order, what):
        if "fwd" in modes:
            _check_one(f, args, "fwd", atol, rtol, eps, what)
            if order > 1:
                run(partial(jax.jvp, f), (args, args), order - 1, f"JVP of {what}")
        if "rev" in modes:
            _check_one(f, args, "rev", atol, rtol, eps, what)
            if order > 1:
                def f_vjp(*a):
                    out, vjp = jax.vjp(f, *a)
                    return vjp(out)
                run(f_vjp, args, order - 1, f"VJP of {what}")

    run(f, args, order, getattr(f, "__name__", "f"))
