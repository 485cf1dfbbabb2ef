"""Both sides of the drop-in's comparison, batched.

The function is seen as flat real vectors: each checked input ``inputs[i]`` (a tensor that
requires grad, floating or complex: complex ones as ``view_as_real``) against the concatenation
of its differentiable outputs (those that require grad, complex ones as ``view_as_real``).

- analytic: ``C J`` for a matrix of cotangents C (K x M), by ``torch.autograd.grad(...,
  is_grads_batched=True)`` (one vmapped backward per chunk of rows; a loop over the rows where
  the backward has no batching rule);
- numerical: for every entry j of an input, ``f(x + h e_j)`` and ``f(x - h e_j)`` in the input's
  dtype, a chunk of perturbations per ``torch.func.vmap`` call (a loop where the function cannot
  be vmapped: a custom autograd.Function without a vmap rule, random ops, data-dependent code).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

BUDGET = 2**25         # entries of one float64 block alive at once (256 MiB): chunks stay below
ROWS_BUDGET = 2**22    # entries of one batched backward's cotangents or gradients (its
                       # intermediates are as many times larger as the backward needs)
OUT_BUDGET = 2**22     # entries of the perturbed outputs of one numerical chunk
JOINT = 512            # up to this many input entries in all, one vmap perturbs every input
LOOP_ROWS = 2          # up to this many cotangents a loop of plain backwards is cheaper than vmap


def as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def real(t: torch.Tensor) -> torch.Tensor:
    """A complex tensor as real pairs (conjugate views resolved, strides made viewable)."""
    if not t.is_complex():
        return t
    t = t.resolve_conj()
    return torch.view_as_real(t if t.stride()[-1:] in ((1,), ()) and all(
        s % 2 == 0 for s in t.stride()[:-1]) else t.contiguous())


def checked_inputs(inputs: Sequence) -> list[int]:
    """Positions of the inputs gradcheck checks: tensors requiring grad, floating or complex."""
    return [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.requires_grad
            and (x.is_floating_point() or x.is_complex())]


def differentiable(out: Any) -> list[int]:
    """Positions of the outputs torch's gradcheck compares: tensors that require grad."""
    return [j for j, o in enumerate(as_tuple(out)) if isinstance(o, torch.Tensor) and o.requires_grad]


def backward(outs: list, xs: list, cots: list, batched: bool = False) -> tuple:
    """``torch.autograd.grad`` of ``outs`` with cotangents ``cots`` (graph retained, unused inputs
    None). Where the joint backward raises, output by output, summed: torch's gradcheck
    differentiates one output at a time, the others' gradients undefined rather than zero, and
    some double backwards only work so (native_layer_norm's without weight)."""
    def grad(o, c):
        return torch.autograd.grad(o, xs, c, retain_graph=True, allow_unused=True,
                                   is_grads_batched=batched)
    try:
        return grad(outs, cots)
    except RuntimeError:
        if len(outs) < 2:
            raise
    total: list = [None] * len(xs)
    for o, c in zip(outs, cots):
        if bool(c.any()):        # a zero cotangent adds nothing (torch leaves it undefined)
            total = [t if g is None else g if t is None else t + g
                     for t, g in zip(total, grad([o], [c]))]
    return tuple(total)


