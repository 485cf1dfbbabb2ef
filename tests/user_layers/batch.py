"""User layers that mix samples, and a probe of the dtypes the analytic side receives."""
import numpy as np


class CenterBatch:
    """y = x - mean over the batch: sample n of y depends on every sample (not per-sample)."""

    def init_params(self, input_shape, rng):
        return {}

    def forward(self, x, params):
        return x - x.mean(axis=0)

    def backward(self, dy, x, params):
        return {"x": dy - dy.mean(axis=0)}


class CenterBatchClaimsPerSample(CenterBatch):
    per_sample = True            # wrong: lets the check fold copies into the batch axis


class DtypeProbe:
    """y = 2 x; backward refuses arrays whose dtype is not `expect`."""

    def __init__(self, expect="float32"):
        self.expect = np.dtype(expect)

    def init_params(self, input_shape, rng):
        return {"a": np.ones(input_shape[1:])}

    def forward(self, x, params):
        return 2 * x * params["a"]

    def backward(self, dy, x, params):
        got = {dy.dtype, x.dtype, params["a"].dtype}
        if got != {self.expect}:
            raise TypeError(f"expected {self.expect} arrays, got {sorted(map(str, got))}")
        return {"x": 2 * dy * params["a"], "a": (2 * dy * x).sum(axis=0)}
