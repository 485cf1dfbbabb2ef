"""check_forward_ad for the torch drop-in: forward-mode Jacobian columns against central differences.

The analytic side is ``J e_j`` for every entry j of each checked input (its tangent ``e_j``, the
other checked inputs' tangents zero, as torch's slow mode sets them), taken by
``torch.func.jvp`` batched with ``torch.func.vmap`` over a chunk of tangents, or one
``torch.autograd.forward_ad`` dual call per tangent where vmap cannot batch the function (a
custom autograd.Function of the old style, random ops). The columns, projected on the plan's
cotangents C, form the same ``C J`` the backward check computes, so compare.py judges them
against the same central differences with the same verdict rule, fast mode and budget.
"""
from __future__ import annotations

from typing import Callable

import torch

from .checks import numerical_zero
from .compare import compare, plan
from .jacobian import OUT_BUDGET, Problem, as_tuple, differentiable, real
from .message import table


def _name(i: int, names: dict[int, str] | None) -> str:
    return (names or {}).get(i, f"inputs[{i}]")


def _as_input(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A real-layout vector ``t`` as a tangent shaped like ``x`` (complex ``x``: a complex one)."""
    t = t.reshape(real(x).shape)
    return torch.view_as_complex(t.contiguous()) if x.is_complex() else t


class Forward:
    """Tangent outputs of ``p.func`` at ``p.inputs``, flat and real like ``Problem.flat``."""

    def __init__(self, p: Problem, check_dtypes: bool, error) -> None:
        self.p, self.check_dtypes, self.error = p, check_dtypes, error
        self.vmap_ok = {i: True for i in p.pos}

    def _flat(self, primals: list, tangents: list) -> torch.Tensor:
        parts = []
        for j, v, t in zip(self.p.out_pos, primals, tangents):
            if t is None:
                t = torch.zeros_like(v)
            if self.check_dtypes and v.is_complex() != t.is_complex():
                raise self.error(f"Forward AD gradient has dtype mismatch: output[{j}] is "
                                 f"{v.dtype}, its tangent {t.dtype}", [])
            parts.append(real(t).reshape(-1))
        return torch.cat([q.to(self.p.f0.dtype) for q in parts])

    def dual(self, i: int, t: torch.Tensor, shaped: bool = False) -> torch.Tensor:
        """(M,) tangent output for the real-layout tangent ``t`` of input i (``shaped``: ``t``
        is already shaped like the input): one call on ``torch.autograd.forward_ad`` dual
        tensors (any function forward AD supports)."""
        fwAD = torch.autograd.forward_ad
        p = self.p
        with fwAD.dual_level():
            args = list(p.inputs)
            for k in p.pos:
                x = p.inputs[k].detach()
                tk = (t if shaped else _as_input(x, t)) if k == i else torch.zeros_like(x)
                args[k] = fwAD.make_dual(x, tk)
            outs = as_tuple(p.func(*args))
            pairs = [fwAD.unpack_dual(outs[j]) for j in p.out_pos]
            return self._flat([q.primal for q in pairs], [q.tangent for q in pairs])

    def _functional(self, i: int, t: torch.Tensor) -> torch.Tensor:
        p = self.p
        prim = [p.inputs[k].detach() for k in p.pos]
        tans = [_as_input(x, t) if k == i else torch.zeros_like(x) for k, x in zip(p.pos, prim)]

        def f(*xs):
            args = list(p.inputs)
            for k, x in zip(p.pos, xs):
                args[k] = x
            outs = as_tuple(p.func(*args))
            return tuple(outs[j] for j in p.out_pos)

        vals, tangents = torch.func.jvp(f, tuple(prim), tuple(tans))
        return self._flat(list(vals), list(tangents))

    def tangents(self, i: int, T: torch.Tensor) -> torch.Tensor:
        """(B, M) tangent outputs for the rows of ``T`` (B, n_i): vmapped where it can be."""
        if self.vmap_ok[i] and len(T) > 1:
            try:
                with torch.no_grad():
                    return torch.func.vmap(lambda t: self._functional(i, t))(T)
            except Exception:       # noqa: BLE001 -- any failure to batch: the loop below
                self.vmap_ok[i] = False
        with torch.no_grad():
            return torch.stack([self.dual(i, t) for t in T])

    def analytic(self, pl) -> dict[int, torch.Tensor]:
        """``C J`` (K, n_i) for every checked input, from forward-mode columns in chunks."""
        p, A = self.p, {}
        for i in p.pos:
            n, x = p.n(i), real(p.inputs[i])
            per = max(1, min(n, OUT_BUDGET // max(1, p.M, n), 4096))
            cols = []
            for a in range(0, n, per):
                idx = torch.arange(a, min(n, a + per), device=x.device)
                T = torch.zeros(len(idx), n, dtype=x.dtype, device=x.device)
                T[torch.arange(len(idx), device=x.device), idx] = 1
                Y = self.tangents(i, T).to(torch.float64)
                cols.append(Y.T if pl.identity else pl.C.to(torch.float64) @ Y.T)
            A[i] = torch.cat(cols, dim=1) if cols else torch.zeros(pl.K, 0, dtype=torch.float64)
        return A


def check(func: Callable, inputs: tuple, eps: float, atol: float, rtol: float,
          check_undefined_grad: bool, check_grad_dtypes: bool, check_batched: bool,
          fast_mode: bool, label: str, names: dict[int, str] | None, error) -> bool:
    """torch's check_forward_ad: the forward-mode Jacobian entry by entry (the plan of the
    backward check), then undefined tangents and, with ``check_batched``, the vmapped jvp."""
    with torch.enable_grad():
        out = func(*inputs)
    if not differentiable(out):
        floats = [j for j, o in enumerate(as_tuple(out)) if isinstance(o, torch.Tensor)
                  and (o.is_floating_point() or o.is_complex())]
        numerical_zero(Problem(func, inputs, out, floats), eps, 0.0, error)
        return True
    p = Problem(func, inputs, out)
    pl = plan(p, fast_mode)
    fw = Forward(p, check_grad_dtypes, error)
    A = fw.analytic(pl)
    pairs = compare(p, pl, A, eps, rtol, atol)
    if any(b.failed for b in pairs):
        raise error(table(p, pl, pairs, as_tuple(out), label, eps, rtol, atol, names),
                    sorted({b.input for b in pairs if b.failed}))
    if check_undefined_grad:
        undefined(p, error, names)
    if check_batched:
        batched(fw, error, names)
    return True


def undefined(p: Problem, error, names) -> None:
    """An input without a tangent gives the tangent outputs of a zero tangent (torch's
    ``_test_undefined_forward_mode``; the other inputs get seeded random tangents)."""
    fwAD = torch.autograd.forward_ad
    gen = torch.Generator().manual_seed(4)
    U = {k: torch.randn(p.n(k), generator=gen, dtype=real(p.inputs[k]).dtype)
         .to(p.inputs[k].device) for k in p.pos}
    with fwAD.dual_level():
        duals = {k: fwAD.make_dual(p.inputs[k].detach(), _as_input(p.inputs[k], U[k]))
                 for k in p.pos}
        for i in p.pos:
            got = []
            for x in (fwAD.make_dual(p.inputs[i].detach(), torch.zeros_like(p.inputs[i])),
                      p.inputs[i].detach()):
                args = [duals.get(k, v) for k, v in enumerate(p.inputs)]
                args[i] = x
                outs = as_tuple(p.func(*args))
                got.append([fwAD.unpack_dual(outs[j]).tangent for j in p.out_pos])
            for j, a, b in zip(p.out_pos, *got):
                if a is not None and b is not None and not torch.allclose(a, b):
                    raise error(f"Mismatch in tangent values for output[{j}] when {_name(i, names)} "
                                f"has an undefined tangent: it differs from a zero tangent "
                                f"(max |diff| {float((a - b).abs().max()):.3e})", [i])


def batched(fw: Forward, error, names) -> None:
    """check_batched_forward_grad: the jvp vmapped over two seeded random tangents works and
    agrees with a loop (torch's ``_test_batched_grad_forward_ad``, with its vmap)."""
    try:
        from torch._vmap_internals import _vmap as vmap      # what torch's own check batches with
    except ImportError:         # pragma: no cover -- a torch without the legacy vmap
        vmap = torch.func.vmap
    p = fw.p
    gen = torch.Generator().manual_seed(5)
    for i in p.pos:
        x = p.inputs[i]
        T = torch.randn(2, *x.shape, generator=gen, dtype=x.dtype).to(x.device)
        ref = torch.stack([fw.dual(i, t, True) for t in T])
        try:
            got = vmap(lambda t: fw.dual(i, t, True))(T)
        except RuntimeError as e:
            raise error(f"batched forward-mode gradient of {_name(i, names)} failed: the jvp "
                        f"cannot be vmapped ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                        [i]) from e
        if not torch.allclose(got, ref):
            raise error(f"batched forward-mode gradient of {_name(i, names)} differs from the "
                        f"looped one (max |diff| {float((got - ref).abs().max()):.3e})", [i])
