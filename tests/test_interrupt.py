"""Interrupted runs: SIGINT/SIGTERM exit 130/143 promptly with one line, workers die, and no
output file is left half-written (outfiles.py writes a temporary file and renames it)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradcheck_cli import outfiles
from gradcheck_cli.outfiles import OutputError, open_atomic, write_bytes, write_text

ROOT = Path(__file__).resolve().parents[1]
# a case that takes many seconds: conv-L of the benchmark with twice the batch
SLOW = """\
name: slow
input: [16, 16, 32, 32]
layers:
  - {type: conv2d, out_channels: 16, kernel: 3, padding: 1}
"""
STOP_WITHIN = 5.0       # seconds; generous (measured: well under one second)


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    (tmp_path / "slow.yaml").write_text(SLOW)
    (tmp_path / "slow2.yaml").write_text(SLOW.replace("name: slow", "name: slow2"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "gradcheck_cli", "run", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def stop(p: subprocess.Popen, sig: int, group: bool = False) -> tuple[float, str]:
    """Send ``sig`` once the run is under way; (seconds until it exited, stderr)."""
    time.sleep(2.5)
    assert p.poll() is None, "the run ended before the signal: the case is not slow enough"
    t0 = time.monotonic()
    if group:
        os.killpg(p.pid, sig)      # as Ctrl-C in a terminal: the whole process group
    else:
        p.send_signal(sig)
    try:
        _, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("the run did not stop within 20 s")
    return time.monotonic() - t0, err.decode()


def survivors(pgid: int) -> list[int]:
    """Processes still in the run's process group (its --jobs workers)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(d.name))
    return out


def no_outputs(folder: Path) -> None:
    left = sorted(p.name for p in folder.rglob("*") if p.suffix not in (".yaml",) and p.is_file())
    assert left == [], f"left behind: {left}"


OUTPUTS = ("--format", "json", "--output", "r.json", "--junit-xml", "j.xml", "--save-arrays", "arrays")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_run_with_its_code_and_no_output(tmp_path, sig, code):
    p = start(tmp_path, "slow.yaml", *OUTPUTS)
    took, err = stop(p, sig)
    assert p.returncode == code, err
    assert took < STOP_WITHIN
    assert err.strip() == f"interrupted by {signal.Signals(sig).name}: stopped; no output file was left half-written"
    no_outputs(tmp_path)


@pytest.mark.parametrize("markdown", [False, True], ids=["json", "markdown"])
def test_ctrl_c_with_jobs_kills_the_workers(tmp_path, markdown):
    args = ("--format", "markdown", "-o", "r.md") if markdown else OUTPUTS
    p = start(tmp_path, "-j", "2", "slow.yaml", "slow2.yaml", *args)
    took, err = stop(p, signal.SIGINT, group=True)
    assert p.returncode == 130, err
    assert took < STOP_WITHIN
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    deadline = time.monotonic() + 5
    while survivors(p.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert survivors(p.pid) == []
    no_outputs(tmp_path)


def test_sigterm_to_the_parent_alone_kills_the_workers(tmp_path):
    p = start(tmp_path, "-j", "2", "slow.yaml", "slow2.yaml", *OUTPUTS)
    took, err = stop(p, signal.SIGTERM)
    assert p.returncode == 143 and took < STOP_WITHIN, err
    deadline = time.monotonic() + 5
    while survivors(p.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert survivors(p.pid) == []
    no_outputs(tmp_path)


# -- outfiles ----------------------------------------------------------------------------------
def test_an_exception_while_writing_leaves_neither_file_nor_temporary(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with open_atomic(tmp_path / "r.json") as fh:
            fh.write("{\"half\": ")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_an_old_file_stays_whole_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with open_atomic(target) as fh:
            fh.write("new, but never finished")
            raise RuntimeError
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    write_text(target, "new ü")
    assert target.read_text(encoding="utf-8") == "new ü"


def test_written_files_get_the_usual_permissions(tmp_path):
    write_bytes(tmp_path / "a.npz", b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_symlink_is_followed_not_replaced(tmp_path):
    (tmp_path / "real.txt").write_text("old")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    write_text(tmp_path / "link.txt", "new")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "real.txt").read_text() == "new"


def test_a_device_is_written_directly_never_replaced(tmp_path):
    write_text(os.devnull, "discarded")
    assert Path(os.devnull).is_char_device()
    with pytest.raises(OutputError, match="/dev/full: No space left on device"):
        write_text("/dev/full", "x" * 100_000)
    assert Path("/dev/full").is_char_device()


def test_a_missing_folder_is_an_output_error_naming_the_file(tmp_path):
    with pytest.raises(OutputError, match="nope/r.json: No such file or directory"):
        write_text(tmp_path / "nope" / "r.json", "x")


def test_only_w_and_wb(tmp_path):
    with pytest.raises(ValueError):
        with open_atomic(tmp_path / "x", "a"):
            pass
    assert outfiles.TMP_SUFFIX == ".gradcheck-tmp"
