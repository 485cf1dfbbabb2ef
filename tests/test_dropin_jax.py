"""gradcheck_cli.jax.check_grads as a drop-in for jax.test_util.check_grads."""
from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the jax drop-in needs JAX")
jax.config.update("jax_enable_x64", True)    # as the type: jax layers do, for the whole process
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads as jax_check_grads  # noqa: E402

from gradcheck_cli.jax import check_grads  # noqa: E402

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.standard_normal((3, 4)))
W = jnp.asarray(RNG.standard_normal((4, 2)))
B = jnp.asarray(RNG.standard_normal(2))


@jax.custom_jvp
def softplus(x):
    return jnp.logaddexp(x, 0.0)


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return softplus(x), jax.nn.sigmoid(x) * t


def make_scaled_sin(scale_y: float):
    """custom_vjp sin(x) * y whose rule for y is scaled by ``scale_y`` (1.0 = correct)."""

    @jax.custom_vjp
    def f(x, y):
        return jnp.sin(x) * y

    def fwd(x, y):
        return f(x, y), (x, y)

    def bwd(res, c):
        x, y = res
        return jnp.cos(x) * y * c, jnp.sin(x) * c * scale_y

    f.defvjp(fwd, bwd)
    return f


def make_bad_jvp():
    @jax.custom_jvp
    def cube(x):
        return x ** 3

    @cube.defjvp
    def _jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return cube(x), 3.0 * x ** 2 * t * 1.01

    return cube


CASES = {
    "dense": (lambda x, p: jnp.tanh(x @ p["w"] + p["b"]), (X, {"w": W, "b": B}), ("fwd", "rev")),
    "reductions": (lambda x: (jnp.exp(x).sum(1), jnp.linalg.norm(x)), (X,), ("fwd", "rev")),
    "custom_jvp": (lambda x: softplus(x) * 2.0, (X,), ("fwd", "rev")),
    "custom_vjp": (make_scaled_sin(1.0), (X, X + 1.0), ("rev",)),     # custom_vjp: rev only
}


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("name", list(CASES))
def test_passes_where_jax_passes(name, order):
    f, args, modes = CASES[name]
    jax_check_grads(f, args, order=order, modes=modes)
    check_grads(f, args, order=order, modes=modes)


def test_a_wrong_custom_vjp_names_the_argument():
    f = make_scaled_sin(1.01)
    with pytest.raises(AssertionError):
        jax_check_grads(f, (X, X + 1.0), order=1, modes=["rev"])
    with pytest.raises(AssertionError) as info:
        check_grads(f, (X, X + 1.0), order=1, modes=["rev"])
    msg = str(info.value)
    assert msg.splitlines()[0] == "check_grads: f (rev) mismatch for args[1]"
    assert "args[0]" not in msg and "analytic" in msg and "numerical" in msg


def test_a_wrong_custom_jvp_names_the_pytree_path():
    cube = make_bad_jvp()
    f = lambda p: cube(p["a"]) + p["b"]       # noqa: E731
    args = ({"a": X, "b": X},)
    with pytest.raises(AssertionError):
        jax_check_grads(f, args, order=1, modes=["fwd"])
    with pytest.raises(AssertionError, match=r"mismatch for args\[0\]\['a'\]"):
        check_grads(f, args, order=1, modes=["fwd"])


def test_a_wrong_second_derivative_is_caught_at_order_2_only():
    @jax.custom_jvp
    def sq(x):
        return x ** 2

    @sq.defjvp
    def _jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return sq(x), 2.0 * jax.lax.stop_gradient(x) * t     # right first, wrong second derivative

    check_grads(sq, (X,), order=1)
    with pytest.raises(AssertionError, match="JVP of sq"):
        check_grads(sq, (X,), order=2, modes=["fwd"])


def test_orders_and_modes_it_cannot_take_are_refused():
    with pytest.raises(NotImplementedError, match="order=3"):
        check_grads(jnp.sin, (X,), order=3)
    with pytest.raises(NotImplementedError, match="lin"):
        check_grads(jnp.sin, (X,), order=1, modes=["lin"])
