"""Torch modules for forward mode, second order and tuple outputs (docs/torch.md).

    Swish         y = z sigmoid(z), z = x * weight: backward, jvp and double backward right
    SwishBadJvp   its jvp forgets a term: only the forward-mode rows (modes: [fwd]) fail
    SwishDetached its backward uses z detached: right at order 1, wrong at order 2 (gradgrad)
    TwoHeads      returns (swish(z), z^2); the backward of z^2 is wrong: rows `custom:out1` fail
"""
import torch


class SwishFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        ctx.save_for_forward(z)
        return z * torch.sigmoid(z)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        s = torch.sigmoid(z)                       # torch ops on z: the backward is differentiable
        return g * (s + z * s * (1 - s))

    @staticmethod
    def jvp(ctx, z_t):
        (z,) = ctx.saved_tensors
        s = torch.sigmoid(z)
        return z_t * (s + z * s * (1 - s))


class BadJvp(SwishFunction):
    @staticmethod
    def jvp(ctx, z_t):
        (z,) = ctx.saved_tensors
        return z_t * torch.sigmoid(z)              # bug: forgets z s (1 - s)


class Detached(SwishFunction):
    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        z = z.detach()                             # bug at order 2: the derivative in z is lost
        s = torch.sigmoid(z)
        return g * (s + z * s * (1 - s))


class SquareWrong(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z * z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return 3 * z * g                           # bug: d(z^2)/dz is 2 z


class Swish(torch.nn.Module):
    per_sample = True
    function = SwishFunction

    def __init__(self, features):
        super().__init__()
        self.weight = torch.nn.Parameter(1 + 0.1 * torch.randn(features))

    def forward(self, x):
        return self.function.apply(x * self.weight)


class SwishBadJvp(Swish):
    function = BadJvp


class SwishDetached(Swish):
    function = Detached


class TwoHeads(Swish):
    def forward(self, x):
        z = x * self.weight
        return SwishFunction.apply(z), SquareWrong.apply(z)
