"""check_forward_ad for the torch drop-in: forward-mode Jacobian columns against central differences.

The analytic side is ``J e_j`` for every entry j of each checked input (the other checked inputs
duals with zero tangents, as torch's slow mode sets them), by ``torch.func.jvp`` batched with
``torch.func.vmap`` over a chunk of tangents, or one ``torch.autograd.forward_ad`` dual call per
tangent where vmap cannot batch the function (an old-style custom autograd.Function, random
ops). compare.py judges the columns against the same central differences, with the same verdict
rule, input by input: every Jacobian entry where the input's block fits ``jacobian.BUDGET`` (in
fast mode, within the backward side's fast-mode work budget), else ``J u`` for seeded random
unit tangents u against every output entry (torch's fast forward check, with more directions;
in fast mode a failing one is followed by every entry): the transpose of the backward check's
``J^T c`` past the budget, which forward mode gets in as many jvps as there are u.
"""
from __future__ import annotations

from typing import Callable

import torch

from .checks import numerical_zero
from .compare import FAST_CALLS, SMALL_WORK, compare, plan
from .jacobian import BUDGET, OUT_BUDGET, Problem, as_tuple, differentiable, real
from .message import table

DIRECTIONS = {False: 8, True: 4}    # random unit tangents per input (full, fast mode)


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

    def columns(self, i: int, B: int, rows: Callable, pl) -> torch.Tensor:
        """``C J T^T`` (K, B): the tangent outputs of the B tangents ``rows(a, b)`` (rows a to
        b of T), chunked, projected on the plan's cotangents (the identity: every entry)."""
        per = max(1, min(B, OUT_BUDGET // max(1, self.p.M, self.p.n(i)), 4096))
        cols = []
        for a in range(0, B, per):
            Y = self.tangents(i, rows(a, min(B, a + per))).to(torch.float64)
            cols.append(Y.T if pl.identity else pl.C.to(torch.float64) @ Y.T)
        return torch.cat(cols, dim=1) if cols else torch.zeros(pl.K, 0, dtype=torch.float64)


def _directional(p: Problem, i: int, k: int):
    """(problem of s, U): ``s -> func(..., x_i + U s, ...)`` for k seeded random unit tangents
    (U's columns, in x_i's real layout): its Jacobian is J_i U, its central differences are
    f(x_i +- h u_r), torch's fast-mode numerical side."""
    x = p.inputs[i].detach()
    xr = real(x)
    gen = torch.Generator().manual_seed(7 + i)
    U = torch.randn(p.n(i), k, generator=gen, dtype=torch.float64)
    U = (U / U.norm(dim=0)).to(xr.dtype).to(x.device)

    def g(s):
        v = xr + (U @ s).reshape(xr.shape)
        args = list(p.inputs)
        args[i] = torch.view_as_complex(v) if x.is_complex() else v
        return p.func(*args)

    s = torch.zeros(k, dtype=xr.dtype, device=x.device, requires_grad=True)
    with torch.enable_grad():
        out = g(s)
    return Problem(g, (s,), out, p.out_pos), U


def _blocks(p: Problem, fast: bool) -> list[tuple[int, bool]]:
    """(input, every entry?) for each checked input: every Jacobian entry within the budget;
    in fast mode only where the backward side's fast mode takes the entries too (its work
    budget, compare.SMALL_WORK and FAST_CALLS), else DIRECTIONS[True] random tangents, a
    failing one followed by every entry (_one_input)."""
    return [(i, p.M * p.n(i) <= BUDGET and (not fast or 2 * p.n(i) * (p.n(i) + p.M) <= SMALL_WORK
                                            or 2 * p.n(i) <= FAST_CALLS)) for i in p.pos]


def check(func: Callable, inputs: tuple, eps: float, atol: float, rtol: float,
          check_undefined_grad: bool, check_grad_dtypes: bool, check_batched: bool,
          fast_mode: bool, label: str, names: dict[int, str] | None, error,
          pure: Callable | None = None) -> bool:
    """torch's check_forward_ad: the forward-mode Jacobian input by input, then undefined
    tangents and, with ``check_batched``, the vmapped jvp."""
    with torch.enable_grad():
        out = func(*inputs)
    if not differentiable(out):
        floats = [j for j, o in enumerate(as_tuple(out)) if isinstance(o, torch.Tensor)
                  and (o.is_floating_point() or o.is_complex())]
        numerical_zero(Problem(func, inputs, out, floats, pure), eps, 0.0, error, fast_mode)
        return True
    p = Problem(func, inputs, out, pure=pure)
    fw = Forward(p, check_grad_dtypes, error)
    messages, wrong = [], []
    for i, whole in _blocks(p, fast_mode):
        msg = _one_input(p, fw, i, whole, fast_mode, eps, atol, rtol, label, names)
        if msg:
            messages.append(msg)
            wrong.append(i)
    if messages:
        raise error("\n".join(messages), wrong)
    if check_undefined_grad:
        undefined(p, error, names)
    if check_batched:
        batched(fw, error, names)
    return True


def _one_input(p: Problem, fw: Forward, i: int, whole: bool, fast: bool, eps, atol, rtol,
               label: str, names) -> str | None:
    """The table of input i's failing rows, or None when every compared entry passes."""
    nm = _name(i, names)
    if whole:
        sub = Problem(p.func, tuple(x.detach() if k in p.pos and k != i else x
                                    for k, x in enumerate(p.inputs)), p.out, p.out_pos, p.pure)
        pl = plan(sub, False)
        x, n = real(p.inputs[i]), p.n(i)

        def rows(a, b):
            T = torch.zeros(b - a, n, dtype=x.dtype, device=x.device)
            T[torch.arange(b - a, device=x.device), torch.arange(a, b, device=x.device)] = 1
            return T
        B, extra = n, ""
    else:
        sub, U = _directional(p, i, DIRECTIONS[fast])
        pl = plan(sub, False)
        B, rows = U.shape[1], (lambda a, b: U.T[a:b])
        extra = (f"\n{nm}: along {U.shape[1]} seeded random unit tangents u (index [r]: u's "
                 f"number), its {p.M} x {p.n(i)} Jacobian being over the budget"
                 f"{' or fast_mode on a large input' if fast else ''}")
    k = sub.pos[0]
    A = {k: fw.columns(i, B, rows, pl)}
    pairs = compare(sub, pl, A, eps, rtol, atol)
    if not any(b.failed for b in pairs):
        return None
    if not whole and fast and p.M * p.n(i) <= BUDGET:     # name the entries, whatever it costs
        return _one_input(p, fw, i, True, fast, eps, atol, rtol, label, names)
    text = table(sub, pl, pairs, as_tuple(sub.out), label, eps, rtol, atol, {k: nm})
    head, rest = text.split("\n", 1)
    return head + extra + "\n" + rest


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
