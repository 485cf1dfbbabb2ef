"""A torch module with a custom autograd.Function: `gradcheck run` against torch.autograd.gradcheck.

    pip install -e . && pip install torch==2.13.0
    python benchmarks/torch_module.py             # both tools, right and buggy module, one run each

The module is Conv3x3 of examples/torch/my_modules.py (a conv2d whose backward is a hand-written
autograd.Function) at case M's size: x (4, 8, 16, 16), weight (8, 8, 3, 3), bias (8,), float64,
projection loss; the buggy module is my_modules_buggy.py's (its weight gradient flipped).
Each tool runs as a whole process (interpreter start and imports included), timed by wall clock,
its peak memory its maximum resident set. Both check every entry of x, weight and bias; the
parameter values are each tool's own seeded draw of the module's initialisation.

    python benchmarks/torch_module.py --torch right|buggy    # the torch.autograd.gradcheck process
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXAMPLES = ROOT / "examples" / "torch"
SHAPE = (4, 8, 16, 16)
CASE = """name: torch-conv-M{suffix}
seed: 0
input: [4, 8, 16, 16]
layers:
  - type: torch
    impl: {examples}/my_modules{suffix}.py:Conv3x3
    options: {{in_channels: 8, out_channels: 8}}
loss: projection
"""


def torch_side(which: str) -> None:
    """torch.autograd.gradcheck of the module (one JSON line: ok, seconds, the message's first line)."""
    import torch
    from torch.autograd.gradcheck import GradcheckError

    sys.path.insert(0, str(EXAMPLES))
    mod = __import__("my_modules" if which == "right" else "my_modules_buggy")
    torch.manual_seed(0)
    m = mod.Conv3x3(8, 8).double()
    x = torch.randn(*SHAPE, dtype=torch.float64, requires_grad=True)
    w, b = (p.detach().clone().requires_grad_() for p in (m.weight, m.bias))
    f = lambda x, w, b: torch.func.functional_call(m, {"weight": w, "bias": b}, (x,))  # noqa: E731
    start = time.perf_counter()
    try:
        ok, msg = torch.autograd.gradcheck(f, (x, w, b)), ""
    except GradcheckError as exc:
        ok, msg = False, str(exc)
    print(json.dumps({"ok": ok, "seconds": time.perf_counter() - start,
                      "message": msg.splitlines()[0] if msg else "", "message_chars": len(msg)}))


def main() -> None:
    from bench import gib, machine, measure

    rows = []
    with tempfile.TemporaryDirectory() as d:
        for which, suffix in (("right", ""), ("buggy", "_buggy")):
            case = Path(d) / f"case{suffix}.yaml"
            case.write_text(CASE.format(suffix=suffix, examples=EXAMPLES))
            t, m, code, out = measure([sys.executable, "-m", "gradcheck_cli", "run", str(case), "--format", "json"])
            rep = json.loads(out)["cases"][0]
            bad = [c for c in rep["checks"] if not c["passed"]]
            named = "; ".join(f"layers[{c['layer']}].{c['tensor']}: {c['failed']} failed, worst index "
                              f"{c['worst_index']}" for c in bad) or "-"
            rows.append(("gradcheck run", which, t, m, code, named))
            t, m, code, out = measure([sys.executable, str(Path(__file__)), "--torch", which])
            res = json.loads(out)
            named = (f"{res['message']} (message: {res['message_chars']:,} chars)" if not res["ok"] else "-")
            rows.append(("torch.autograd.gradcheck", which, t, m, 0 if res["ok"] else 1, named))
    print(f"# {machine()}")
    print(f"{'tool':<26} {'module':<6} {'time':>8} {'peak RSS':>10}  exit  failing entry named")
    for tool, which, t, m, code, named in rows:
        print(f"{tool:<26} {which:<6} {t:>7.2f}s {gib(m):>10}  {code:>4}  {named}")
    for which in ("right", "buggy"):
        ours, theirs = (r for r in rows if r[1] == which)
        print(f"{which}: {theirs[2] / ours[2]:.1f}x faster, {ours[3] / theirs[3]:.3f}x the peak memory")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torch", choices=("right", "buggy"))
    args = ap.parse_args()
    torch_side(args.torch) if args.torch else main()
