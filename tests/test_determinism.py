"""The same case and seed give byte-identical JSON: twice in one process, and in two processes.

Same machine and environment: a different BLAS kernel (e.g. OPENBLAS_CORETYPE) changes the last
bits of the measured errors (never a verdict), so the subprocesses inherit this environment.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from gradcheck_cli.cli import main

ROOT = Path(__file__).resolve().parents[1]
CASES = ["relu-pool-generated.yaml", "conv-float32.yaml", "relu-at-zero.yaml", "fc-batch-l2.yaml"]


def _json_in_process():
    res = CliRunner().invoke(main, ["run", "--format", "json", *[str(ROOT / "cases" / c) for c in CASES]])
    assert res.exit_code == 0, res.output
    return res.output.encode()


def _json_in_subprocess(tmp_path, name):
    out = tmp_path / name
    subprocess.run([sys.executable, "-m", "gradcheck_cli", "run", "--format", "json", "-o", str(out),
                    *[str(ROOT / "cases" / c) for c in CASES]], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "random"})
    return out.read_bytes()


def test_same_case_same_bytes_twice_in_one_process():
    first = _json_in_process()
    assert b'"kinks"' in first and b'"resampled_samples"' in first
    assert _json_in_process() == first


def test_same_case_same_bytes_in_two_processes(tmp_path):
    a = _json_in_subprocess(tmp_path, "a.json")
    b = _json_in_subprocess(tmp_path, "b.json")
    assert a == b
    assert a.decode().strip() == _json_in_process().decode().strip()
