"""A user's 2-D convolution in plain numpy (loops), and copies with one seeded bug each.

x (N, C, H, W), W (O, C, k, k), b (O,); y[n,o,i,j] = sum_{c,p,q} W[o,c,p,q] xpad[n,c,s i+p,s j+q] + b[o].
"""
import numpy as np


class Conv2d:
    per_sample = True

    def __init__(self, out_channels=3, kernel=3, stride=1, padding=0):
        self.out_channels, self.k, self.s, self.pad = out_channels, kernel, stride, padding

    def init_params(self, input_shape, rng):
        c = input_shape[1]
        scale = 1.0 / np.sqrt(c * self.k * self.k)
        return {"W": scale * rng.standard_normal((self.out_channels, c, self.k, self.k)),
                "b": 0.1 * rng.standard_normal(self.out_channels)}

    def _padded(self, x):
        p = self.pad
        return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))

    def forward(self, x, params):
        W, b, s, k = params["W"], params["b"], self.s, self.k
        xp = self._padded(x)
        Ho, Wo = (xp.shape[2] - k) // s + 1, (xp.shape[3] - k) // s + 1
        y = np.zeros((x.shape[0], W.shape[0], Ho, Wo), dtype=x.dtype)
        for p in range(k):
            for q in range(k):
                patch = xp[:, :, p:p + s * Ho:s, q:q + s * Wo:s]
                y += np.einsum("nchw,oc->nohw", patch, W[:, :, p, q])
        return y + b[None, :, None, None]

    # hooks the buggy copies override
    def origin(self, i, j):
        return i * self.s, j * self.s

    def dx_kernel(self, W):
        return W

    def crop(self, dxp, H, Wd):
        p = self.pad
        return dxp[:, :, p:p + H, p:p + Wd]

    def backward(self, dy, x, params):
        W, k = params["W"], self.k
        xp = self._padded(x)
        dxp, dW = np.zeros_like(xp), np.zeros_like(W)
        K = self.dx_kernel(W)
        for i in range(dy.shape[2]):
            for j in range(dy.shape[3]):
                r, c = self.origin(i, j)
                g = dy[:, :, i, j]                                  # (N, O)
                dW += np.einsum("no,nckl->ockl", g, xp[:, :, r:r + k, c:c + k])
                dxp[:, :, r:r + k, c:c + k] += np.einsum("no,ockl->nckl", g, K)
        return {"x": self.crop(dxp, x.shape[2], x.shape[3]), "W": dW, "b": dy.sum(axis=(0, 2, 3))}


class ConvStrideIgnored(Conv2d):
    """Bug: the backward walks the windows with stride 1."""

    def origin(self, i, j):
        return i, j


class ConvKernelFlipped(Conv2d):
    """Bug: dL/dx spreads the kernel rotated by 180 degrees."""

    def dx_kernel(self, W):
        return W[:, :, ::-1, ::-1]


class ConvBorderRowDropped(Conv2d):
    """Bug: the crop of dL/dx_pad is one row short; the last row of dL/dx stays 0."""

    def crop(self, dxp, H, Wd):
        p = self.pad
        out = np.zeros((dxp.shape[0], dxp.shape[1], H, Wd), dtype=dxp.dtype)
        out[:, :, :H - 1] = dxp[:, :, p:p + H - 1, p:p + Wd]
        return out
