"""gradcheck_cli.jax.check_grads against jax.test_util.check_grads: time, and seeded bugs caught.

    python benchmarks/jax_check_grads.py [--repeat 3]

For each function (jax.numpy code and custom_jvp / custom_vjp rules, float64), both tools run at
order 1 and 2 on the same arguments (best of --repeat, after one warm call). A bug is then seeded
in a custom_vjp rule: one entry of one argument's cotangent moved by 1e-2 x its largest
magnitude; each tool's verdict is printed. One thread of XLA's CPU client is not forced: both
tools share the process.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads as jax_check_grads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
jax.config.update("jax_enable_x64", True)
from gradcheck_cli.jax import check_grads  # noqa: E402


def dense_moved(k: int | None):
    """custom_vjp tanh(x @ w): the rule's gradient of w has entry k moved (None: correct)."""

    @jax.custom_vjp
    def f(x, w):
        return jnp.tanh(x @ w)

    def fwd(x, w):
        y = f(x, w)
        return y, (x, w, y)

    def bwd(res, c):
        x, w, y = res
        d = c * (1 - y ** 2)
        gw = x.T @ d
        if k is not None:
            gw = gw.reshape(-1).at[k].add(1e-2 * jnp.abs(gw).max()).reshape(gw.shape)
        return d @ w.T, gw

    f.defvjp(fwd, bwd)
    return f


def functions():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((16, 32)), rng.standard_normal((32, 24))
    img, ker = rng.standard_normal((2, 3, 12, 12)), rng.standard_normal((4, 3, 3, 3))
    conv = lambda a, k: jax.lax.conv(a, k, (1, 1), "VALID")     # noqa: E731
    return [("mlp tanh 16x32x24", lambda a, b: jnp.tanh(a @ b).sum(0), (x, w), ("fwd", "rev")),
            ("conv 2x3x12x12", conv, (img, ker), ("fwd", "rev")),
            ("custom_vjp dense", dense_moved(None), (x, w), ("rev",))]


def best(fn, repeat: int) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def verdict(tool, f, args, modes) -> str:
    try:
        tool(f, args, order=1, modes=modes)
        return "passes"
    except AssertionError:
        return "catches"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(f"{'function':<20} {'order':>5} {'jax s':>8} {'gradcheck s':>12} {'ratio':>6}")
    for name, f, args, modes in functions():
        for order in (1, 2):
            tj = best(lambda: jax_check_grads(f, args, order=order, modes=modes), a.repeat)
            tg = best(lambda: check_grads(f, args, order=order, modes=modes), a.repeat)
            print(f"{name:<20} {order:>5} {tj:>8.3f} {tg:>12.3f} {tg / tj:>6.1f}")
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((16, 32)), rng.standard_normal((32, 24))
    caught = {"jax": 0, "gradcheck": 0}
    seeds = range(0, 32 * 24, 37)
    for k in seeds:
        f = dense_moved(k)
        caught["jax"] += verdict(jax_check_grads, f, (x, w), ("rev",)) == "catches"
        caught["gradcheck"] += verdict(check_grads, f, (x, w), ("rev",)) == "catches"
    print(f"seeded bugs in the custom_vjp's w gradient: {len(seeds)}; jax catches "
          f"{caught['jax']}, gradcheck {caught['gradcheck']}")


if __name__ == "__main__":
    main()
