"""ABC-Net's binarisation (seed 000): the M binary bases of W and their least-squares alphas.

    B_m = sign(W - mean(W) + u_m std(W)),   u_m = -1 + (m - 1) * 2 / (M - 1)   (u_1 = 0 when M = 1)
    alpha = argmin ||vec(W) - B alpha||^2   (minimum-norm when B^T B is singular)

The layer and its backward rules, which use these, are in abc.py.
"""
from __future__ import annotations

import dataclasses

import numpy as np

STDS = ("population", "sample", "seed")


def shifts(M: int) -> np.ndarray:
    """u_m = -1 + (m - 1) * 2 / (M - 1) for m = 1..M; u_1 = 0 when M = 1."""
    if M == 1:
        return np.zeros(1)
    return -1.0 + np.arange(M) * 2.0 / (M - 1)


def mean_std(w: np.ndarray, std: str = "population") -> tuple[np.ndarray, np.ndarray]:
    """mean and std of the last axis of ``w`` (``std`` one of STDS)."""
    n = w.shape[-1]
    mu = w.mean(axis=-1)
    ss = ((w - mu[..., None]) ** 2).sum(axis=-1)
    if std == "population":
        return mu, np.sqrt(ss / n)
    if std == "sample":
        return mu, np.sqrt(ss / (n - 1))
    if std == "seed":
        return mu, ss / n
    raise ValueError(f"unknown std {std!r}")


def dstd(w: np.ndarray, std: str = "population") -> np.ndarray:
    """d std / d w for a flat ``w`` (zero where std = 0, where std has a kink)."""
    n = w.size
    mu, s = mean_std(w, std)
    d = w - mu
    if std == "seed":
        return 2.0 * d / n
    if s == 0:
        return np.zeros_like(w)
    return d / ((n if std == "population" else n - 1) * s)


def sign(z: np.ndarray) -> np.ndarray:
    """sign with sign(0) = +1, as the bases need two values."""
    return np.where(z >= 0, 1.0, -1.0)


def bases(w: np.ndarray, M: int, std: str = "population") -> np.ndarray:
    """B for flat weights ``w`` (..., n): shape (..., n, M), B[:, m] = sign(w - mean + u_m std)."""
    mu, s = mean_std(w, std)
    z = w[..., :, None] - mu[..., None, None] + shifts(M) * s[..., None, None]
    return sign(z)


def ols(B: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """alpha = argmin ||w - B alpha||, P = B^+ (M x n) and rank(B).

    The pseudo-inverse (SVD) gives the minimum-norm least-squares solution, so a singular
    B^T B (rank < M) is solved, not divided by; the caller reports it through the rank.
    """
    P = np.linalg.pinv(B)
    return P @ w, P, int(np.linalg.matrix_rank(B))


@dataclasses.dataclass(frozen=True)
class Binarized:
    """Everything the forward and the rules need at one value of W (arrays in W's shape)."""

    W: np.ndarray
    std_kind: str
    mu: float
    sigma: float
    u: np.ndarray           # (M,)
    B: np.ndarray           # (M, *W.shape), entries +-1
    P: np.ndarray           # (M, *W.shape): rows of (B^T B)^+ B^T
    alpha: np.ndarray       # (M,)
    rank: int
    dsigma: np.ndarray      # d std / dW, W's shape

    @property
    def M(self) -> int:
        return len(self.alpha)

    @property
    def n(self) -> int:
        return self.W.size

    @property
    def singular(self) -> bool:
        """B^T B is singular: the alphas are the minimum-norm least-squares solution."""
        return self.rank < self.M

    @property
    def W_hat(self) -> np.ndarray:
        """sum_m alpha_m B_m, the weight the convolution sees."""
        return np.tensordot(self.alpha, self.B, axes=1)

    def singular_note(self) -> str:
        if not self.singular:
            return ""
        return (f"B^T B is singular (rank {self.rank} < M = {self.M}): alphas are the minimum-norm "
                "least-squares solution")


def binarize(W: np.ndarray, M: int, std: str = "population") -> Binarized:
    """Bases, OLS alphas and their derivative P at the weights W (any shape)."""
    W = np.asarray(W, dtype=np.float64)
    w = W.reshape(-1)
    B = bases(w, M, std)                                   # (n, M)
    alpha, P, rank = ols(B, w)
    mu, s = mean_std(w, std)
    return Binarized(W, std, float(mu), float(s), shifts(M), B.T.reshape(M, *W.shape),
                     P.reshape(M, *W.shape), alpha, rank, dstd(w, std).reshape(W.shape))


def real_weights(V: np.ndarray, M: int, std: str) -> np.ndarray:
    """W_hat for K stacked weight values V (K, *shape), by the real binarisation of each."""
    K = V.shape[0]
    w = V.reshape(K, -1)
    B = bases(w, M, std)                                   # (K, n, M)
    alpha = np.einsum("kmn,kn->km", np.linalg.pinv(B), w)
    return np.einsum("knm,km->kn", B, alpha).reshape(V.shape)
