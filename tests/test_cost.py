"""The cost estimate, the memory limit and the refusal, the estimate line and lazy imports."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gradcheck_cli import cost, numeric
from gradcheck_cli.check import run_case
from gradcheck_cli.cli import main
from gradcheck_cli.errors import GradcheckError
from gradcheck_cli.network import Network

ROOT = Path(__file__).resolve().parents[1]
CONV = dict(input=[2, 4, 10, 10], loss="projection",
            layers=[{"type": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1}])


@pytest.mark.parametrize("text, value", [("2GiB", 2 * 2**30), ("500M", 500 * 10**6), ("1e9", 10**9),
                                         ("64 mib", 64 * 2**20), ("1024", 1024), ("1.5k", 1500)])
def test_parse_bytes(text, value):
    assert cost.parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "lots", "2 parsecs", "-5M", "0"])
def test_parse_bytes_rejects(text):
    with pytest.raises(ValueError):
        cost.parse_bytes(text)


def test_memory_limit_precedence(monkeypatch):
    monkeypatch.setenv(cost.ENV, "3G")
    assert cost.memory_limit("1G") == 10**9          # the option wins
    assert cost.memory_limit(None) == 3 * 10**9      # then the environment
    monkeypatch.delenv(cost.ENV)
    monkeypatch.setattr(cost, "available_memory", lambda: 10 * 10**9)
    assert cost.memory_limit(None) == 9 * 10**9      # else 90% of what is available
    monkeypatch.setenv(cost.ENV, "nonsense")
    with pytest.raises(GradcheckError, match=cost.ENV):
        cost.memory_limit(None)


def _estimate(make_case, limit=None, **doc):
    net = Network.build(make_case(name="c", **doc))
    xs = net.forward()
    plans = [numeric.plan(net, i, t, np.arange(net.value_of(i, t, xs).size)) for i, t in net.tensors()]
    return cost.estimate(net, plans, 3, limit)


def test_estimate_counts_entries_and_evaluations(make_case):
    est = _estimate(make_case, **CONV)
    assert est.entries == 2 * 4 * 100 + 4 * 4 * 9 + 4
    assert est.evaluations == 2 * (36 + 36 + 1) + 3 * 3     # pairs per colour, probes
    assert est.loop_evaluations == 2 * est.entries
    assert est.fits and est.peak_bytes > cost.OVERHEAD
    assert "entries" in est.summary() and "forward evaluations" in est.summary()


def test_estimate_grows_with_the_layer(make_case):
    small = _estimate(make_case, **CONV)
    big = _estimate(make_case, **{**CONV, "input": [8, 4, 40, 40]})
    assert big.base_bytes > small.base_bytes and big.chunk_bytes > small.chunk_bytes


def test_chunks_shrink_to_the_limit_and_refuse_below_one_pair(make_case):
    roomy = _estimate(make_case, **CONV)
    tight = _estimate(make_case, limit=roomy.base_bytes + roomy.min_chunk_bytes, **CONV)
    assert tight.fits and tight.budget <= roomy.budget
    refused = _estimate(make_case, limit=roomy.base_bytes, **CONV)
    assert not refused.fits
    assert "--sample" in refused.refusal() and "memory limit" in refused.refusal()


def test_numpy_memory_of_a_check_stays_under_the_estimate(make_case):
    """tracemalloc sees numpy's buffers: the check's own allocations at their peak must stay
    under the estimate without the fixed interpreter overhead."""
    case = make_case(name="c", **{**CONV, "input": [4, 6, 20, 20]})
    est = _estimate(make_case, **{**CONV, "input": [4, 6, 20, 20]})
    tracemalloc.start()
    try:
        run_case(case)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < est.peak_bytes - cost.OVERHEAD


def _write(tmp_path, text):
    p = tmp_path / "case.yaml"
    p.write_text(textwrap.dedent(text))
    return p


CASE = """
    name: conv-small
    input: [2, 3, 8, 8]
    layers:
      - {type: conv2d, out_channels: 3, kernel: 3, padding: 1}
    loss: projection
