"""The layer of `gradcheck new custom`: a user layer (leaky ReLU) in plain numpy, to copy from.

Copy it to your own file and name that in the case: impl: my_layers.py:LeakyReLU
"""
import numpy as np


class LeakyReLU:
    """y = x for x > 0, slope * x otherwise."""

    per_sample = True          # sample n of y depends only on sample n of x (speeds the check up)

    def __init__(self, slope=0.01):          # the case's `options` arrive as keyword arguments
        self.slope = float(slope)

    def init_params(self, input_shape, rng):  # no parameters; return {"W": ..., ...} if you have some
        return {}

    def forward(self, x, params):
        return np.where(x > 0, x, self.slope * x)

    def backward(self, dy, x, params):        # "x" and one entry per parameter
        return {"x": dy * np.where(x > 0, 1.0, self.slope).astype(x.dtype)}
