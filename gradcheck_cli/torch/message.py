"""The drop-in's failure message: gradcheck's failing-row table, one row per (input, output)."""
from __future__ import annotations

from typing import Sequence

import torch

from .compare import Pair, Plan
from .jacobian import Problem, real


def _unravel(k: int, shape: Sequence[int]) -> list[int]:
    out = []
    for s in reversed(list(shape)):
        out.append(k % s if s else 0)
        k = k // s if s else 0
    return list(reversed(out))


def _where(t: torch.Tensor, k: int) -> str:
    """Index ``k`` of the real view of ``t`` as an index of ``t`` (``.real``/``.imag`` if complex)."""
    idx = _unravel(k, real(t).shape)
    if t.is_complex():
        part = ".imag" if idx.pop() else ".real"
        return f"[{', '.join(map(str, idx))}]{part}"
    return f"[{', '.join(map(str, idx))}]"


def table(p: Problem, pl: Plan, pairs: list[Pair], out: tuple, label: str, h: float,
          rtol: float, atol: float, names: dict[int, str] | None = None) -> str:
    """The message: what was compared, then a row per failing (input, output) block with its
    worst entries (input index, output entry or cotangent, analytic, numerical)."""
    bad = [b for b in pairs if b.failed]
    nm = (lambda i: (names or {}).get(i, f"inputs[{i}]"))
    lines = [f"{label}: Jacobian mismatch for {', '.join(nm(i) for i in sorted({b.input for b in bad}))}",
             f"compared {pl.describe(p)}; eps {h:g}, atol {atol:g}, rtol {rtol:g} "
             f"(+ the central difference's rounding term)",
             *[f"{nm(i)}: along {n} seeded random unit directions u (fast_mode, and the input "
               f"is large or the function cannot be vmapped over its perturbations)"
               for i, n in sorted({(b.input, b.compared // max(1, pl.K)) for b in bad if b.directions})],
             f"{'input':<12} {'output':<12} {'compared':>9} {'failed':>7} {'kinks':>6} {'max abs err':>12}"]
    for b in bad:
        j = p.out_pos[b.output]
        lines.append(f"{nm(b.input):<12} {f'output[{j}]':<12} {b.compared:>9} "
                     f"{b.failed:>7} {b.kinks:>6} {b.max_err:>12.3e}")
        for _, k, r, a, n in b.worst:
            if pl.identity:
                what = f"output[{j}]{_where(out[j], r)}"
            else:
                what = f"output[{j}] . c{r}"
            src = f" . u{k}" if b.directions else _where(p.inputs[b.input], k)
            lines.append(f"    {nm(b.input)}{src} / {what}: "
                         f"analytic {a:.6g}, numerical {n:.6g}")
    return "\n".join(lines)
