"""A user layer that declares its structure and its kinks (the optional members), and wrong ones.

    z_i = x_i + 0.5 x_{i+1}   (z_{D-1} = x_{D-1}),   y_i = w_i relu(z_i)

Output i reads x_i, x_{i+1} and w_i; x_j reaches z_j (coefficient 1) and z_{j-1} (0.5), so it
is |z_j| / 1 or |z_{j-1}| / 0.5 away from a kink, whichever is nearer.
"""
import numpy as np


class Pairs:
    per_sample = True

    def init_params(self, input_shape, rng):
        return {"w": rng.standard_normal(input_shape[1])}

    def _z(self, x):
        z = x.copy()
        z[:, :-1] += 0.5 * x[:, 1:]
        return z

    def forward(self, x, params):
        return params["w"] * np.maximum(self._z(x), 0.0)

    def backward(self, dy, x, params):
        z = self._z(x)
        dz = dy * params["w"] * (z > 0)
        dx = dz.copy()
        dx[:, 1:] += 0.5 * dz[:, :-1]
        return {"x": dx, "w": (dy * np.maximum(z, 0.0)).sum(axis=0)}


class StructuredPairs(Pairs):
    def structure(self, input_shape, name):
        D = input_shape[1]
        if name == "w":
            return np.eye(D, dtype=bool)
        return np.eye(D, dtype=bool) | np.eye(D, k=1, dtype=bool)    # y_i <- x_i, x_{i+1}

    def kink_distance(self, x, params):
        z = np.abs(self._z(x))
        d = z.copy()
        d[:, 1:] = np.minimum(d[:, 1:], z[:, :-1] / 0.5)
        return d


class SparseStructuredPairs(StructuredPairs):
    def structure(self, input_shape, name):
        from scipy import sparse

        return sparse.coo_matrix(super().structure(input_shape, name))


class TooSmallStructure(StructuredPairs):
    """Declares y_i <- x_i only: wrong (y_i also reads x_{i+1})."""

    def structure(self, input_shape, name):
        return np.eye(input_shape[1], dtype=bool)


class StructureList(Pairs):
    def structure(self, input_shape, name):
        return [[True]]


class StructureWrongShape(Pairs):
    def structure(self, input_shape, name):
        return np.ones((input_shape[1], input_shape[1] + 1), dtype=bool)


class StructureFloat(Pairs):
    def structure(self, input_shape, name):
        return np.ones((input_shape[1], input_shape[1]))


class StructureRaises(Pairs):
    def structure(self, input_shape, name):
        raise KeyError(name)


class KinkWrongShape(Pairs):
    def kink_distance(self, x, params):
        return np.abs(x[:, :-1])


class KinkNaN(Pairs):
    def kink_distance(self, x, params):
        return np.full(x.shape, np.nan)


class KinkList(Pairs):
    def kink_distance(self, x, params):
        return [1.0]
