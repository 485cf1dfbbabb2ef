"""Benchmark: what the diagnosis of failing rows (diagnosis.py) costs against a failing case's run.

    python benchmarks/diagnosis.py            # LeNet-5 (benchmarks/lenet5.yaml) with three bugs
    python benchmarks/diagnosis.py --json F   # also write the figures to F

Each case is LeNet-5 with one layer's correlation form made wrong (a subclass registered in this
process; ``forms: [correlation]``):

* ``flip``: conv layer 3's dW rotated by 180 degrees (diagnosed at the third kind tried);
* ``noise``: conv layer 3's dW plus seeded noise: no kind explains it, so every kind is tried,
  including the per-sample shares that ``batch`` evaluates for a parameter;
* ``relu-x``: relu layer 1's dx wrong where x < 0.5 (no kind): every kind over a 37,632-entry row.

The case runs once in this process (check.run_case); the time spent building each failing row's
evidence and diagnosing it is summed by wrapping the two functions check.py calls, so both
figures come from the same run. Target: diagnosis <= 10% of the run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gradcheck_cli import check, registry  # noqa: E402
from gradcheck_cli.cases import from_dict  # noqa: E402
from gradcheck_cli.layers.conv import Conv2d  # noqa: E402
from gradcheck_cli.layers.dense import ReLU  # noqa: E402
from gradcheck_cli.registry import form  # noqa: E402

TARGET = 0.10


def _conv(change):
    class WrongConv(Conv2d):
        @form("correlation", seed="benchmark: a deliberately wrong gradient")
        def correlation(self, dy, x, params):
            g = super().correlation(dy, x, params)
            return {**g, "W": change(g["W"])}
    return WrongConv


class WrongReLU(ReLU):
    @form("correlation", seed="benchmark: a deliberately wrong gradient")
    def correlation(self, dy, x, params):
        return {"x": dy * (x > 0.5)}


BUGS = {
    "flip": (3, "bench_conv_flip", _conv(lambda w: w[:, :, ::-1, ::-1].copy())),
    "noise": (3, "bench_conv_noise", _conv(lambda w: w + 1e-3 * np.random.default_rng(0).standard_normal(w.shape))),
    "relu-x": (1, "bench_relu_x", WrongReLU),
}


def measure(name: str) -> dict:
    layer, type_name, cls = BUGS[name]
    registry.register(type_name)(cls)
    doc = yaml.safe_load((HERE / "lenet5.yaml").read_text())
    doc["layers"][layer]["type"] = type_name
    doc["forms"] = ["correlation"]
    case = from_dict(doc, str(HERE / "lenet5.yaml"), base_dir=HERE)
    spent = [0.0]
    real_evidence, real_diagnose = check.row_evidence, check.diagnose

    def timed(fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t
        return wrapper

    check.row_evidence, check.diagnose = timed(real_evidence), timed(real_diagnose)
    try:
        t = time.perf_counter()
        r = check.run_case(case)
        total = time.perf_counter() - t
    finally:
        check.row_evidence, check.diagnose = real_evidence, real_diagnose
    failing = [row for row in r.checks if not row.passed]
    kinds = sorted({row.diagnosis.kind if row.diagnosis else "none" for row in failing})
    return {"case": f"lenet5 {name}", "failing_rows": len(failing), "kinds": kinds,
            "checked": sum(row.checked for row in r.checks), "run_s": round(total, 3),
            "diagnosis_s": round(spent[0], 4), "share": round(spent[0] / total, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--cases", nargs="+", choices=sorted(BUGS), default=list(BUGS))
    args = ap.parse_args()
    rows = [measure(name) for name in args.cases]
    print(f"{'case':<18} {'failing':>7} {'checked':>9} {'run s':>8} {'diag s':>8} {'share':>7}  kinds")
    for m in rows:
        print(f"{m['case']:<18} {m['failing_rows']:>7} {m['checked']:>9} {m['run_s']:>8.2f} "
              f"{m['diagnosis_s']:>8.3f} {100 * m['share']:>6.2f}%  {', '.join(m['kinds'])}")
    worst = max(m["share"] for m in rows)
    print(f"largest share {100 * worst:.2f}% (target <= {100 * TARGET:.0f}%): {'met' if worst <= TARGET else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"target": TARGET, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
