"""my_modules.py with two seeded bugs: LayerNorm's dx forgets the mean's path, and
Conv3x3's weight gradient is flipped in both spatial axes (a correlation taken for a convolution)."""
import torch
import torch.nn.functional as F


class LayerNormFunction(torch.autograd.Function):
    """y = gamma * xhat + beta, xhat = (x - mean) / sqrt(var + eps) over the last axis."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps):
        mu = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, unbiased=False, keepdim=True)
        rstd = (var + eps).rsqrt()
        xhat = (x - mu) * rstd
        ctx.save_for_backward(xhat, gamma, rstd)
        return gamma * xhat + beta

    @staticmethod
    def backward(ctx, dy):
        xhat, gamma, rstd = ctx.saved_tensors
        D = xhat.shape[-1]
        dxhat = dy * gamma
        dx = rstd / D * (D * dxhat - xhat * (dxhat * xhat).sum(-1, keepdim=True))   # BUG
        dgamma = (dy * xhat).reshape(-1, D).sum(0)
        dbeta = dy.reshape(-1, D).sum(0)
        return dx, dgamma, dbeta, None


class LayerNorm(torch.nn.Module):
    per_sample = True      # each sample is normalized on its own

    def __init__(self, features, eps=1e-5):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(features))
        self.bias = torch.nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x):
        return LayerNormFunction.apply(x, self.weight, self.bias, self.eps)


class Conv2dFunction(torch.autograd.Function):
    """y = conv2d(x, weight, bias) with stride 1 and `padding`; the backward by torch.nn.grad."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        p = ctx.padding
        dx = torch.nn.grad.conv2d_input(x.shape, weight, dy, padding=p)
        dw = torch.nn.grad.conv2d_weight(x, weight.shape, dy, padding=p).flip(2, 3)   # BUG
        return dx, dw, dy.sum((0, 2, 3)), None


class Conv3x3(torch.nn.Module):
    per_sample = True

    def __init__(self, in_channels, out_channels, padding=1):
        super().__init__()
        conv = torch.nn.Conv2d(in_channels, out_channels, 3, padding=padding)   # its initialisation
        self.weight, self.bias, self.padding = conv.weight, conv.bias, padding

    def forward(self, x):
        return Conv2dFunction.apply(x, self.weight, self.bias, self.padding)