"""


def test_cli_refuses_over_the_limit_with_one_line_and_exit_2(tmp_path, monkeypatch):
    path = _write(tmp_path, CASE)
    monkeypatch.setenv(cost.ENV, "20M")
    res = CliRunner().invoke(main, ["run", str(path)])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: conv-small: the check needs about")
    assert "--sample" in lines[0] and "GRADCHECK_MAX_MEMORY" in lines[0]


def test_cli_max_memory_option(tmp_path):
    path = _write(tmp_path, CASE)
    assert CliRunner().invoke(main, ["run", str(path), "--max-memory", "20M"]).exit_code == 2
    ok = CliRunner().invoke(main, ["run", str(path), "--max-memory", "2GiB"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(main, ["run", str(path), "--max-memory", "much"])
    assert bad.exit_code == 2 and "--max-memory" in bad.output


def test_no_estimate_line_or_progress_when_not_a_terminal(tmp_path):
    path = _write(tmp_path, CASE)
    res = CliRunner().invoke(main, ["run", str(path)])      # output holds stdout and stderr
    assert res.exit_code == 0
    assert "estimate:" not in res.output and "checking" not in res.output


def _imports_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return set(out.split())


def test_help_imports_neither_numpy_nor_scipy():
    mods = _imports_after("from click.testing import CliRunner\nfrom gradcheck_cli.cli import main\n"
                          "CliRunner().invoke(main, ['--help'])")
    assert "numpy" not in mods and "scipy" not in mods and "rich" not in mods


def test_run_does_not_import_scipy_signal():
    mods = _imports_after("from click.testing import CliRunner\nfrom gradcheck_cli.cli import main\n"
                          f"r = CliRunner().invoke(main, ['run', r'{ROOT / 'benchmarks' / 'conv-M.yaml'}', '--sample', '3'])\n"
                          "assert r.exit_code == 0, r.output")
    assert "numpy" in mods and "scipy.signal" not in mods and "torch" not in mods


class _Tty:
    """A stand-in for a terminal's stderr."""

    def __init__(self):
        self.text = []

    def isatty(self):
        return True

    def write(self, s):
        self.text.append(s.decode() if isinstance(s, bytes) else s)
        return len(s)

    def flush(self):
        pass


def test_progress_bar_in_a_terminal_after_a_second_only(monkeypatch):
    from gradcheck_cli import cli

    monkeypatch.setattr(sys, "stderr", _Tty())
    quick = cli._Progress("c")
    quick.update(5, 10)
    assert quick.bar is None                              # under a second: nothing
    slow = cli._Progress("c")
    slow.start -= 2.0
    slow.update(5, 10)
    assert slow.bar is not None and slow.bar.tasks[0].completed == 5
    slow.__exit__(None, None, None)
    monkeypatch.setattr(sys, "stderr", type("Pipe", (_Tty,), {"isatty": lambda self: False})())
    piped = cli._Progress("c")
    piped.start -= 2.0
    piped.update(5, 10)
    assert piped.bar is None


def test_estimate_line_for_a_big_check_in_a_terminal(monkeypatch, make_case):
    from gradcheck_cli import cli

    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    est = _estimate(make_case, **{**CONV, "input": [16, 4, 20, 20]})
    assert est.entries >= cli._Progress.BIG
    cli._Progress("c").estimate(est)
    assert "".join(tty.text).startswith("estimate: c: ")
    tty.text.clear()
    cli._Progress("c").estimate(_estimate(make_case, **CONV))   # small: silent
    assert tty.text == []


def test_list_and_validate_do_not_import_scipy():
    for args in (["list"], ["validate", str(ROOT / "benchmarks" / "conv-M.yaml")]):
        mods = _imports_after("from click.testing import CliRunner\nfrom gradcheck_cli.cli import main\n"
                              f"r = CliRunner().invoke(main, {args!r})\nassert r.exit_code == 0, r.output")
        assert "scipy" not in mods, args


def test_lazy_module_imports_on_first_use():
    from gradcheck_cli.lazy import LazyModule

    lazy = LazyModule("json")
    assert lazy._module is None
    assert lazy.dumps([1]) == "[1]" and lazy._module is not None
