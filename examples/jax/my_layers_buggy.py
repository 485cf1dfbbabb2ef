"""my_layers.py with a seeded bug: the custom_vjp rule's dx forgets the mean's path."""
import jax
import jax.numpy as jnp

EPS = 1e-5


@jax.custom_vjp
def layer_norm(x, gamma, beta):
    return _forward(x, gamma, beta)[0]


def _forward(x, gamma, beta):
    mu = x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / jnp.sqrt(x.var(axis=-1, keepdims=True) + EPS)
    xhat = (x - mu) * rstd
    return gamma * xhat + beta, (xhat, gamma, rstd)


def _backward(res, dy):
    xhat, gamma, rstd = res
    D = xhat.shape[-1]
    dxhat = dy * gamma
    dx = rstd / D * (D * dxhat - xhat * (dxhat * xhat).sum(-1, keepdims=True))   # BUG
    return dx, (dy * xhat).sum(0), dy.sum(0)


layer_norm.defvjp(_forward, _backward)


class LayerNorm:
    per_sample = True

    def init_params(self, input_shape, rng):
        d = input_shape[-1]
        return {"gamma": 1.0 + 0.1 * rng.standard_normal(d), "beta": 0.1 * rng.standard_normal(d)}

    def forward(self, x, params):
        return layer_norm(x, params["gamma"], params["beta"])
