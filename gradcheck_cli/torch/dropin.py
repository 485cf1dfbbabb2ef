"""Drop-ins for ``torch.autograd.gradcheck`` and ``gradgradcheck`` (docs/dropin.md).

Same signatures, defaults and meanings (``masked=True`` refused); the comparison is entry by
entry (every Jacobian entry within the budget, else J^T c for seeded random cotangents, always
against every input entry), both sides batched (jacobian.py), and a failure names the wrong
inputs in a table (message.py). Forward mode (check_forward_ad, check_fwd_over_rev): forward.py.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.autograd.gradcheck import GradcheckError as _TorchGradcheckError

from . import checks, coloured, forward
from .compare import compare, plan
from .jacobian import Problem, as_tuple, checked_inputs, differentiable
from .message import table

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError", "REFUSED"]

# keyword -> the values it cannot honour (anything else is taken with torch's meaning)
REFUSED = {"masked": True}


class GradcheckError(_TorchGradcheckError):
    """A gradient check failed. ``inputs``: positions (in ``inputs``) of the inputs whose
    gradients are wrong, as a list (empty when the failure names none)."""

    def __init__(self, message: str, inputs: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.inputs = list(inputs)


def _refuse(fn: str, given: dict[str, Any]) -> None:
    bad = [f"{k}={v!r}" for k, v in given.items() if k in REFUSED and v == REFUSED[k] and v is not None]
    if bad:
        raise NotImplementedError(
            f"gradcheck_cli.torch.{fn} cannot honour {', '.join(bad)} (docs/dropin.md lists what it "
            f"refuses): call torch.autograd.{fn} for that check")


def gradcheck(func: Callable[..., Any], inputs: Any, *, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True, nondet_tol: float = 0.0,
              check_undefined_grad: bool = True, check_grad_dtypes: bool = False,
              check_batched_grad: bool = False, check_batched_forward_grad: bool = False,
              check_forward_ad: bool = False, check_backward_ad: bool = True,
              fast_mode: bool = False, masked: bool | None = None) -> bool:
    """``torch.autograd.gradcheck`` with the same arguments: True when the analytic gradients of
    ``func`` at ``inputs`` (the tensors that require grad, floating or complex) match central
    differences; else raises :class:`GradcheckError` (or returns False with
    ``raise_exception=False``). ``fast_mode=True`` compares random cotangent projections instead
    of every Jacobian entry (still entry by entry on the input side). ``check_forward_ad=True``
    checks the forward-mode Jacobian (jvp columns) against the same central differences
    (forward.py); with ``check_backward_ad=False`` that check runs alone."""
    _refuse("gradcheck", dict(masked=masked))
    _require(check_forward_ad, check_backward_ad, "check_forward_ad", "check_backward_ad",
             check_batched_grad, check_batched_forward_grad)
    try:
        return _both(func, as_tuple(inputs), eps, atol, rtol, nondet_tol, check_undefined_grad,
                     check_grad_dtypes, check_batched_grad, check_batched_forward_grad,
                     check_forward_ad, check_backward_ad, fast_mode, "gradcheck", None)
    except _TorchGradcheckError:
        if raise_exception:
            raise
        return False


def _require(fwd: bool, bwd: bool, fwd_name: str, bwd_name: str, batched: bool,
             batched_fwd: bool) -> None:
    """torch's consistency checks of the mode keywords (the same AssertionErrors)."""
    if not (fwd or bwd):
        raise AssertionError(f"Expected at least one of {fwd_name} or {bwd_name} to be True")
    if batched and not bwd:
        raise AssertionError(f"Setting check_batched_grad=True requires {bwd_name} to be True")
    if batched_fwd and not fwd:
        raise AssertionError(f"Setting check_batched_forward_grad=True requires {fwd_name} to be True")


def _both(func, inputs: tuple, eps, atol, rtol, nondet_tol, check_undefined_grad,
          check_grad_dtypes, check_batched_grad, check_batched_forward_grad, fwd, bwd,
          fast_mode, label, names, pure=None) -> bool:
    """The backward check (torch's default), then the forward-mode one (forward.py)."""
    if not checked_inputs(inputs):
        raise ValueError("gradcheck expects at least one input tensor to require gradient, "
                         "but none of them have requires_grad=True.")
    if bwd:
        _gradcheck(func, inputs, eps, atol, rtol, nondet_tol, check_undefined_grad,
                   check_grad_dtypes, check_batched_grad, fast_mode, label, names, pure)
    if fwd:
        forward.check(func, inputs, eps, atol, rtol, check_undefined_grad, check_grad_dtypes,
                      check_batched_forward_grad, fast_mode, f"{label} (forward AD)", names,
                      GradcheckError, pure)
    return True


