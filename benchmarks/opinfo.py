"""torch's OpInfo database through torch.autograd.gradcheck and gradcheck_cli.torch.gradcheck.

    python benchmarks/opinfo.py [--setting full|own|both] [--ops add,mul] [--limit N]
                                [--samples 2] [--no-gradgrad] [--no-bugs] [--json FILE]
                                [--forward-ad]

Every OpInfo with autograd and float64 on CPU (needs ``expecttest``), its first ``--samples``
sample inputs, float64, one thread. Each sample is called as torch's gradient tests call it: the
tensors that require grad (flattened with torch.utils._pytree) are gradcheck's inputs and the
call is rebuilt inside the function through ``op.gradcheck_wrapper``; random ops are reseeded
before every call. Settings: ``full`` (fast_mode=False) and ``own`` (what torch's tests pass:
check_grad_dtypes=True, nondet_tol=op.gradcheck_nondet_tol, fast_mode=op.gradcheck_fast_mode
with None -> True). Both tools get the same keywords. Printed per setting:

- agreement: torch passes and the drop-in fails (false alarms), and the reverse;
- seeded bugs: each sample both tools pass, wrapped in an autograd.Function whose backward
  returns the true vjp with one entry of one input's gradient moved by 1e-2 x that gradient's
  largest magnitude: caught by each tool, and named at the right input by the drop-in;
- the same for gradgradcheck on the ops with supports_gradgrad (bugs seeded in the backward's
  own backward, the same way);
- total time of each tool over the same samples and the ratio; a conv2d 4x3x16x16 sample.

``--forward-ad`` instead runs both tools with check_forward_ad=True, check_backward_ad=False on
the ops with supports_forward_ad (the forward-mode check alone), and seeds the bugs in a jvp:
the true jvp with one entry of one input's contribution moved by 1e-2 x its largest magnitude;
then (unless --no-gradgrad) gradgradcheck with check_fwd_over_rev=True alone: agreement, time.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.utils import _pytree as pytree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gradcheck_cli.torch import dropin  # noqa: E402

TG = sys.modules["torch.autograd.gradcheck"]
RANDOM = ("dropout", "rrelu", "bernoulli", "normal", "multinomial", "randn", "rand", "poisson")


def ops(names: list[str] | None, limit: int | None):
    from torch.testing._internal.common_methods_invocations import op_db
    out = [o for o in op_db if o.supports_autograd and torch.float64 in o.supported_dtypes("cpu")]
    if names:
        out = [o for o in out if o.name in names or f"{o.name}.{o.variant_test_name}" in names]
    return out[:limit] if limit else out


def samples(op, k: int):
    """(label, fn, inputs) for the first k samples, as torch's gradient tests build them."""
    torch.manual_seed(0)
    random = any(r in op.name for r in RANDOM)
    for n, s in enumerate(itertools.islice(op.sample_inputs("cpu", torch.float64, requires_grad=True), k)):
        leaves, spec = pytree.tree_flatten((s.input, s.args, s.kwargs))
        pos = [i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor) and x.requires_grad]
        if not pos:
            continue

        def fn(*ts, leaves=leaves, spec=spec, pos=pos, s=s):
            vals = list(leaves)
            for i, t in zip(pos, ts):
                vals[i] = t
            inp, args, kwargs = pytree.tree_unflatten(vals, spec)
            if random:
                torch.manual_seed(0)
            out = op.gradcheck_wrapper(op.get_op(), inp, *args, **kwargs)
            return s.output_process_fn_grad(out) if s.output_process_fn_grad else out

        yield f"{op.name}{'.' + op.variant_test_name if op.variant_test_name else ''}#{n}", fn, \
            tuple(leaves[i] for i in pos)


def keywords(op, setting: str) -> dict:
    fast = op.gradcheck_fast_mode
    return dict(check_grad_dtypes=True, nondet_tol=op.gradcheck_nondet_tol,
                fast_mode=False if setting == "full" else (True if fast is None else fast))


def run(tool, fn, inputs, kw):
    """('pass' | 'fail' | 'error: ...', seconds, named inputs or None)."""
    t = time.perf_counter()
    try:
        ok = tool(fn, inputs, **kw)
        verdict, named = ("pass" if ok else "fail"), None
    except TG.GradcheckError as e:
        verdict, named = "fail", getattr(e, "inputs", None)
    except Exception as e:        # noqa: BLE001 -- a tool's crash is a result to report
        verdict, named = f"error: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}", None
    return verdict, time.perf_counter() - t, named


