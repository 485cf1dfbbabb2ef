"""The layer `gradcheck new jax` starts from: y = tanh(x * a + b), written in jax.numpy."""
import jax.numpy as jnp


class Tanh:
    per_sample = True

    def init_params(self, input_shape, rng):
        return {"a": rng.standard_normal(input_shape[1:]), "b": rng.standard_normal(input_shape[1:])}

    def forward(self, x, params):
        return jnp.tanh(x * params["a"] + params["b"])
