"""Where the checks run: local processes (``--jobs N``) or a Dask cluster (``--scheduler ADDRESS``).

Both go through one seam, a :class:`concurrent.futures.Executor`: a ``ProcessPoolExecutor`` for
``--jobs``, ``distributed.Client(ADDRESS).get_executor()`` for ``--scheduler``. A task is either
a whole case or, for a case of at least :data:`SPLIT_ENTRIES` checked entries, one *unit* of it:
one tensor of one view (check.py: a layer's x or parameter, with the upstream or the random
cotangent, or the loss), so that one big case spreads over the workers. The results are put
together in the order of a one-process run, so the report (JSON bytes, table, exit code) is the
same.

What travels: a task names the case file (its absolute path) and the options; the worker loads
the case, builds the network and its plans itself (deterministic: the same seed gives the same
arrays) and keeps the last case it prepared for its next unit. So every worker needs gradcheck
(and numpy, scipy, PyYAML) installed, and must read the case files, their ``.npy`` data and the
user code they name (``impl: layer.py:Name``) at the same paths as the client: a shared
filesystem, or the same checkout on every machine. Only rows and arrays come back.

Failures: an error in a case (bad input, user code that raises) comes back as its one line,
and the first in file order is reported, as in a one-process run. A worker that dies has its
tasks run again on another one (the scheduler reassigns them; ``retries`` reruns a task that
raised); a run that cannot finish -- every worker gone, a task that kills each worker it runs
on, a scheduler that is unreachable -- ends with one line (exit code 2) and writes no report.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from .errors import GradcheckError

PIP = "pip install 'gradcheck-cli[dask]'"
SPLIT_ENTRIES = 20_000   # a case with this many checked entries is split into units
RETRIES = 2              # a Dask task that raised is run this many times more
CONNECT_TIMEOUT = "10s"


class RunFailed(GradcheckError):
    """The work could not be finished (workers lost, scheduler gone): no report is written."""


@contextlib.contextmanager
def executor(jobs: int = 1, scheduler: str | None = None):
    """An Executor for ``jobs`` local processes, or for the Dask scheduler at ``scheduler``."""
    if scheduler:
        try:
            import distributed
        except ImportError:
            raise GradcheckError(f"--scheduler needs Dask's distributed scheduler: {PIP}") from None
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise GradcheckError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})") from None
        try:
            yield client.get_executor(retries=RETRIES, pure=False)
        finally:
            with contextlib.suppress(Exception):
                client.close()
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from . import cli_runtime

    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(cli_runtime.start_method()),
                               initializer=cli_runtime._worker_init)
    try:
        yield pool
    except BaseException:
        cli_runtime._kill_pool(pool)    # on an error, SIGINT or SIGTERM: kill, do not wait
        raise
    pool.shutdown()


def run_on_workers(files, cases, jobs: int, scheduler, sample, forms, limit=None, mode=None) -> list:
    """``run --jobs N`` / ``--scheduler ADDRESS``: :func:`run_cases` on :func:`executor`, with the
    CLI's progress bar. ``limit`` decides what is refused as in a one-process run; the chunks of
    copies stay within the budget that decision settles (32 MiB at most)."""
    from .cli_runtime import _Progress

    with executor(jobs, scheduler) as pool, _Progress(f"{len(files)} cases") as bar:
        return run_cases(files, cases, pool, sample, forms, limit, mode, bar.update)


def run_cases(files: list, cases: list, pool, sample=None, forms=None, limit=None, mode=None,
              progress=None) -> list:
    """Check ``cases`` (loaded from ``files``) on ``pool``; results in file order. The first
    error in file order is raised, as a one-process run would; see the module docstring."""
    from .check import finish, prepare

    jobs: list[tuple[Any, Any]] = []    # per case: (prepared case or None, futures)
    for f, case in zip(files, cases):
        args = (str(f), sample, forms, limit, mode)
        if _entries(case, sample) >= SPLIT_ENTRIES:     # prepared here too: finish() needs it
            try:
                prep = prepare(case, sample, forms, limit, None, mode)
            except GradcheckError as exc:
                jobs.append((None, [_ready(("error", exc.exit_code, str(exc)))]))
                continue
            jobs.append((prep, [pool.submit(_unit, args + (prep.budget,), u) for u in prep.units()]))
        else:
            jobs.append((None, [pool.submit(_case, args)]))
    total, done = sum(len(fs) for _, fs in jobs), 0
    results = []
    for prep, futures in jobs:
        outs = []
        for fut in futures:
            outs.append(_value(fut))
            done += 1
            if progress:
                progress(done, total)
        results.append(outs[0] if prep is None else finish(prep, outs))
    return results


def _value(fut):
    """The task's value; its error as a GradcheckError; a lost task as :class:`RunFailed`."""
    try:
        out = fut.result()
    except GradcheckError:
        raise
    except Exception as exc:  # noqa: BLE001 - KilledWorker, BrokenProcessPool, a lost scheduler
        raise RunFailed(f"the run could not finish: {type(exc).__name__}: {exc}; no report was written") from None
    if out[0] == "error":
        err = GradcheckError(out[2])
        err.exit_code = out[1]
        raise err
    return out[1]


