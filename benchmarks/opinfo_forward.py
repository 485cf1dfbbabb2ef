"""benchmarks/opinfo.py --forward-ad: torch's OpInfo database through both tools' forward mode.

check_forward_ad=True, check_backward_ad=False (the forward-mode check alone) with the setting's
keywords on the ops with supports_forward_ad; the bugs are seeded in a jvp (the true jvp with
one entry of one input's contribution moved by 1e-2 x its largest magnitude); then gradgradcheck
with check_fwd_over_rev=True alone (agreement and time). Run through opinfo.py's flag.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from opinfo import TG, dropin, each_sample, run, tally  # noqa: E402


def seeded_forward(fn, inputs, seed: int):
    """``fn`` as an autograd.Function with a right backward and a jvp that returns the true jvp
    with one entry of one input's contribution J_i t_i moved by 1e-2 x that contribution's
    largest magnitude (so the bug belongs to input i). Returns (function, i) or None when no
    input moves an output."""
    fwAD = torch.autograd.forward_ad
    gen = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        pos = [j for j, o in enumerate(dropin.as_tuple(fn(*inputs)))
               if isinstance(o, torch.Tensor) and o.requires_grad]
    if not pos:
        return None

    def contributions(xs, ts, only=None):
        """Tangent outputs of fn at xs for tangents ts (only input ``only``'s when given)."""
        with fwAD._set_fwd_grad_enabled(True):
            duals = [fwAD.make_dual(x, t if only is None or k == only else torch.zeros_like(t))
                     for k, (x, t) in enumerate(zip(xs, ts))]
            outs = dropin.as_tuple(fn(*duals))
            res = []
            for j in pos:
                v, t = fwAD.unpack_dual(outs[j])
                res.append(torch.zeros_like(v) if t is None else t.clone())
            return res

    with fwAD.dual_level():
        ts = [torch.randn(x.shape, generator=gen, dtype=x.dtype) for x in inputs]
        live = [(i, k) for i in range(len(inputs))
                for k, t in enumerate(contributions([x.detach() for x in inputs], ts, i))
                if t.numel() and bool(t.abs().max() > 0)]
    if not live:
        return None
    at, k = live[int(torch.randint(len(live), (1,), generator=gen))]
    with torch.no_grad():
        size = dropin.as_tuple(fn(*inputs))[pos[k]].numel()
    entry = int(torch.randint(size, (1,), generator=gen))

    class Bugged(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *xs):
            ctx.save_for_backward(*xs)
            ctx.save_for_forward(*xs)
            with torch.no_grad():
                ys = dropin.as_tuple(fn(*[x.detach() for x in xs]))
            return tuple(ys[j].detach().clone() for j in pos)

        @staticmethod
        def jvp(ctx, *tans):
            xs = [x.detach() for x in ctx.saved_tensors]
            tans = [torch.zeros_like(x) if t is None else t for x, t in zip(xs, tans)]
            full = contributions(xs, tans)
            own = contributions(xs, tans, at)[k]
            flat = full[k].reshape(-1).clone()
            if own.numel():
                flat[entry] = flat[entry] + 1e-2 * own.abs().max()
            full[k] = flat.reshape(full[k].shape)
            return tuple(full)

        @staticmethod
        def backward(ctx, *gos):
            xs = ctx.saved_tensors
            with torch.enable_grad():
                xd = [x.detach().requires_grad_() for x in xs]
                ys = dropin.as_tuple(fn(*xd))
                return torch.autograd.grad([ys[j] for j in pos], xd, gos, allow_unused=True)

    return (lambda *xs: Bugged.apply(*xs)), at


def forward_setting(all_ops, setting: str, k: int, do_bugs: bool) -> dict:
    """check_forward_ad=True, check_backward_ad=False on the ops with supports_forward_ad."""
    res = {"setting": setting, "samples": 0, "time": {"torch": 0.0, "dropin": 0.0},
           "false_alarm": [], "reverse": [], "errors": [],
           "bugs": {"seeded": 0, "torch": 0, "dropin": 0, "named": 0, "missed_torch_caught": [],
                    "errors": []}}
    chosen = [o for o in all_ops if o.supports_forward_ad]
    extra = {"check_forward_ad": True, "check_backward_ad": False}
    for _, label, fn, inputs, kw in each_sample(chosen, setting, k, res, extra, f"forward {setting}"):
        got = tally(res, label, fn, inputs, kw, TG.gradcheck, dropin.gradcheck)
        if do_bugs and got == ("pass", "pass"):
            _forward_bug(res["bugs"], label, fn, inputs, kw)
    return res


def _forward_bug(b: dict, label, fn, inputs, kw) -> None:
    try:
        bug = seeded_forward(fn, inputs, seed=len(label))
    except Exception as e:      # noqa: BLE001 -- an op the wrapper cannot seed
        b["errors"].append((label, f"seeding: {type(e).__name__}"))
        return
    if bug is None:
        return
    bfn, at = bug
    bt, _, _ = run(TG.gradcheck, bfn, inputs, kw)
    bd, _, named = run(dropin.gradcheck, bfn, inputs, kw)
    if bt.startswith("error") or bd.startswith("error"):
        b["errors"].append((label, bt, bd))
        return
    b["seeded"] += 1
    b["torch"] += bt == "fail"
    b["dropin"] += bd == "fail"
    b["named"] += bd == "fail" and named is not None and at in named
    if bt == "fail" and bd != "fail":
        b["missed_torch_caught"].append((label, bd))


def forward_gradgrad(all_ops, setting: str, k: int) -> dict:
    """gradgradcheck forward over reverse alone (check_fwd_over_rev=True, check_rev_over_rev=False,
    so check_undefined_grad=False as torch requires) on the ops with supports_fwgrad_bwgrad:
    agreement and time (no seeded bugs)."""
    res = {"setting": setting, "samples": 0, "time": {"torch": 0.0, "dropin": 0.0},
           "false_alarm": [], "reverse": [], "errors": []}
    chosen = [o for o in all_ops if o.supports_fwgrad_bwgrad and o.supports_gradgrad]
    extra = {"check_fwd_over_rev": True, "check_rev_over_rev": False, "check_undefined_grad": False}
    for _, label, fn, inputs, kw in each_sample(chosen, setting, k, res, extra, None):
        tally(res, label, fn, inputs, kw, TG.gradgradcheck, dropin.gradgradcheck)
    t = res["time"]
    print(f"gradgradcheck forward over reverse, setting {setting}: {res['samples']} samples; "
          f"false alarms {len(res['false_alarm'])} {res['false_alarm'][:10]}; reverse "
          f"{len(res['reverse'])} {res['reverse'][:10]}; errors {len(res['errors'])} "
          f"{res['errors'][:10]}; time torch {t['torch']:.2f} s, drop-in {t['dropin']:.2f} s", flush=True)
    return res


def report_forward(r: dict) -> None:
    t, b = r["time"], r["bugs"]
    print(f"\n== forward AD, setting {r['setting']}: {r['samples']} samples compared")
    print(f"false alarms (torch passes, drop-in fails): {len(r['false_alarm'])} {r['false_alarm'][:20]}")
    print(f"reverse (torch fails, drop-in passes): {len(r['reverse'])} {r['reverse'][:20]}")
    print(f"errors (either tool raised something else): {len(r['errors'])} {r['errors'][:30]}")
    print(f"seeded jvp bugs {b['seeded']}: torch catches {b['torch']}, drop-in {b['dropin']} "
          f"(named at the right input {b['named']}); torch-caught, drop-in missed: "
          f"{b['missed_torch_caught'][:10]}; not seeded (errors): {len(b['errors'])} {b['errors'][:10]}")
    print(f"time: torch {t['torch']:.2f} s, drop-in {t['dropin']:.2f} s, "
          f"ratio {t['dropin'] / max(t['torch'], 1e-9):.2f}")
