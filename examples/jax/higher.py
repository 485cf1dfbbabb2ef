"""JAX layers for forward mode and second order (docs/jax.md).

    Swish         y = z sigmoid(z), z = x * w, a jax.custom_jvp rule: right
    SwishBadJvp   the custom_jvp rule forgets a term (jax derives reverse mode from it too)
    SinDetached   a custom_vjp whose bwd stops the gradient of its residual: right at order 1,
                  wrong at order 2
"""
import jax
import jax.numpy as jnp


def _swish_rule(forget):
    @jax.custom_jvp
    def swish(z):
        return z * jax.nn.sigmoid(z)

    @swish.defjvp
    def _jvp(primals, tangents):
        (z,), (t,) = primals, tangents
        s = jax.nn.sigmoid(z)
        return swish(z), t * (s if forget else s + z * s * (1 - s))

    return swish


def _sin_fwd(z):
    return jnp.sin(z), z


def _sin_bwd(z, g):
    return (g * jnp.cos(jax.lax.stop_gradient(z)),)    # bug at order 2 only


sin_detached = jax.custom_vjp(jnp.sin)
sin_detached.defvjp(_sin_fwd, _sin_bwd)


class Swish:
    per_sample = True
    rule = staticmethod(_swish_rule(forget=False))

    def init_params(self, input_shape, rng):
        return {"w": 1 + 0.1 * rng.standard_normal(input_shape[1:])}

    def forward(self, x, params):
        return self.rule(x * params["w"])


class SwishBadJvp(Swish):
    rule = staticmethod(_swish_rule(forget=True))


class SinDetached(Swish):
    rule = staticmethod(sin_detached)
