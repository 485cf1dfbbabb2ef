"""A user's elementwise activations, and a seeded bug."""
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
        return {"x": dy * np.where(x > 0, 1.0, self.slope).astype(x.dtype)}


class Sigmoid:
    per_sample = True

    def init_params(self, input_shape, rng):
        return {}

    def forward(self, x, params):
        return 1.0 / (1.0 + np.exp(-x))

    def backward(self, dy, x, params):
        y = self.forward(x, params)
        return {"x": dy * y * (1 - y)}


class SigmoidDerivOnInput(Sigmoid):
    def backward(self, dy, x, params):
        return {"x": dy * x * (1 - x)}  # bug: sigma' = y (1 - y) evaluated on x instead of y


class Log:
    """y = log x: defined for x > 0 only (here it follows a sigmoid)."""

    per_sample = True

    def init_params(self, input_shape, rng):
        return {}

    def forward(self, x, params):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(x)

    def backward(self, dy, x, params):
        return {"x": dy / x}
