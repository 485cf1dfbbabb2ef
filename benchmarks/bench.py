"""Benchmark: full gradient checks of conv2d layers, each tool timed as a whole process.

    python benchmarks/bench.py                 # cases M and L, torch if installed
    python benchmarks/bench.py --cases M --repeat 5
    python benchmarks/bench.py --cases C      # a 5-layer CNN with relu / max-pool kinks
    python benchmarks/bench.py --cases LENET VGG --no-loop   # whole networks (issue 12)
    python benchmarks/bench.py --cases WIDE --no-loop --repeat 1   # 3.4M entries: 1 process,
                                                    # --jobs 2, a 2-worker Dask LocalCluster (issue 19)

For each case it runs, as separate processes, and measures wall time (interpreter start and
imports included) and peak memory (the child's maximum resident set size, from wait4):

* ``gradcheck run CASE`` — every entry of x, W and b, all three forms, float64, projection loss,
  table printed to a pipe (median of ``--repeat`` runs);
* ``loop.py`` — a plain per-entry central-difference loop on the scalar loss (for case L a
  random fraction of the entries, extrapolated and marked ``~``);
* ``torch_gradcheck.py`` — torch.autograd.gradcheck on the same layer, when torch is installed
  (case M only: for case L its Jacobians would need ~280 GB);
* ``torch_net.py`` — torch.autograd.gradcheck of the whole network's scalar loss (LENET), one
  thread, every entry of the input and of every parameter;
* for M and L, ``gradcheck run --mode network`` too: the whole-loss engine the layer-local
  default replaced, in the same run, so "no slower than before" is a ratio of one run;
* for WIDE, ``gradcheck run --jobs 2`` and ``gradcheck run --scheduler ADDRESS`` on a Dask
  ``LocalCluster(n_workers=2, threads_per_worker=1)`` started here (needs the [dask] extra);
  the three reports must be the same bytes.

Then it checks the issue's targets and that a seeded wrong entry in case L is reported at its
index. torch is optional: ``pip install torch`` (never a dependency of gradcheck).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASES = {
    # name: (case file, torch arguments N C O H W K PAD, loop fraction)
    "M": (HERE / "conv-M.yaml", (4, 8, 8, 16, 16, 3, 1), 1.0),
    "L": (HERE / "conv-L.yaml", (8, 16, 16, 32, 32, 3, 1), 0.002),
    "C": (HERE / "cnn-relu-pool.yaml", None, 0.002),     # a 5-layer CNN with kinks (no torch row)
    "LENET": (HERE / "lenet5.yaml", "net", 0.0005),       # LeNet-5, cross-entropy, 68k parameters
    "VGG": (HERE / "vgg.yaml", None, 0.0002),             # VGG-style, cross-entropy, 148k parameters
    "WIDE": (HERE / "wide.yaml", None, 0.00002),          # a wide conv net, 3.4M entries (issue 19)
}
TARGETS = {"M": {"speedup": 40.0, "memory_ratio": 1 / 20}, "L": {"seconds": 10.0, "bytes": 2 * 2**30},
           "LENET": {"speedup": 100.0, "bytes": 2**29}, "VGG": {"seconds": 8.0, "bytes": 1.5 * 2**30}}


CPU: dict[int, float] = {}     # id of a measure() result -> that process's user + system seconds


def measure(cmd: list[str], root: Path = ROOT) -> tuple[float, int, int, str]:
    """Run ``cmd``; (wall seconds, peak RSS bytes, exit code, stdout) of that one process, with
    the gradcheck_cli of source tree ``root``; its CPU seconds in ``CPU[id(result)]`` (:func:`cpu`)."""
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=root)
        _, status, usage = os.wait4(proc.pid, 0)        # this child's own rusage
        seconds = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if code not in (0, 1) or not text.strip():
        sys.stderr.write(errors[-2000:])
    result = (seconds, usage.ru_maxrss * 1024, code, text)
    CPU[id(result)] = usage.ru_utime + usage.ru_stime     # steadier than wall time on a busy machine
    return result


def cpu(runs) -> float:
    """Median CPU seconds of the measure() results ``runs``."""
    return statistics.median(CPU[id(r)] for r in runs)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {numpy.__version__}, "
            f"load average {load:.1f} at start")


def evaluations(case: Path) -> tuple[int, int]:
    """(forward evaluations the check spent, entries), from one more (untimed) run's JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        measure([sys.executable, "-m", "gradcheck_cli", "run", str(case), "--format", "json", "-o", str(out)])
        doc = json.loads(out.read_text())["cases"][0]
    checked = {}
    for row in doc["checks"]:
        checked[(row["layer"], row["tensor"])] = row["checked"]
    return doc["forward_evaluations"], sum(checked.values())


