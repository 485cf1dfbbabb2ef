"""The example layer with a copy-paste bug: the backward of a plain ReLU.

Check it:  gradcheck run examples/leaky-buggy.yaml   (exit code 1, worst entry where x < 0)
"""
import numpy as np


class LeakyReLU:
    per_sample = True

    def __init__(self, slope=0.01):
        self.slope = float(slope)

    def init_params(self, input_shape, rng):
        return {}

    def forward(self, x, params):
        return np.where(x > 0, x, self.slope * x)

    def backward(self, dy, x, params):
        return {"x": dy * (x > 0)}            # bug: the slope is missing for x <= 0