def seeded(fn, inputs, order: int, seed: int):
    """``fn`` with a bug in its backward (order 1) or in its backward's backward (order 2): one
    entry of one input's gradient moved by 1e-2 x that gradient's largest magnitude. Returns
    (function, input position) or None when every gradient is zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        outs = [o for o in dropin.as_tuple(fn(*inputs)) if isinstance(o, torch.Tensor) and o.requires_grad]
        if not outs:
            return None
        cot = [torch.randn(o.shape, generator=gen, dtype=o.dtype) if not o.is_complex() else
               torch.randn(o.shape, generator=gen, dtype=o.dtype) for o in outs]
        gs = torch.autograd.grad(outs, inputs, cot, allow_unused=True)
    live = [i for i, g in enumerate(gs) if g is not None and g.numel() and bool(g.abs().max() > 0)]
    if not live:
        return None
    at = live[int(torch.randint(len(live), (1,), generator=gen))]
    entry = int(torch.randint(inputs[at].numel(), (1,), generator=gen))

    def move(g):
        if g is None or not g.numel():
            return g
        flat = g.reshape(-1).clone()
        flat[entry] = flat[entry] + 1e-2 * g.abs().max().detach()
        return flat.reshape(g.shape)

    class Moved(torch.autograd.Function):
        @staticmethod
        def forward(ctx, g):
            return g.clone()

        @staticmethod
        def backward(ctx, gg):
            return move(gg)

    class Bugged(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *xs):
            ctx.save_for_backward(*xs)
            with torch.enable_grad():
                ys = [o for o in dropin.as_tuple(fn(*[x.detach().requires_grad_() for x in xs]))
                      if isinstance(o, torch.Tensor) and o.requires_grad]
            ctx.n = len(ys)
            return tuple(y.detach() for y in ys)

        @staticmethod
        def backward(ctx, *gos):
            xs = ctx.saved_tensors
            with torch.enable_grad():
                xd = [x if x.requires_grad else x.detach().requires_grad_() for x in xs]
                ys = [o for o in dropin.as_tuple(fn(*xd)) if isinstance(o, torch.Tensor) and o.requires_grad]
                gs = torch.autograd.grad(ys, xd, gos, allow_unused=True,
                                         create_graph=torch.is_grad_enabled())
            gs = list(gs)
            if order == 1:
                gs[at] = move(gs[at])
            elif gs[at] is not None:
                gs[at] = Moved.apply(gs[at])
            return tuple(gs)

    return (lambda *xs: Bugged.apply(*xs)), at


def one_setting(all_ops, setting: str, k: int, do_bugs: bool, do_gg: bool) -> dict:
    res = {"setting": setting, "samples": 0, "time": {"torch": 0.0, "dropin": 0.0},
           "false_alarm": [], "reverse": [], "errors": [],
           "bugs": {"seeded": 0, "torch": 0, "dropin": 0, "named": 0, "missed_torch_caught": []},
           "gg": {"samples": 0, "false_alarm": [], "reverse": [], "errors": [],
                  "time": {"torch": 0.0, "dropin": 0.0},
                  "bugs": {"seeded": 0, "torch": 0, "dropin": 0, "missed_torch_caught": []}}}
    for op, label, fn, inputs, kw in each_sample(all_ops, setting, k, res, {}, setting):
        _compare(res, label, fn, inputs, kw, TG.gradcheck, dropin.gradcheck, do_bugs, 1)
        if do_gg and op.supports_gradgrad:
            _compare(res["gg"], label, fn, inputs, kw, TG.gradgradcheck, dropin.gradgradcheck,
                     do_bugs, 2)
    return res


def each_sample(all_ops, setting: str, k: int, res: dict, extra: dict, tag: str | None):
    """(op, label, fn, inputs, keywords + ``extra``) for the first k samples of every op, the
    progress printed every 50 ops under ``tag`` (None: quiet); an op whose samples cannot be
    built is counted in ``res["errors"]``."""
    for n, op in enumerate(all_ops):
        if tag is not None and n % 50 == 0:
            print(f"[{tag}] {n}/{len(all_ops)} ops, {res['samples']} samples, "
                  f"torch {res['time']['torch']:.1f} s, drop-in {res['time']['dropin']:.1f} s", flush=True)
        try:
            items = list(samples(op, k))
        except Exception as e:      # noqa: BLE001
            res["errors"].append((op.name, f"sample_inputs: {type(e).__name__}"))
            continue
        for label, fn, inputs in items:
            yield op, label, fn, inputs, keywords(op, setting) | extra


def tally(res, label, fn, inputs, kw, torch_tool, our_tool):
    """Both tools on one sample, their errors, agreement and time counted in ``res``: the two
    verdicts, or None when either raised something other than a verdict."""
    vt, tt, _ = run(torch_tool, fn, inputs, kw)
    vd, td, _ = run(our_tool, fn, inputs, kw)
    if vt.startswith("error") or vd.startswith("error"):
        res["errors"].append((label, vt, vd))
        return None
    res["samples"] += 1
    res["time"]["torch"] += tt
    res["time"]["dropin"] += td
    if vt == "pass" and vd == "fail":
        res["false_alarm"].append(label)
    if vt == "fail" and vd == "pass":
        res["reverse"].append(label)
    return vt, vd


def _compare(res, label, fn, inputs, kw, torch_tool, our_tool, do_bugs, order):
    if order == 2:
        kw = {k: v for k, v in kw.items() if k != "check_grad_dtypes"} | {"check_grad_dtypes": True}
    got = tally(res, label, fn, inputs, kw, torch_tool, our_tool)
    if not (do_bugs and got == ("pass", "pass")):
        return
    bug = seeded(fn, inputs, order, seed=len(label))
    if bug is None:
        return
    bfn, at = bug
    bt, _, _ = run(torch_tool, bfn, inputs, kw)
    bd, _, named = run(our_tool, bfn, inputs, kw)
    b = res["bugs"]
    b["seeded"] += 1
    b["torch"] += bt == "fail"
    b["dropin"] += bd == "fail"
    if order == 1:
        b["named"] += bd == "fail" and named is not None and at in named
    if bt == "fail" and bd != "fail":
        b["missed_torch_caught"].append((label, bd))


def conv2d_row() -> dict:
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    f = torch.nn.functional.conv2d
    out = {}
    for name, tool in (("torch", TG.gradcheck), ("dropin", dropin.gradcheck)):
        t = time.perf_counter()
        ok = tool(f, (x, w))
        out[name] = (ok, time.perf_counter() - t)
    return out


def report(r: dict) -> None:
    t = r["time"]
    print(f"\n== setting {r['setting']}: {r['samples']} samples compared")
    print(f"false alarms (torch passes, drop-in fails): {len(r['false_alarm'])} {r['false_alarm'][:20]}")
    print(f"reverse (torch fails, drop-in passes): {len(r['reverse'])} {r['reverse'][:20]}")
    print(f"errors (either tool raised something else): {len(r['errors'])}")
    b = r["bugs"]
    print(f"seeded bugs {b['seeded']}: torch catches {b['torch']}, drop-in {b['dropin']} "
          f"(named at the right input {b['named']}); torch-caught, drop-in missed: "
          f"{b['missed_torch_caught'][:10]}")
    print(f"time: torch {t['torch']:.2f} s, drop-in {t['dropin']:.2f} s, "
          f"ratio {t['dropin'] / max(t['torch'], 1e-9):.2f}")
    g = r["gg"]
    gt = g["time"]
    print(f"gradgradcheck: {g['samples']} samples; false alarms {len(g['false_alarm'])} "
          f"{g['false_alarm'][:10]}; reverse {len(g['reverse'])}; errors {len(g['errors'])}; "
          f"bugs {g['bugs']['seeded']}: torch {g['bugs']['torch']}, drop-in {g['bugs']['dropin']}; "
          f"time torch {gt['torch']:.2f} s, drop-in {gt['dropin']:.2f} s")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=["full", "own", "both"], default="both")
    ap.add_argument("--ops", help="comma-separated op names")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--no-bugs", action="store_true")
    ap.add_argument("--no-gradgrad", action="store_true")
    ap.add_argument("--no-conv", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--forward-ad", action="store_true",
                    help="check_forward_ad=True, check_backward_ad=False on ops with supports_forward_ad")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    chosen = ops(a.ops.split(",") if a.ops else None, a.limit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one_setting(chosen[:3], "own", 1, False, False)          # warm-up, not counted
        if a.forward_ad:
            from opinfo_forward import forward_gradgrad, forward_setting, report_forward
            forward_setting(chosen[:3], "own", 1, False)             # warm-up, not counted
        out = {"ops": len(chosen), "results": []}
        for s in (["full", "own"] if a.setting == "both" else [a.setting]):
            if a.forward_ad:
                r = forward_setting(chosen, s, a.samples, not a.no_bugs)
                report_forward(r)
                if not a.no_gradgrad:
                    r["gg"] = forward_gradgrad(chosen, s, a.samples)
            else:
                r = one_setting(chosen, s, a.samples, not a.no_bugs, not a.no_gradgrad)
                report(r)
            out["results"].append(r)
            if a.json:
                Path(a.json).write_text(json.dumps(out, indent=1, default=str))
        if not a.no_conv:
            c = conv2d_row()
            out["conv2d"] = c
            print(f"\nconv2d 4x3x16x16, full: torch {c['torch'][1]:.2f} s, drop-in {c['dropin'][1]:.2f} s "
                  f"({c['torch'][1] / c['dropin'][1]:.1f}x)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
