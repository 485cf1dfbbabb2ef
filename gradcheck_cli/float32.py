"""The float32 error estimate e32 of the analytic side (verdict.py adds 64 e32 to a float32
entry's threshold; docs/verdicts.md, *float32*): jittered float64 runs, capped at the float32
run's own deviation from the same code in float64."""
from __future__ import annotations

import dataclasses

import numpy as np

from .errors import GradcheckError
from .network import Network

U32 = float(np.finfo(np.float32).eps)


def _float64_side(net: Network, form_names: list[str], xs64: list[np.ndarray], grads32: dict | None = None):
    """Each form run in float64 (for the float32 note) and its float32 error estimate. A form
    whose code refuses float64 arrays (a user's float32-only layer) goes without both.

    With ``grads32`` (each form's float32 run), each entry's estimate is capped at that run's
    own deviation |g32 - g64| from the same form in float64 (:func:`cap_at_run`)."""
    grads64, err32 = {}, {}
    for f in form_names:
        try:
            grads64[f] = net.backward(f, xs64, np.float64)
            err32[f] = float32_error(net, f, xs64, grads64[f])
        except GradcheckError:
            grads64.pop(f, None)
            continue
        if grads32 is not None and f in grads32:
            err32[f] = cap_at_run(err32[f], grads32[f], grads64[f])
    return grads64, err32


def cap_at_run(est: list[dict[str, np.ndarray]], g32: list[dict], g64: list[dict]) -> list[dict[str, np.ndarray]]:
    """min(estimate, |g32 - g64|) per entry: the float32 run's own deviation bounds its error.

    The jittered runs of :func:`float32_error` may cross a branch the float32 run did not take:
    a sign of the ABC bases whose argument is exactly 0 in exact arithmetic (a 2-entry kernel
    with u = +-1), a max-pool near-tie. Their change is then the branch's jump, and the rms
    floor spreads a jump over the whole tensor: a seeded bug in that tensor passed while a row
    it fed failed (a wrong culprit) or nothing failed (a miss). The float32 run itself shows
    whether it took another branch: |g32 - g64| is its actual deviation from the same code in
    float64, and a bug, being in both, is not in it. Where the run deviates less than the
    estimate, the estimate is lowered to the deviation; a float32-only problem (a float16
    intermediate) deviates more than a correct computation would, and keeps the estimate."""
    out = []
    for e, a, b in zip(est, g32, g64):
        out.append({k: np.fmin(v, np.abs(np.asarray(a[k], np.float64) - b[k])) if k in a and k in b else v
                    for k, v in e.items()})
    return out


def float32_error(net: Network, form: str, xs64: list[np.ndarray],
                  g64: list[dict[str, np.ndarray]], trials: int = 2) -> list[dict[str, np.ndarray]]:
    """Float32 error estimate of the analytic gradients of ``form``, entry by entry.

    A correct float32 computation is the exact computation on data perturbed by about one unit
    of float32 rounding u32 at every step. So the same form is run in float64 with every input,
    parameter and activation multiplied by (1 + u32 r), r uniform in [-1, 1] (seeded, and a
    function of the value: equal values round alike, so exact ties -- a max-pool window of
    equal maxima -- stay ties, as they do in float32; see :func:`_value_noise`), and the
    largest change of each entry over ``trials`` runs is its estimate, floored at the rms estimate
    of its tensor. Where the gradient cancels (a small entry summed from large terms) the estimate
    grows with the terms, not with the entry.
    """
    rng = np.random.default_rng([net.case.seed, 3])

    def jitter(a: np.ndarray) -> np.ndarray:
        return a * (1.0 + U32 * _value_noise(a, int(rng.integers(2**63))))

    est = [{k: np.zeros(np.shape(v)) for k, v in g.items()} for g in g64]
    for _ in range(trials):
        params = [{k: jitter(v) for k, v in p.items()} for p in net.params]
        xs = [jitter(xs64[0])]
        for layer, p in zip(net.layers, params):
            xs.append(jitter(np.asarray(layer.forward(xs[-1], p), dtype=np.float64)))
        g = dataclasses.replace(net, params=params).backward(form, xs, np.float64)
        for e, gj, g0 in zip(est, g, g64):
            for k in e:
                np.maximum(e[k], np.abs(np.asarray(gj[k], np.float64) - g0[k]), out=e[k])
    # a few random trials can miss an entry by luck: floor each at its tensor's rms estimate
    for e in est:
        for k, v in e.items():
            v = np.where(np.isfinite(v), v, 0.0)         # NaN/Inf entries fail on their own
            e[k] = np.maximum(v, np.sqrt(np.mean(v ** 2)) if v.size else 0.0)
    return est


def _value_noise(a: np.ndarray, key: int) -> np.ndarray:
    """Pseudo-random r in [-1, 1) per entry, a function of the entry's float64 value and ``key``.

    Rounding is a function of the operands: identical values computed identically round
    identically. Independent draws per entry would break exact ties (equal maxima of a max-pool
    window, the copies of one maximum that overlapping windows hand on), change the argmax in the
    jittered runs, and inflate the estimate of a tied entry to its whole gradient: a seeded bug
    there then passed in float32. Hashing the value keeps ties tied.
    """
    bits = np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)
    with np.errstate(over="ignore"):
        h = (bits ^ np.uint64(key)) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return (h >> np.uint64(11)).astype(np.float64) * (2.0 / 2**53) - 1.0
