"""Baseline: a plain per-entry central-difference loop on the case's scalar loss.

For every entry j of every layer's x and parameters: perturb v_j by +h and -h, run the layers
from there to the loss, one entry at a time (2 forward evaluations per entry), in float64.
This is what a hand-written gradient check does; the benchmark times it as a whole process.

    python benchmarks/loop.py CASE.yaml [--fraction F]

``--fraction F`` loops over a random fraction F of each tensor's entries and prints the time
extrapolated to all entries (per tensor: time / entries looped * entries), marked as such.
Prints one JSON line: entries, entries_looped, seconds (measured), seconds_all (extrapolated
when F < 1), max_abs (largest |numerical| seen, so the work cannot be optimised away).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from gradcheck_cli.cases import load
from gradcheck_cli.network import Network


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--fraction", type=float, default=1.0)
    args = ap.parse_args()
    net = Network.build(load(args.case))
    xs = net.forward()
    rng = np.random.default_rng(0)
    eps = float(np.finfo(np.float64).eps) ** (1 / 3)
    total = looped = 0
    measured = extrapolated = 0.0
    biggest = 0.0

    def loss_from(i: int, x: np.ndarray) -> float:
        for layer, p in zip(net.layers[i:], net.params[i:]):
            x = layer.forward(x, p)
        return net.loss.value(x) + net.reg_value()

    for i, t in net.tensors():
        v = xs[i].copy() if t == "x" else net.params[i][t]     # parameters are perturbed in place
        flat = v.reshape(-1)
        n = flat.size
        picks = np.arange(n) if args.fraction >= 1 else rng.choice(n, max(1, int(n * args.fraction)), replace=False)
        start = time.perf_counter()
        for j in picks:
            old = flat[j]
            h = eps * max(1.0, abs(old))
            flat[j] = old + h
            up = loss_from(i, v) if t == "x" else loss_from(i, xs[i])
            flat[j] = old - h
            down = loss_from(i, v) if t == "x" else loss_from(i, xs[i])
            flat[j] = old
            biggest = max(biggest, abs((up - down) / (2 * h)))
        spent = time.perf_counter() - start
        measured += spent
        extrapolated += spent / len(picks) * n
        total += n
        looped += len(picks)
    print(json.dumps({"entries": total, "entries_looped": looped, "seconds": measured,
                      "seconds_all": extrapolated, "max_abs": biggest}))


if __name__ == "__main__":
    main()
