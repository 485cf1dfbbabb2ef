"""How a check's cost grows with entries and layers, what one task costs, and the Dask overhead.

    python benchmarks/scale.py            # in-process, one BLAS thread; prints three tables

1. Entries: the wide conv net of wide.yaml (conv 4@3x3, relu, conv 4@3x3, tanh) at three input
   sizes; layers: conv 4@3x3 + tanh blocks, 1, 2 and 4 of them, at the smallest size.
2. Tasks: the units (one tensor of one view) of wide.yaml, each timed alone with
   ``check.check_unit``, and the preparation a worker repeats once per case.
3. Dask: a 2-worker ``LocalCluster``; the round trip of 200 empty tasks through
   ``client.get_executor()`` (submit, run, result), one at a time and all at once.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradcheck_cli.cases import from_dict, load  # noqa: E402
from gradcheck_cli.check import check_unit, prepare, run_case  # noqa: E402

BLOCK = [{"type": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1}, {"type": "tanh"}]


def wide(shape, blocks: int = 0) -> dict:
    layers = ([{"type": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1}, {"type": "relu"}] + BLOCK
              if not blocks else BLOCK * blocks)
    return {"name": "scale", "seed": 0, "input": list(shape), "forms": ["correlation"],
            "loss": "projection", "layers": layers}


def timed(doc) -> tuple[int, int, float]:
    """(checked entries, forward evaluations, seconds) of one in-process run."""
    start = time.perf_counter()
    res = run_case(from_dict(doc))
    seconds = time.perf_counter() - start
    return sum(r.checked for r in res.rows) + sum(r.checked for r in res.loss_rows), res.evaluations, seconds


def growth() -> None:
    print("| network | checked entries | forward evaluations | seconds | µs per entry |")
    print("|---|---:|---:|---:|---:|")
    for label, doc in [("wide, 4x1x64x64", wide((4, 1, 64, 64))), ("wide, 16x1x64x64", wide((16, 1, 64, 64))),
                       ("wide, 16x1x128x128 (wide.yaml)", wide((16, 1, 128, 128))),
                       ("1 block, 4x1x64x64", wide((4, 1, 64, 64), 1)), ("2 blocks, 4x1x64x64", wide((4, 1, 64, 64), 2)),
                       ("4 blocks, 4x1x64x64", wide((4, 1, 64, 64), 4))]:
        n, ev, s = timed(doc)
        print(f"| {label} | {n:,} | {ev:,} | {s:.2f} | {1e6 * s / n:.2f} |")


def tasks() -> None:
    case = load(ROOT / "benchmarks" / "wide.yaml")
    start = time.perf_counter()
    prep = prepare(case)
    ready = time.perf_counter() - start
    costs = []
    for u in prep.units():
        t = time.perf_counter()
        check_unit(prep, u)
        costs.append(time.perf_counter() - t)
    print(f"wide.yaml: prepare {ready:.2f} s; {len(costs)} units: total {sum(costs):.2f} s, "
          f"median {statistics.median(costs):.3f} s, largest {max(costs):.2f} s")


def dask_overhead() -> None:
    try:
        import distributed
    except ImportError:
        print("dask: skipped (pip install 'gradcheck-cli[dask]')")
        return
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as lc, distributed.Client(lc) as client:
        pool = client.get_executor(pure=False)
        list(pool.map(abs, range(20)))              # warm up
        t = time.perf_counter()
        for k in range(200):
            pool.submit(abs, -k).result()
        serial = (time.perf_counter() - t) / 200
        t = time.perf_counter()
        list(pool.map(abs, range(-200, 0)))
        batch = (time.perf_counter() - t) / 200
    print(f"dask, 2-worker LocalCluster: {1e3 * serial:.1f} ms per empty task one at a time, "
          f"{1e3 * batch:.2f} ms per task in a batch of 200")


if __name__ == "__main__":
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}")
    growth()
    tasks()
    dask_overhead()
