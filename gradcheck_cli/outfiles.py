"""Output files written whole or not at all.

Every report file (JSON, JUnit, markdown, HTML, table, .npz, PNG) is written to a temporary file
in the same folder and renamed into place, so an interrupted run (Ctrl-C, SIGTERM, a full disk)
never leaves a half-written file where CI looks for one. A target that exists and is not a
regular file (``/dev/stdout``, ``/dev/null``, a pipe from ``>(cmd)``) is written directly: it
cannot be replaced, and renaming over it would destroy the device or the link.

A file that cannot be written is an :class:`OutputError` (exit 2, one line naming the file).
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterator

from .errors import GradcheckError

TMP_SUFFIX = ".gradcheck-tmp"


class OutputError(GradcheckError):
    """An output file cannot be written (no space, no permission, a missing folder...)."""

    def __init__(self, path: str | Path, exc: OSError) -> None:
        super().__init__(f"{path}: {exc.strerror or exc}")


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with open_atomic(path, "w") as fh:
        fh.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with open_atomic(path, "wb") as fh:
        fh.write(data)


@contextlib.contextmanager
def open_atomic(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """A file object for ``path`` ("w" text UTF-8, or "wb"); renamed into place when the block
    ends without an exception, removed otherwise (also on KeyboardInterrupt and signals)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_atomic: mode {mode!r}, expected 'w' or 'wb'")
    target = os.path.realpath(path)     # a symlink keeps pointing at the new file
    if _special(target):
        try:
            with open(target, mode, **_text(mode)) as fh:
                yield fh
        except OSError as exc:
            raise OutputError(path, exc) from None
        return
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=TMP_SUFFIX,
                                   dir=os.path.dirname(target))
        os.fchmod(fd, _mode_for(target))
        with os.fdopen(fd, mode, **_text(mode)) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise OutputError(path, exc) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _text(mode: str) -> dict:
    return {} if "b" in mode else {"encoding": "utf-8"}


def _special(target: str) -> bool:
    """Whether ``target`` exists and is not a regular file (a device, a pipe, a socket)."""
    try:
        return not stat.S_ISREG(os.stat(target).st_mode)
    except OSError:
        return False


def _mode_for(target: str) -> int:
    """The permissions a plain ``open(target, "w")`` would give: the old file's, else 0666 - umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
