"""Checks on workers (distribute.py): `run --scheduler ADDRESS` on a Dask cluster and `run --jobs N`
give the report of a one-process run; a big case is split by layer over the workers; a worker
killed mid-run changes nothing; without Dask, --scheduler says which pip command to run."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gradcheck_cli import distribute
from gradcheck_cli.cli import main

ROOT = Path(__file__).resolve().parent.parent
# small, but with enough layers and tensors to split: 8 views x 1-3 tensors
WIDE = {"name": "wide", "seed": 3, "input": [2, 3, 10, 10], "loss": "cross_entropy", "layers": [
    {"type": "conv2d", "out_channels": 6, "kernel": 3, "padding": 1}, {"type": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "conv2d", "out_channels": 6, "kernel": 3, "padding": 1}, {"type": "tanh"},
    {"type": "flatten"}, {"type": "linear", "out_features": 5}]}


def _run(*args):
    res = CliRunner().invoke(main, ["run", *map(str, args)])
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed", reason="the [dask] extra: pip install 'gradcheck-cli[dask]'")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as lc, distributed.Client(lc) as client:
        yield lc, client


@pytest.fixture
def wide(tmp_path, monkeypatch) -> Path:
    """The WIDE case, split into units whatever its size (the split is decided by the client)."""
    monkeypatch.setattr(distribute, "SPLIT_ENTRIES", 1)
    path = tmp_path / "wide.yaml"
    path.write_text(yaml.safe_dump(WIDE), encoding="utf-8")
    return path


def _executed(client) -> dict:
    return client.run(lambda dask_worker: dask_worker.state.executed_count)


def test_scheduler_gives_the_bytes_of_a_one_process_run(cluster):
    lc, _ = cluster
    alone = _run(ROOT / "cases", "--format", "json")
    assert alone[0] == 0 and alone[1].startswith("{")
    assert _run(ROOT / "cases", "--format", "json", "--scheduler", lc.scheduler_address) == alone


def test_a_big_case_is_split_by_layer_over_both_workers(cluster, wide):
    lc, client = cluster
    alone = _run(wide, "--format", "json")
    before = _executed(client)
    spread = _run(wide, "--format", "json", "--scheduler", lc.scheduler_address)
    after = _executed(client)
    assert spread == alone
    ran = {w: after[w] - before.get(w, 0) for w in after}
    assert len(ran) == 2 and all(n > 0 for n in ran.values()), ran
    assert sum(ran.values()) >= 10          # one task per (view, tensor), not one per case


def test_jobs_splits_a_single_case_with_the_same_bytes(wide):
    assert _run(wide, "--format", "json", "--jobs", "2") == _run(wide, "--format", "json")


def test_a_worker_killed_mid_run_changes_nothing(cluster, wide):
    lc, client = cluster
    alone = _run(wide, "--format", "json")
    pids = client.run(os.getpid)
    killed, finished = [], threading.Event()

    def kill_a_busy_worker():
        while not finished.is_set():
            busy = client.run_on_scheduler(
                lambda dask_scheduler: [w.address for w in dask_scheduler.workers.values() if w.processing])
            if busy and busy[0] in pids:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.01)

    t = threading.Thread(target=kill_a_busy_worker)
    t.start()
    try:
        out = _run(wide, "--format", "json", "--scheduler", lc.scheduler_address)
    finally:
        finished.set()
        t.join()
    assert killed, "the run ended before a worker could be killed"
    assert out == alone
    client.wait_for_workers(2, timeout=60)      # the nanny restarts it, for the next tests


def test_without_dask_scheduler_exits_2_naming_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)     # `import distributed` fails
    code, out, err = _run(ROOT / "cases" / "linear-mse.yaml", "--scheduler", "tcp://127.0.0.1:8786")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"error: --scheduler needs Dask's distributed scheduler: {distribute.PIP}"]


def test_an_unreachable_scheduler_is_one_line_and_no_report(monkeypatch, tmp_path):
    pytest.importorskip("distributed", reason="the [dask] extra")
    monkeypatch.setattr(distribute, "CONNECT_TIMEOUT", "1s")
    report = tmp_path / "r.json"
    code, out, err = _run(ROOT / "cases" / "linear-mse.yaml", "--scheduler", "tcp://127.0.0.1:9",
                          "--format", "json", "-o", report)
    assert code == 2 and out == "" and not report.exists()
    assert len(err.strip().splitlines()) == 1 and "cannot reach the Dask scheduler" in err


def test_a_run_that_cannot_finish_is_one_line_and_no_report(tmp_path):
    """Every worker that runs the case dies (user code that exits the process): the run stops
    with one line, exit code 2, and leaves no report behind."""
    (tmp_path / "dies.py").write_text(
        "import os\n\n\nclass Dies:\n    def init_params(self, input_shape, rng):\n        return {}\n\n"
        "    def forward(self, x, params):\n"
        f"        if os.getpid() != {os.getpid()}:\n            os._exit(1)\n        return x\n\n"
        "    def backward(self, dy, x, params):\n        return {'x': dy}\n", encoding="utf-8")
    case = {"name": "dies", "input": [2, 3], "layers": [{"type": "custom", "impl": "dies.py:Dies"}]}
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(case), encoding="utf-8")
    report = tmp_path / "r.json"
    code, out, err = _run(tmp_path, "--jobs", "2", "--format", "json", "-o", report)
    assert code == 2 and out == "" and not report.exists()
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: the run could not finish"), err


def test_workers_are_not_forked_once_a_threaded_runtime_is_loaded(monkeypatch):
    """A forked child of a process running jax's or torch's threads can deadlock on a lock one of
    them held: --jobs then starts its workers with forkserver."""
    import sys
    import types

    from gradcheck_cli import cli_runtime

    monkeypatch.setattr(cli_runtime, "_START", "fork")
    for name in cli_runtime._THREADED:
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert cli_runtime.start_method() == "fork"
    monkeypatch.setitem(sys.modules, "jax", types.ModuleType("jax"))
    assert cli_runtime.start_method() == "forkserver"