def _ready(value):
    from concurrent.futures import Future

    fut = Future()
    fut.set_result(value)
    return fut


def _entries(case, sample) -> int:
    """Checked entries of ``case`` from its shapes alone (x and parameters of every layer)."""
    import numpy as np

    from .catalog import make_layer

    total = 0
    try:
        for cfg, shape in zip(case.layers, case.shapes):
            sizes = [int(np.prod(shape))] + [int(np.prod(s)) for s in
                                             make_layer(cfg, case.file).param_shapes(shape).values()]
            total += sum(min(n, sample) if sample else n for n in sizes)
    except GradcheckError:
        return 0        # run whole on a worker: its error comes back in file order
    return total


# -- in the worker ------------------------------------------------------------------------
_PREPARED: dict = {}     # the last case this worker prepared, for its next unit
_TUNED = False


def _heap_kept() -> None:
    """Under Dask's nanny (which sets MALLOC_TRIM_THRESHOLD_ for its workers, and so turns off
    glibc's adaptive mmap threshold), let arrays under 32 MiB come from the heap and keep freed
    heap memory: else every large array is a fresh mapping the kernel zeroes, and a unit of
    wide.yaml spends as much system time as user time (measured: 6 s against 2 s a worker)."""
    global _TUNED
    if _TUNED or "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return
    _TUNED = True
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 2**20)      # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 * 2**20)     # M_TRIM_THRESHOLD


def _guard(fn):
    """("ok", fn()) or ("error", exit code, message): not every error class pickles."""
    _heap_kept()
    try:
        return "ok", fn()
    except GradcheckError as exc:
        return "error", exc.exit_code, str(exc)
    except MemoryError:
        return "error", 2, "out of memory: this case needs more memory than the worker has"


def _case(args):
    """A whole case, in a worker."""
    from .cases import load
    from .check import run_case
    from .cli_runtime import _timed

    path, sample, forms, limit, mode = args
    return _guard(lambda: _timed(run_case, load(path), sample=sample, forms=forms, memory_limit=limit, mode=mode))


def _unit(args, unit):
    """One unit (view, tensor) of a split case, in a worker: (rows, arrays, agreement, copies)."""
    from .cases import load
    from .check import check_unit, prepare

    def run():
        if args not in _PREPARED:           # the client's estimate settled the budget: no plans made twice
            path, sample, forms, limit, mode, budget = args
            _PREPARED.clear()
            _PREPARED[args] = prepare(load(path), sample, forms, limit, None, mode, budget)
        return check_unit(_PREPARED[args], unit)

    return _guard(run)
