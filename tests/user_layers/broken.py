"""User layers with mistakes the tool must report (exit 2), never crash on."""
import numpy as np


class Base:
    per_sample = True

    def init_params(self, input_shape, rng):
        return {"g": np.ones(input_shape[1:])}

    def forward(self, x, params):
        return x * params["g"]

    def backward(self, dy, x, params):
        return {"x": dy * params["g"], "g": (dy * x).sum(axis=0)}


class StrictOptions(Base):
    def __init__(self, slope=0.1):
        self.slope = slope


class ForwardRaises(Base):
    def forward(self, x, params):
        return helper(x, params["g"])


def helper(x, g):
    return x @ g.T[:2]          # wrong shapes: raises ValueError in numpy


class BackwardRaises(Base):
    def backward(self, dy, x, params):
        raise RuntimeError("not written yet")


class MissingKey(Base):
    def backward(self, dy, x, params):
        return {"x": dy * params["g"]}


class ExtraKey(Base):
    def backward(self, dy, x, params):
        return {**super().backward(dy, x, params), "G": np.zeros(3)}


class WrongShape(Base):
    def backward(self, dy, x, params):
        g = super().backward(dy, x, params)
        g["g"] = (dy * x)                          # forgot the sum over the batch
        return g


class WrongDtype(Base):
    def backward(self, dy, x, params):
        g = super().backward(dy, x, params)
        g["x"] = g["x"].astype(np.int64)
        return g


class HalfPrecision(Base):
    def backward(self, dy, x, params):
        g = super().backward(dy, x, params)
        g["x"] = g["x"].astype(np.float16)
        return g


class NanGradient(Base):
    def backward(self, dy, x, params):
        g = super().backward(dy, x, params)
        g["g"][1] = np.nan
        return g


class InfForward(Base):
    def forward(self, x, params):
        return x / 0.0


class NotADict(Base):
    def backward(self, dy, x, params):
        return dy * params["g"]


class ListOutput(Base):
    def forward(self, x, params):
        return (x * params["g"]).tolist()


class BadParams(Base):
    def init_params(self, input_shape, rng):
        return [np.ones(3)]


class IntParams(Base):
    def init_params(self, input_shape, rng):
        return {"g": np.ones(input_shape[1:], dtype=int)}


class NoBackward:
    def init_params(self, input_shape, rng):
        return {}

    def forward(self, x, params):
        return x


not_a_class = 3


class GlobalRandomInit(Base):
    def init_params(self, input_shape, rng):
        return {"g": np.random.standard_normal(input_shape[1:])}   # not from rng


class RandomForward(Base):
    def forward(self, x, params):
        return x * params["g"] * (np.random.random_sample(x.shape) > 0.5)   # a dropout mask


class ExitsInForward(Base):
    def forward(self, x, params):
        raise SystemExit(3)
