"""How the CLI runs: exit codes, errors as one line, SIGINT/SIGTERM, --jobs workers, progress.

Exit codes: 0 every check passed; 1 some gradient disagrees; 2 bad input or usage;
3 a bug in gradcheck itself; 130 / 143 interrupted (SIGINT / SIGTERM).
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
import time
import warnings

import click

from .errors import GradcheckError
from .outfiles import OutputError, open_atomic, write_text

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2
# --jobs worker processes: fork where it is the platform's default (Linux: no re-import, ~1 s
# less per worker), else spawn (macOS, Windows). The output is the same either way.
_START = "fork" if sys.platform.startswith("linux") else "spawn"
_THREADED = ("jax", "torch")     # runtimes whose threads a fork copies in an unknown state


def start_method() -> str:
    """How to start --jobs workers now: not fork once a multithreaded runtime (a torch or jax
    case) is loaded, since a forked child can deadlock on a lock one of its threads held."""
    if _START == "fork" and any(m in sys.modules for m in _THREADED):
        return "forkserver"
    return _START


EXIT_INTERNAL = 3


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, so that no ``except Exception`` (user code
    included) swallows it; unwinding removes the temporary output files (outfiles.py)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# write errors that mean "the output cannot be written", also when no file name is attached
_WRITE_ERRNOS = {errno.EPIPE, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}
_FLOAT_WARNINGS = r"(overflow|invalid value|divide by zero|underflow) encountered"
_MAX_LINES, _MAX_LINE = 12, 400     # what an error message may print at most


@contextlib.contextmanager
def _stop_on_signals():
    """SIGINT and SIGTERM raise :class:`Interrupted` (instead of KeyboardInterrupt, which click
    turns into "Aborted!" and exit 1). A second signal while unwinding exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame):
        if fired:
            os._exit(128 + signum)
        fired.append(signum)
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in _STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _say(prefix: str, msg: str) -> None:
    """One message on stderr, cut to _MAX_LINES lines of at most _MAX_LINE characters."""
    lines = str(msg).splitlines() or [""]
    if len(lines) > _MAX_LINES:
        lines = lines[:_MAX_LINES - 1] + [f"  ... ({len(lines) - _MAX_LINES + 1} more lines)"]
    lines = [ln if len(ln) <= _MAX_LINE else ln[:_MAX_LINE - 1] + "…" for ln in lines]
    click.echo(prefix + "\n".join(lines), err=True)


def _silence_stdout() -> None:
    """Point stdout at /dev/null after a failed write, so that the interpreter's final flush
    does not fail again (with a traceback and exit 120)."""
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except OSError as exc:
        _silence_stdout()
        raise OutputError("stdout", exc) from None