class Problem:
    """``func`` at ``inputs``: the checked inputs ``pos``, the compared outputs ``out_pos`` (their
    real sizes ``sizes``) and the unperturbed flat output ``f0``."""

    def __init__(self, func: Callable, inputs: tuple, out: Any,
                 out_pos: list[int] | None = None, pure: Callable | None = None) -> None:
        self.func, self.inputs = func, inputs
        self.pure = pure or func     # the same values, in a form vmap can batch (gradgradcheck)
        self.pos = checked_inputs(inputs)
        self.out_pos = differentiable(out) if out_pos is None else out_pos
        outs = self.out = as_tuple(out)
        self.shapes = [tuple(real(outs[j]).shape) for j in self.out_pos]
        self.complex_out = [outs[j].is_complex() for j in self.out_pos]
        self.sizes = [real(outs[j]).numel() for j in self.out_pos]
        self.M = sum(self.sizes)
        self.f0 = self.flat(out).detach()
        self.vmap_ok = {i: True for i in self.pos}
        self.randomness = "error"            # "same" once a reseeding random function is seen
        self.first: tuple | None = None      # (cotangents, raw gradients) of C's row 0, when plain
        self.batched_backward = True

    def deterministic(self) -> bool:
        """A second plain call at the inputs gives the first call's outputs bit for bit."""
        with torch.no_grad():
            again = self.flat(self.func(*[x.detach() if isinstance(x, torch.Tensor) else x
                                          for x in self.inputs]))
        return bool(((again == self.f0) | (again.isnan() & self.f0.isnan())).all())

    def n(self, i: int) -> int:
        return real(self.inputs[i]).numel()

    def flat(self, out: Any) -> torch.Tensor:
        outs = as_tuple(out)
        parts = [real(outs[j]).reshape(-1) for j in self.out_pos]
        if not parts:
            return torch.zeros(0, dtype=torch.float64)
        dtype = torch.promote_types(parts[0].dtype, torch.float32)
        for p in parts[1:]:
            dtype = torch.promote_types(dtype, p.dtype)
        return torch.cat([p.to(dtype) for p in parts])

    def call_with(self, i: int, xi: torch.Tensor, func: Callable | None = None) -> torch.Tensor:
        args = list(self.inputs)
        args[i] = xi
        return self.flat((func or self.func)(*args))

    # -- numerical side ------------------------------------------------------------------
    def perturbed(self, i: int, deltas: torch.Tensor) -> torch.Tensor:
        """Flat outputs (B, M) at ``inputs[i] + delta`` for each row of ``deltas`` (B, n_i)."""
        x = self.inputs[i].detach()
        xr = real(x)

        def one(d: torch.Tensor, func: Callable | None = None) -> torch.Tensor:
            v = xr + d.reshape(xr.shape)
            return self.call_with(i, torch.view_as_complex(v) if x.is_complex() else v, func)

        with torch.no_grad():
            if self.vmap_ok[i]:
                try:
                    return torch.func.vmap(lambda d: one(d, self.pure), randomness=self.randomness)(deltas)
                except Exception as e:   # no batching rule, random op, data-dependent code...
                    if "randomness" in str(e) and self._same(lambda: torch.func.vmap(
                            lambda d: one(d, self.pure), randomness="same")(deltas[:1] * 0)):
                        return torch.func.vmap(lambda d: one(d, self.pure), randomness="same")(deltas)
                    self.vmap_ok[i] = False
            return torch.stack([one(d) for d in deltas]) if len(deltas) else deltas.new_zeros(0, self.M)

    def _same(self, zero_call: Callable[[], torch.Tensor]) -> bool:
        """A function with random ops: vmap may draw once for the whole batch (randomness
        "same") when that repeats what a plain call gives, i.e. the function reseeds on every
        call (torch's OpInfo samples do; otherwise gradcheck itself cannot pass): the batched
        output at a zero perturbation must equal the unperturbed output bit for bit."""
        if self.randomness == "same":
            return False                 # "same" was already in use: it is not the randomness
        try:
            zero = zero_call()           # the batched output at a zero perturbation
        except Exception:
            return False
        if not bool((zero[0] == self.f0.to(zero.dtype)).all()):
            return False
        self.randomness = "same"
        return True

    def all_columns(self, h: float, skip: frozenset = frozenset(), loop_max: int | None = None):
        """Yield (i, entries, F+, F-) for every checked input but ``skip``: small problems (at
        most JOINT entries in all) in one vmap call perturbing every input, else input by input.
        Inputs the function cannot be vmapped over take a loop of 2 forwards per entry; past
        ``loop_max`` forwards in all, such an input yields (i, None, None, None) instead."""
        pos = [i for i in self.pos if i not in skip]
        sizes = [self.n(i) for i in pos]
        if pos == self.pos and sum(sizes) <= JOINT and all(self.vmap_ok.values()):
            got = self._joint(h, sizes)
            if got is not None:
                yield from got
                return
        used = 0
        for i in pos:
            if loop_max is not None and not self.can_vmap(i):
                if used + 2 * self.n(i) > loop_max:
                    yield i, None, None, None
                    continue
                used += 2 * self.n(i)
            for idx, Fp, Fm in self.columns(i, h):
                yield i, idx, Fp, Fm

    def _joint(self, h: float, sizes: list[int]):
        total = sum(sizes)
        deltas, off = [], 0
        for i, n in zip(self.pos, sizes):
            xr = real(self.inputs[i])
            d = torch.zeros(2 * total, n, dtype=xr.dtype, device=xr.device)
            r = torch.arange(n, device=xr.device)
            d[off + r, r] = h
            d[total + off + r, r] = -h
            deltas.append(d)
            off += n

        def one(*ds):
            args = list(self.inputs)
            for i, d in zip(self.pos, ds):
                x = self.inputs[i].detach()
                v = real(x) + d.reshape(real(x).shape)
                args[i] = torch.view_as_complex(v) if x.is_complex() else v
            return self.flat(self.pure(*args))

        try:
            with torch.no_grad():
                out = torch.func.vmap(one, randomness=self.randomness)(*deltas)
        except Exception as e:
            with torch.no_grad():
                if not ("randomness" in str(e) and self._same(lambda: torch.func.vmap(
                        one, randomness="same")(*[d[:1] * 0 for d in deltas]))):
                    # the function cannot be batched (no batching rule, data-dependent code):
                    # every input takes the loop, without trying vmap again input by input
                    self.vmap_ok = {i: False for i in self.pos}
                    return None
                out = torch.func.vmap(one, randomness="same")(*deltas)
        res, off = [], 0
        for i, n in zip(self.pos, sizes):
            idx = torch.arange(n, device=out.device)
            res.append((i, idx, out[off:off + n], out[total + off:total + off + n]))
            off += n
        return res

    def can_vmap(self, i: int) -> bool:
        """Whether the function can be vmapped over perturbations of input i (tried once)."""
        if self.vmap_ok[i]:
            x = real(self.inputs[i])
            self.perturbed(i, torch.zeros(1, self.n(i), dtype=x.dtype, device=x.device))
        return self.vmap_ok[i]

    def directions(self, i: int, h: float, k: int):
        """(U (n, k), F+ (k, M), F- (k, M)): outputs at x +- h u for k seeded unit directions u."""
        x = real(self.inputs[i])
        gen = torch.Generator().manual_seed(3 + i)
        U = torch.randn(self.n(i), k, generator=gen, dtype=torch.float64)
        U = (U / U.norm(dim=0)).to(x.dtype).to(x.device)
        out = self.perturbed(i, torch.cat([h * U.T, -h * U.T]))
        return U, out[:k], out[k:]

    def columns(self, i: int, h: float):
        """Yield (entries, F+, F-) chunk by chunk for input i: F+- (B, M) outputs at x +- h e_j."""
        n = self.n(i)
        x = real(self.inputs[i])
        # the perturbations (per x n) and their outputs (2 per x M) both stay within the budget
        per = max(1, min(n, OUT_BUDGET // max(1, 2 * self.M, 2 * n), 4096))
        for a in range(0, n, per):
            idx = torch.arange(a, min(n, a + per), device=x.device)
            d = torch.zeros(len(idx), n, dtype=x.dtype, device=x.device)
            d[torch.arange(len(idx), device=x.device), idx] = h
            out = self.perturbed(i, torch.cat([d, -d]))
            yield idx, out[:len(idx)], out[len(idx):]

    # -- analytic side -------------------------------------------------------------------
    def vjp(self, C: torch.Tensor, only: list[int] | None = None) -> dict[int, torch.Tensor]:
        """Rows ``C J`` (K, n_i) for every checked input i (or those in ``only``), C (K, M)
        cotangents (real layout)."""
        pos = self.pos if only is None else only
        outs = [self.out[j] for j in self.out_pos]     # the first call's graph, retained
        K = C.shape[0]
        pieces, off = [], 0
        for o, shape, cplx, m in zip(outs, self.shapes, self.complex_out, self.sizes):
            c = C[:, off:off + m].reshape(K, *shape).to(real(o).dtype)
            pieces.append(torch.view_as_complex(c.contiguous()) if cplx else c)
            off += m
        xs = [self.inputs[i] for i in pos]
        grads = None
        if self.batched_backward and K > LOOP_ROWS:
            try:
                grads = backward(outs, xs, pieces, batched=True)
            except Exception:        # a backward without a batching rule: one row at a time
                self.batched_backward = False
        if grads is None:
            rows = [backward(outs, xs, [p[k] for p in pieces]) for k in range(K)]
            if self.first is None and rows and only is None:
                self.first = ([p[0] for p in pieces], list(rows[0]))
            grads = [_stack([r[t] for r in rows]) for t in range(len(xs))] if rows else [None] * len(xs)
        res = {}
        for i, g in zip(pos, grads):
            if g is None:
                res[i] = torch.zeros(K, self.n(i), dtype=real(self.inputs[i]).dtype,
                                     device=self.inputs[i].device)
            else:
                res[i] = real(g.to(self.inputs[i].dtype)).reshape(K, -1).detach()
        return res

    def grads_once(self, cot: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """One plain backward with the given per-output cotangents: the raw input gradients."""
        return list(backward([self.out[j] for j in self.out_pos], [self.inputs[i] for i in self.pos],
                             cot))

    def analytic(self, K: int, rows: Callable[[int, int], torch.Tensor]) -> dict[int, torch.Tensor]:
        """``C J`` for every input, C's K rows made by ``rows(a, b)`` in chunks within the budget."""
        N = max([self.n(i) for i in self.pos] + [self.M, 1])
        per = max(1, min(K, ROWS_BUDGET // N, 1024))
        parts = [self.vjp(rows(a, min(K, a + per))) for a in range(0, K, per)]
        return {i: torch.cat([p[i] for p in parts]) if parts else
                torch.zeros(0, self.n(i), dtype=torch.float64) for i in self.pos}


def _stack(rows: list) -> torch.Tensor | None:
    """The rows' gradients of one input stacked; a row that left it undefined (its cotangent
    reached the input only through outputs it gave zero) counts as zeros."""
    like = next((r for r in rows if r is not None), None)
    if like is None:
        return None
    return torch.stack([torch.zeros_like(like) if r is None else r for r in rows])