def _gradcheck(func, inputs: tuple, eps, atol, rtol, nondet_tol, check_undefined_grad,
               check_grad_dtypes, check_batched_grad, fast_mode, label, names, pure=None) -> bool:
    with torch.enable_grad():
        out = func(*inputs)
    outs = as_tuple(out)
    if not differentiable(out):
        floats = [j for j, o in enumerate(outs) if isinstance(o, torch.Tensor)
                  and (o.is_floating_point() or o.is_complex())]
        checks.numerical_zero(Problem(func, inputs, out, floats, pure), eps, nondet_tol, GradcheckError,
                              fast_mode)
        return True
    p = Problem(func, inputs, out, pure=pure)
    if not fast_mode and coloured.agree(p, eps, rtol, atol):
        once = checks.reentrant(p, nondet_tol, GradcheckError, names)
    else:        # fast mode, small Jacobians, and every coloured failure: the dense comparison
        pl = plan(p, fast_mode)
        like = p.f0.to(torch.float64)
        A = p.analytic(pl.K, lambda a, b: pl.rows(a, b, like))
        once = checks.reentrant(p, nondet_tol, GradcheckError, names)
        pairs = compare(p, pl, A, eps, rtol, atol)
        if any(b.kinks for b in pairs):
            checks.deterministic(p, GradcheckError)
        if any(b.failed for b in pairs):
            raise GradcheckError(table(p, pl, pairs, outs, label, eps, rtol, atol, names),
                                 sorted({b.input for b in pairs if b.failed}))
    checks.grad_attributes(p, check_grad_dtypes, once, GradcheckError, names)
    if check_batched_grad:
        checks.batched(p, rtol, atol, GradcheckError, names)
    if check_undefined_grad:
        checks.undefined(p, GradcheckError, names)
    return True


def gradgradcheck(func: Callable[..., Any], inputs: Any, grad_outputs: Any = None, *,
                  eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                  gen_non_contig_grad_outputs: bool = False, raise_exception: bool = True,
                  nondet_tol: float = 0.0, check_undefined_grad: bool = True,
                  check_grad_dtypes: bool = False, check_batched_grad: bool = False,
                  check_fwd_over_rev: bool = False, check_rev_over_rev: bool = True,
                  fast_mode: bool = False, masked: bool = False) -> bool:
    """``torch.autograd.gradgradcheck`` with the same arguments: the drop-in gradcheck of the
    map (inputs, grad_outputs) -> the input gradients (torch's construction); random
    ``grad_outputs`` as torch draws them when None. Failing rows name ``inputs[i]`` or
    ``grad_outputs[k]``; ``GradcheckError.inputs`` counts positions in inputs + grad_outputs.
    ``check_fwd_over_rev=True`` checks that map's forward-mode Jacobian too (forward over reverse)."""
    _refuse("gradgradcheck", dict(masked=masked))
    _require(check_fwd_over_rev, check_rev_over_rev, "check_fwd_over_rev", "check_rev_over_rev",
             check_batched_grad, False)
    if check_undefined_grad and not check_rev_over_rev:
        raise AssertionError("Setting check_undefined_grad=True requires check_rev_over_rev to be True")
    ins = as_tuple(inputs)
    if grad_outputs is None:
        with torch.enable_grad():
            outs = [o for o in as_tuple(func(*ins)) if isinstance(o, torch.Tensor) and o.requires_grad]
        gos = tuple(torch.testing.make_tensor(
            o.shape, dtype=o.dtype if o.is_floating_point() or o.is_complex() else torch.double,
            device=o.device, low=-1, high=1, requires_grad=True,
            noncontiguous=gen_non_contig_grad_outputs) for o in outs)
    else:
        gos = as_tuple(grad_outputs)
    n_in = len(ins)
    diff_in = {i for i, x in enumerate(ins) if isinstance(x, torch.Tensor) and x.requires_grad}
    diff_go = {k for k, g in enumerate(gos) if g.requires_grad}

    seen: dict = {}           # new_func's first call: the outputs it differentiates, live grads

    def new_func(*args):
        with torch.enable_grad():
            xs = tuple(_leaf(x) if i in diff_in else x for i, x in enumerate(args[:n_in]))
            every = as_tuple(func(*xs))
            keep = [k for k, o in enumerate(every) if isinstance(o, torch.Tensor) and o.requires_grad]
            gs = tuple(_leaf(g) if k in diff_go else g for k, g in enumerate(args[n_in:]))
            grads = torch.autograd.grad([every[k] for k in keep], [xs[i] for i in sorted(diff_in)], gs,
                                        create_graph=True, allow_unused=True)
        seen.setdefault("keep", keep)
        seen.setdefault("live", [t for t, g in enumerate(grads) if g is not None])
        return tuple(g for g in grads if g is not None)

    names = {n_in + k: f"grad_outputs[{k}]" for k in range(len(gos))}
    pure = _functional(func, n_in, sorted(diff_in), seen)
    try:
        return _both(new_func, ins + gos, eps, atol, rtol, nondet_tol, check_undefined_grad,
                     check_grad_dtypes, check_batched_grad, False, check_fwd_over_rev,
                     check_rev_over_rev, fast_mode, "gradgradcheck", names, pure)
    except _TorchGradcheckError:
        if raise_exception:
            raise
        return False


def _functional(func, n_in: int, diff: list[int], seen: dict):
    """new_func's values through ``torch.func.vjp``, which vmap can batch (autograd.grad
    cannot): the numerical side's perturbed evaluations then run as one vmapped call. The same
    outputs as new_func, whose first call (before any perturbation) recorded in ``seen`` which
    outputs it differentiates and which gradients are not None."""
    def pure(*args):
        xs, gs = list(args[:n_in]), args[n_in:]
        keep = seen["keep"]

        def f(*d):
            full = list(xs)
            for i, v in zip(diff, d):
                full[i] = v
            o = as_tuple(func(*full))
            return tuple(o[k] for k in keep)
        _, vjp = torch.func.vjp(f, *[xs[i] for i in diff])
        grads = vjp(tuple(gs))
        return tuple(grads[t] for t in seen["live"])
    return pure


def _leaf(x: torch.Tensor) -> torch.Tensor:
    """``x`` as it is when it already requires grad (the caller's leaf), else made to."""
    return x if x.requires_grad else x.requires_grad_()
