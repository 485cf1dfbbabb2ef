"""torch.autograd.gradcheck's checks besides the Jacobian comparison, naming the input at fault.

Each raises ``error(message, inputs)`` (the drop-in's GradcheckError class is passed in).
"""
from __future__ import annotations

import torch

from .compare import DIRECTIONS
from .jacobian import Problem


def _name(i: int, names: dict[int, str] | None) -> str:
    return (names or {}).get(i, f"inputs[{i}]")


def numerical_zero(p: Problem, h: float, nondet_tol: float, error, fast: bool = False) -> None:
    """No differentiable output: every central difference must be zero (torch's rule); in fast
    mode along DIRECTIONS seeded random directions per input, as torch's fast mode (one)."""
    cols = ((i, None, *p.directions(i, h, DIRECTIONS)[1:]) for i in p.pos) if fast else p.all_columns(h)
    for i, _, Fp, Fm in cols:
        if ((Fp - Fm).abs() > nondet_tol).any():
            raise error(f"Numerical gradient for function expected to be zero: the outputs do "
                        f"not require grad, yet they change with inputs[{i}]", [i])


def deterministic(p: Problem, error) -> None:
    """Entries passed as kinks: only a function that gives the same outputs twice has one-sided
    differences to trust (a random one makes every entry look like a kink)."""
    if not p.deterministic():
        raise error("the function is not deterministic: a second call at the same inputs gives "
                    "other outputs, so its central differences mean nothing (reseed its random "
                    "ops inside it, as torch's OpInfo samples do)", [])


def reentrant(p: Problem, nondet_tol: float, error, names) -> list:
    """Two runs of the backward with one cotangent agree within ``nondet_tol`` (torch's
    reentrancy check, on one cotangent: the comparison's first row when it was a plain backward,
    else a seeded random one). Returns the first run's gradients."""
    if p.first is not None:
        cot, g1 = p.first
    else:
        gen = torch.Generator().manual_seed(1)
        cot = [torch.randn(o.shape, generator=gen, dtype=o.dtype).to(o.device)
               for o in (p.out[j] for j in p.out_pos)]
        g1 = p.grads_once(cot)
    g2 = p.grads_once(cot)
    for i, a, b in zip(p.pos, g1, g2):
        if a is None or b is None or not a.numel():
            continue
        d = float((a - b).abs().max())
        if not d <= nondet_tol:
            raise error(f"Backward is not reentrant for {_name(i, names)}: two runs of the backward "
                        f"differ by {d:.3e} > nondet_tol {nondet_tol:g} (a nondeterministic "
                        f"backward needs nondet_tol)", [i])
    return g1


def grad_attributes(p: Problem, check_dtypes: bool, once: list, error, names) -> None:
    """Zero cotangents give zero gradients of the inputs' dtype, device and size (torch's
    "backward not multiplied by grad_output"); with ``check_dtypes`` the gradients of a random
    cotangent (``once``) have the inputs' dtype and device too."""
    outs = [p.out[j] for j in p.out_pos]
    zero = p.grads_once([torch.zeros_like(o) for o in outs])
    for i, g in zip(p.pos, zero):
        if g is None:
            continue
        x, nm = p.inputs[i], _name(i, names)
        if not g.eq(0).all():
            raise error(f"backward not multiplied by grad_output: {nm} gets a nonzero gradient "
                        f"(max |g| {float(g.abs().max()):.3e}) from zero output gradients", [i])
        for what, a, b in (("dtype", g.dtype, x.dtype), ("device", g.device, x.device),
                           ("size", g.shape, x.shape)):
            if a != b:
                raise error(f"grad is incorrect {what}: {nm} gets {a}, expected {b}", [i])
    if check_dtypes:
        for i, g in zip(p.pos, once):
            x = p.inputs[i]
            if g is not None and (g.dtype != x.dtype or g.device != x.device):
                raise error(f"Gradient has dtype mismatch: {_name(i, names)} gets {g.dtype} on "
                            f"{g.device}, expected {x.dtype} on {x.device}", [i])


def batched(p: Problem, rtol: float, atol: float, error, names) -> None:
    """check_batched_grad: the vmapped backward works and agrees with a loop over two rows."""
    like = p.f0.to(torch.float64)
    gen = torch.Generator().manual_seed(2)
    C = torch.randn(2, p.M, generator=gen, dtype=torch.float64).to(like.device)
    p.batched_backward = True
    got = p.vjp(C)
    if not p.batched_backward:
        raise error("batched gradient computation failed: the backward cannot be vmapped "
                    "(torch.autograd.grad(..., is_grads_batched=True) raised)", [])
    p.batched_backward = False
    ref = p.vjp(C)
    p.batched_backward = True
    for i in p.pos:
        if not torch.allclose(got[i], ref[i], rtol=rtol, atol=atol):
            raise error(f"batched gradient of {_name(i, names)} differs from the looped one", [i])


def undefined(p: Problem, error, names) -> None:
    """check_undefined_grad: undefined output gradients (all, then one at a time) give undefined
    or zero input gradients, as torch's ``_test_undefined_backward_mode``."""
    undef = torch._C._functions.UndefinedGrad()
    xs = [p.inputs[i] for i in p.pos]

    def run(which: set[int]) -> None:
        with torch.enable_grad():
            outs = [undef(p.out[j]) if k in which else p.out[j] for k, j in enumerate(p.out_pos)]
        try:
            grads = torch.autograd.grad(outs, xs, [torch.zeros_like(o) for o in outs],
                                        allow_unused=True, retain_graph=True)
        except RuntimeError as e:
            raise error("Expected backward function to handle undefined output grads "
                        f"(outputs {sorted(p.out_pos[k] for k in which)} undefined): {e}", []) from e
        for i, g in zip(p.pos, grads):
            if g is not None and not g.eq(0).all():
                raise error("Expected all input grads to be undefined or zero when all output "
                            f"grads are undefined or zero: {_name(i, names)} is not", [i])

    n = len(p.out_pos)
    run(set(range(n)))
    if n > 1:
        for k in range(n):
            run({k})