def seeded_wrong_entry(case: Path, where: tuple[int, ...]) -> tuple[int, list[int], float]:
    """Run the check in-process with one entry of the correlation form's dL/dx off by 1e-3;
    returns (failed entries, reported worst index, seconds)."""
    sys.path.insert(0, str(ROOT))
    from gradcheck_cli.cases import load
    from gradcheck_cli.check import run_case
    from gradcheck_cli.layers import conv

    real = conv.Conv2d.correlation

    def wrong(self, dy, x, params):
        g = real(self, dy, x, params)
        g["x"] = g["x"].copy()
        g["x"][where] += 1e-3
        return g

    conv.Conv2d.correlation = wrong
    try:
        start = time.perf_counter()
        res = run_case(load(case), forms=("correlation",))
        seconds = time.perf_counter() - start
    finally:
        conv.Conv2d.correlation = real
    row = next(r for r in res.rows if r.tensor == "x")
    return row.failed, list(row.worst_index), seconds


def distributed_rows(name: str, case: Path, one_t: float) -> list[tuple[str, bool]]:
    """``--jobs 2`` and ``--scheduler`` (a 2-worker LocalCluster) on ``case``: rows and verdicts."""
    cmd = [sys.executable, "-m", "gradcheck_cli", "run", str(case), "--format", "json"]
    one = measure(cmd)[3]
    t, m, code, jobs = measure(cmd + ["--jobs", "2"])
    print(f"{name:<5} {'gradcheck run --jobs 2':<32} {'':>9} {'':>10} {t:>9.2f}s {gib(m):>10}  "
          f"{one_t / t:.2f}x the one-process run (peak: the parent only)")
    out = [(f"{name}: --jobs 2 gives the bytes of one process", jobs == one)]
    try:
        import distributed
    except ImportError:
        print(f"{name:<5} {'gradcheck run --scheduler':<32}  skipped: pip install 'gradcheck-cli[dask]'")
        return out
    start = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        up = time.perf_counter() - start
        t, m, code, dask_out = measure(cmd + ["--scheduler", cluster.scheduler_address])
    print(f"{name:<5} {'gradcheck run --scheduler (2 workers)':<32} {'':>9} {'':>10} {t:>9.2f}s {gib(m):>10}  "
          f"{one_t / t:.2f}x the one-process run; LocalCluster start {up:.1f}s, not counted")
    out.append((f"{name}: --scheduler gives the bytes of one process", dask_out == one))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="+", default=["M", "L"], choices=list(CASES))
    ap.add_argument("--repeat", type=int, default=3, help="runs of gradcheck per case (median)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-loop", action="store_true")
    ap.add_argument("--baseline", type=Path, help="another source tree (e.g. a `git worktree` of main): its "
                                                  "`gradcheck run` timed in the same run, alternating")
    args = ap.parse_args()
    have_torch = importlib.util.find_spec("torch") is not None and not args.no_torch
    print(f"# gradcheck benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"# {machine()}")
    print()
    header = f"{'case':<5} {'tool':<32} {'entries':>9} {'fwd evals':>10} {'time':>10} {'peak mem':>10}  note"
    print(header)
    print("-" * len(header))
    verdicts = []
    for name in args.cases:
        case, targs, fraction = CASES[name]
        evals, entries = evaluations(case)
        cmd = [sys.executable, "-m", "gradcheck_cli", "run", str(case)]
        runs, base = [], []
        for _ in range(args.repeat):        # with --baseline, the two builds alternate
            runs.append(measure(cmd))
            if args.baseline:
                base.append(measure(cmd, args.baseline))
        codes = {r[2] for r in runs}
        ours_t = statistics.median(r[0] for r in runs)
        ours_m = max(r[1] for r in runs)
        print(f"{name:<5} {'gradcheck run':<32} {entries:>9,} {evals:>10,} {ours_t:>9.2f}s {gib(ours_m):>10}  "
              f"median of {len(runs)}, exit {'/'.join(map(str, sorted(codes)))}, CPU {cpu(runs):.2f}s")
        verdicts.append((f"{name}: exits 0", codes == {0}))
        if base:
            base_t = statistics.median(r[0] for r in base)
            print(f"{name:<5} {'gradcheck run (baseline)':<32} {'':>9} {'':>10} {base_t:>9.2f}s "
                  f"{gib(max(r[1] for r in base)):>10}  {args.baseline}, median of {len(base)}: "
                  f"{base_t / ours_t:.2f}x slower than this build, CPU {cpu(base):.2f}s")
            verdicts.append((f"{name}: no slower than the baseline (10% noise allowed)", ours_t <= 1.1 * base_t))
        if name in ("M", "L"):
            net, net_base = [], []
            for _ in range(args.repeat):
                net.append(measure(cmd + ["--mode", "network"]))
                if args.baseline:
                    net_base.append(measure(cmd + ["--mode", "network"], args.baseline))
            net_t = statistics.median(r[0] for r in net)
            print(f"{name:<5} {'gradcheck run --mode network':<32} {'':>9} {'':>10} {net_t:>9.2f}s "
                  f"{gib(max(r[1] for r in net)):>10}  the whole-loss engine, median of {len(net)}")
            verdicts.append((f"{name}: the local engine no slower than --mode network (10% noise allowed)",
                             ours_t <= 1.1 * net_t))
            if net_base:
                nb = statistics.median(r[0] for r in net_base)
                print(f"{name:<5} {'  --mode network (baseline)':<32} {'':>9} {'':>10} {nb:>9.2f}s "
                      f"{gib(max(r[1] for r in net_base)):>10}  median of {len(net_base)}")
                verdicts.append((f"{name}: --mode network no slower than the baseline (10% noise allowed)",
                                 net_t <= 1.1 * nb))
        if name in ("LENET", "VGG"):
            tgt = TARGETS[name]
            verdicts.append((f"{name}: peak memory within {gib(tgt['bytes'])}", ours_m <= tgt["bytes"]))
            if "seconds" in tgt:
                verdicts.append((f"{name}: under {tgt['seconds']:.0f} s", ours_t < tgt["seconds"]))
        if name == "WIDE":
            verdicts += distributed_rows(name, case, ours_t)
        if have_torch and targs == "net":
            t, m, code, out = measure([sys.executable, str(HERE / "torch_net.py"), str(case)])
            info = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"ok": None}
            print(f"{name:<5} {'torch.autograd.gradcheck':<32} {info.get('entries', 0):>9,} {'':>10} {t:>9.2f}s "
                  f"{gib(m):>10}  whole process, one thread, gradcheck call "
                  f"{info.get('seconds', float('nan')):.1f}s, ok={info['ok']}")
            speed = t / ours_t
            print(f"{'':<5} {'  gradcheck run vs torch':<32} {'':>9} {'':>10} {speed:>9.1f}x {ours_m / m:>10.3f}  "
                  f"(time: torch / ours; memory: ours / torch)")
            verdicts.append((f"{name}: >= {TARGETS[name]['speedup']:.0f}x faster than torch.autograd.gradcheck",
                             speed >= TARGETS[name]["speedup"]))
        if not args.no_loop:
            t, m, code, out = measure([sys.executable, str(HERE / "loop.py"), str(case), "--fraction", str(fraction)])
            info = json.loads(out.strip().splitlines()[-1])
            if fraction < 1:
                shown = f"~{info['seconds_all']:>8.1f}s"
                note = f"extrapolated from {info['entries_looped']:,} entries looped in {info['seconds']:.1f}s"
                loop_t = info["seconds_all"]
            else:
                shown, note, loop_t = f"{t:>9.2f}s", "whole process", t
            print(f"{name:<5} {'per-entry loop':<32} {entries:>9,} {2 * entries:>10,} {shown:>10} {gib(m):>10}  {note}")
            print(f"{'':<5} {'  speed-up of gradcheck run':<32} {'':>9} {'':>10} {loop_t / ours_t:>9.1f}x")
        if have_torch and name == "M" and isinstance(targs, tuple):
            t, m, code, out = measure([sys.executable, str(HERE / "torch_gradcheck.py"), *map(str, targs)])
            info = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"ok": None}
            print(f"{name:<5} {'torch.autograd.gradcheck':<32} {entries:>9,} {'':>10} {t:>9.2f}s {gib(m):>10}  "
                  f"whole process, gradcheck call {info.get('seconds', float('nan')):.1f}s, ok={info['ok']}")
            speed, mem = t / ours_t, ours_m / m
            print(f"{'':<5} {'  gradcheck run vs torch':<32} {'':>9} {'':>10} {speed:>9.1f}x {mem:>10.3f}  "
                  f"(time: torch / ours; memory: ours / torch)")
            tgt = TARGETS["M"]
            verdicts.append(("M: >= 40x faster than torch.autograd.gradcheck", speed >= tgt["speedup"]))
            verdicts.append(("M: <= 1/20 of its peak memory", mem <= tgt["memory_ratio"]))
        if name == "L":
            tgt = TARGETS["L"]
            verdicts.append(("L: under 10 s", ours_t < tgt["seconds"]))
            verdicts.append(("L: under 2 GiB peak memory", ours_m < tgt["bytes"]))
            where = (5, 3, 17, 29)
            failed, index, secs = seeded_wrong_entry(case, where)
            print(f"{name:<5} {'seeded wrong entry x' + str(list(where)):<32} {'':>9} {'':>10} {secs:>9.2f}s {'':>10}  "
                  f"reported: {failed} failed, worst index {index}")
            verdicts.append((f"L: a wrong entry at x{list(where)} is reported at its index",
                             failed == 1 and tuple(index) == where))
    print()
    for text, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