class _Group(click.Group):
    """A group whose commands end in one line on stderr, never a traceback.

    GradcheckError (bad input) and a file that cannot be read or written exit 2; so do stdout
    that cannot be written (a full disk, a closed pipe) and running out of memory. SIGINT and
    SIGTERM exit 130 and 143 with one line. Anything else is a bug in gradcheck: exit 3, so that
    it is never mistaken for "gradients disagree" (1); GRADCHECK_DEBUG=1 shows the traceback.
    """

    def main(self, *args, **kwargs):
        with _stop_on_signals():
            try:
                return super().main(*args, **kwargs)
            except Interrupted as exc:
                name = signal.Signals(exc.signum).name
                click.echo(f"interrupted by {name}: stopped; no output file was left half-written", err=True)
                sys.exit(128 + exc.signum)

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings():
                # numpy's floating-point warnings are noise here: a NaN/Inf that matters is in
                # the verdict's note, and an overflow at the checked point is refused (guards.py)
                warnings.filterwarnings("ignore", _FLOAT_WARNINGS, RuntimeWarning)
                try:
                    return super().invoke(ctx)
                finally:
                    _flush_stdout()
        except GradcheckError as exc:
            _say("error: ", exc)
            from .report.github import bad_input    # GitHub Actions: an annotation at the case's line

            if (line := bad_input(exc)) is not None:
                click.echo(line)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:   # raised by code, not by a signal (those raise Interrupted)
            raise Interrupted(signal.SIGINT) from None
        except SystemExit as exc:
            if not _rich_broken_pipe(exc):
                raise
            _say("error: ", "stdout: Broken pipe")
            ctx.exit(EXIT_BAD_INPUT)
        except MemoryError:
            click.echo("error: out of memory: this case needs more memory than the machine has; use a "
                       "smaller input or --sample", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except OSError as exc:
            if os.environ.get("GRADCHECK_DEBUG"):
                raise
            if exc.filename is None and exc.errno not in _WRITE_ERRNOS:
                _internal(ctx, exc)
            if exc.filename is None:
                _silence_stdout()
            _say("error: ", f"{exc.filename or 'stdout'}: {exc.strerror or exc}")
            ctx.exit(EXIT_BAD_INPUT)
        except Exception as exc:  # noqa: BLE001 - the last line of defence, see the docstring
            if os.environ.get("GRADCHECK_DEBUG"):
                raise
            _internal(ctx, exc)


def _rich_broken_pipe(exc: SystemExit) -> bool:
    """Whether ``exc`` is rich's answer to a closed stdout (Console.on_broken_pipe exits 1, which
    here means "gradients disagree")."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return exc.code == 1 and tb is not None and tb.tb_frame.f_code.co_name == "on_broken_pipe"


def _internal(ctx: click.Context, exc: Exception) -> None:
    _say("internal error: ", f"{type(exc).__name__}: {exc} (a bug in gradcheck; "
                             "rerun with GRADCHECK_DEBUG=1 for the traceback)")
    ctx.exit(EXIT_INTERNAL)


def _timed(check, case, **kw):
    """``check(case, **kw)``, its result's ``seconds`` set to the wall time when the engine left it 0."""
    start = time.perf_counter()
    result = check(case, **kw)
    if not result.seconds:
        result.seconds = time.perf_counter() - start
    return result


def _worker_init() -> None:
    """A --jobs worker: the parent stops it (it kills the pool on SIGINT/SIGTERM); Ctrl-C in a
    terminal, sent to the whole process group, must not make each worker print a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    warnings.filterwarnings("ignore", _FLOAT_WARNINGS, RuntimeWarning)


def _kill_pool(pool) -> None:
    """Kill the workers of ``pool`` at once (shutdown alone waits for the running cases)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        with contextlib.suppress(Exception):
            p.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(1.0)


BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOTO_NUM_THREADS")


def _one_blas_thread() -> None:
    """Use one BLAS thread unless the user chose a number: a check's matrix products are small,
    and a second thread waiting on a busy core costs more than it gives (case L of the
    benchmark: 2.1-3.2 s with one thread, 3-12 s with two on a loaded 2-core machine).
    Only effective before numpy is imported, which the CLI defers until here."""
    if "numpy" not in sys.modules and not any(v in os.environ for v in BLAS_THREAD_VARS):
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"


def _emit(results, fmt: str, output: str | None, verbose: bool = False) -> None:
    if fmt == "table":
        from .report import table

        if output:
            with open_atomic(output) as fh:
                table.render(results, table.console(fh, table.terminal_width(fh)), verbose)
        else:
            table.render(results, table.console(width=table.terminal_width()), verbose)
        return
    if fmt == "json":
        from .report.jsonout import render
    else:
        from .report.markdown import render
    text = render(results)
    if output:
        write_text(output, text)
    else:
        click.echo(text, nl=False)


class _Progress:
    """A rich progress bar on stderr, shown only in a terminal and only after about a second;
    before a big check, one line with its estimated cost (also only in a terminal)."""

    BIG = 20_000        # entries from which the estimate is printed

    def __init__(self, label: str) -> None:
        self.label, self.bar, self.task, self.start = label, None, None, time.monotonic()

    def __enter__(self) -> "_Progress":
        return self

    def estimate(self, est) -> None:
        if sys.stderr.isatty() and est.fits and est.entries >= self.BIG:
            click.echo(f"estimate: {est.summary()}", err=True)

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            if not sys.stderr.isatty() or time.monotonic() - self.start < 1.0:
                return
            from rich.console import Console
            from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

            self.bar = Progress(*Progress.get_default_columns(), MofNCompleteColumn(), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(f"checking {self.label}", total=total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
