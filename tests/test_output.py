"""Terminal output: a line per passing case, the failing rows of a failing one, every line within
the width (COLUMNS 80, 100, 140); the layout helpers; culprits and composition rows everywhere."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from gradcheck_cli.check import Direction, run_case
from gradcheck_cli.cases import load
from gradcheck_cli.cli import main
from gradcheck_cli.layers.conv import Conv2d
from gradcheck_cli.layers.conv1d import Correlation1d
from gradcheck_cli.report import junit, markdown, table
from gradcheck_cli.report.layout import Col, command, grid, plain, records, shorten, stack, wrap

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "cases"
WIDTHS = (80, 100, 140)


class ShiftedConv2d(Conv2d):
    """conv2d whose dL/dW (every form) is rolled by one along kw: a shifted-border bug."""

    def _grads(self, form, dy, x, params):
        g = super()._grads(form, dy, x, params)
        return {**g, "W": np.roll(g["W"], 1, axis=-1)}


class ScaledCorrelation1d(Correlation1d):
    """correlation1d whose dL/dx is 1 % too large in the correlation form only."""

    def correlation(self, dy, x, params):
        g = super().correlation(dy, x, params)
        return {**g, "x": g["x"] * 1.01}


BUGGY = """\
name: a-rather-long-case-name-for-a-buggy-network-of-two-wrong-layers
seed: 3
input: [2, 2, 5, 6]
layers:
  - {type: shifted_convolution_two_d, out_channels: 3, kernel: 3, padding: 1}
  - {type: flatten}
  - {type: linear, out_features: 4}
loss: mse
"""


@pytest.fixture
def buggy(tmp_path, temp_layer):
    temp_layer("shifted_convolution_two_d", ShiftedConv2d)
    deep = tmp_path / "a-folder-with-a-long-name" / "and-another-one-below-it"
    deep.mkdir(parents=True)
    f = deep / "buggy-network-case.yaml"
    f.write_text(BUGGY, encoding="utf-8")
    return f


def run(*args, columns: int = 80):
    return CliRunner().invoke(main, ["run", *map(str, args)], env={"COLUMNS": str(columns)})


def widest(text: str) -> int:
    return max((cell_len(ln) for ln in text.splitlines()), default=0)


# ------------------------------------------------------------------------------------------
# the glance view
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def all_cases():
    return [run_case(load(f)) for f in sorted(CASES.glob("*.yaml"))]


def test_passing_cases_print_one_line_each_and_a_summary():
    files = sorted(CASES.glob("*.yaml"))
    res = run(CASES, columns=80)
    assert res.exit_code == 0, res.output
    out = res.stdout.splitlines()
    assert len(out) == len(files) + 1
    assert all(ln.startswith("PASS ") for ln in out[:-1])
    assert out[-1].startswith(f"{len(files)} of {len(files)} cases passed")
    assert widest(res.stdout) <= 80
    names = {load(f).name for f in files}
    assert {ln.split()[1] for ln in out[:-1]} == names         # no name cut at 80 columns


@pytest.mark.parametrize("width", WIDTHS)
def test_the_case_lines_fit_and_say_what_was_checked(all_cases, width):
    lines = [plain(ln) for ln in table.lines(all_cases, width)]
    assert len(lines) == len(all_cases) + 1 and max(map(cell_len, lines)) <= width
    r = next(r for r in all_cases if r.name == "linear-mse")
    line = next(ln for ln in lines if ln.split()[1] == "linear-mse")
    tensors = {(row.layer, row.tensor) for row in r.rows}
    assert f"{len(tensors)} tensors" in line
    if width > 80:      # at 80 the time is the first thing left out when the names are long
        assert re.search(r"\b\d+\.\d\d s$", line)
    rel = max(row.max_rel_error for row in r.rows)
    assert f"{rel:.2e}" in line


def test_a_narrow_width_leaves_out_time_and_kinks_before_the_names(all_cases):
    lines = [plain(ln) for ln in table.lines(all_cases, 60)]
    assert len(lines) == len(all_cases) + 1 and max(map(cell_len, lines)) <= 60
    assert {ln.split()[1] for ln in lines[:-1]} == {r.name for r in all_cases}
    assert all(re.search(r"entries +rel \d", ln) for ln in lines[:-1])
    assert not any("kinks" in ln for ln in lines[:-1])


# ------------------------------------------------------------------------------------------
# a failing case
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("columns", WIDTHS)
def test_a_failing_case_fits_the_width(buggy, columns):
    res = run(buggy, columns=columns)
    assert res.exit_code == 1
    out = res.stdout
    assert widest(out) <= columns, "\n".join(ln for ln in out.splitlines() if cell_len(ln) > columns)
    assert "wrong: layers[0].W" in out and "worst entries" in out
    r = run_case(load(buggy))
    failing = [row for row in r.rows if not row.passed]
    assert failing
    for row in failing:           # every failing row shown, with its worst index (maybe without spaces)
        idx = str(list(row.worst_index))
        assert idx in out or idx.replace(" ", "") in out
    passing = [row for row in r.rows if row.passed]
    assert not any(f"{row.label} " in ln and row.form in ln for row in passing
                   for ln in out.split("worst entries")[0].splitlines()[3:])
    # the reproduce line pastes back to the command, however it was wrapped
    cmd = out.split("reproduce:", 1)[1].split("\n\n", 1)[0].replace("\\\n", "")
    assert shlex.split(cmd) == ["gradcheck", "run", str(buggy), "--save-arrays", "gradcheck-arrays"]


def test_verbose_shows_every_row_within_the_width(buggy):
    res = run(buggy, "-v", columns=80)
    r = run_case(load(buggy))
    assert widest(res.stdout) <= 80
    assert res.stdout.count(" pass") >= sum(row.passed for row in r.rows)
    assert "forms agree to" in res.stdout


def test_a_long_type_name_is_never_cut(tmp_path, temp_layer):
    temp_layer("scaled_correlation1d", ScaledCorrelation1d)
    f = tmp_path / "c.yaml"
    f.write_text("input: [3, 9]\nlayers:\n  - {type: scaled_correlation1d, kernel: 3}\n", encoding="utf-8")
    for columns in WIDTHS:
        out = run(f, columns=columns).stdout
        assert widest(out) <= columns and "…" not in out
        assert "wrong: layers[0].x" in out
        assert "scaled_correlation1d" in out or columns == 80


def test_notes_are_wrapped_under_their_row(all_cases):
    r = all_cases[0]
    bad = r.rows[0]
    saved = bad.passed, bad.note
    bad.passed, bad.note = False, "a note " * 40
    try:
        lines = [plain(ln) for ln in table.case_block(r, 80, verbose=False)]
    finally:
        bad.passed, bad.note = saved
    assert max(map(cell_len, lines)) <= 80
    notes = [ln for ln in lines if "a note" in ln]
    assert len(notes) >= 3 and notes[0].lstrip().startswith("note:")


# ------------------------------------------------------------------------------------------
# composition rows and culprits in every format
# ------------------------------------------------------------------------------------------
@pytest.fixture
def composed():
    r = run_case(load(CASES / "linear-mse.yaml"))
    r.composition = [Direction("kron", 0, 1.0, 1.0, 0.0, 0.0, 1e-9, True),
                     Direction("correlation", 1, 2.5, 2.0, 0.5, 0.2, 1e-9, False)]
    return r


def test_composition_rows_in_the_table(composed):
    glance = "\n".join(plain(ln) for ln in table.lines([composed], 80))
    assert "network <grad, d1>" in glance and "network <grad, d0>" not in glance
    assert "FAIL" in glance and f"1 of {len(composed.checks) + len(composed.composition)} checks fail" in glance
    full = "\n".join(plain(ln) for ln in table.lines([composed], 80, verbose=True))
    assert "network <grad, d0>" in full and "network <grad, d1>" in full
    assert widest(full) <= 80


def test_composition_and_culprits_in_markdown_and_junit(composed, buggy):
    md = markdown.render([composed])
    assert "network <grad, d1>" in md and "network <grad, d0>" in md
    xml = junit.render([composed])
    assert xml.count("network &lt;grad, d") == 2 and 'failures="1"' in xml
    bad = run_case(load(buggy))
    assert "wrong: layers[0].W" in markdown.render([bad])
    assert "wrong: layers[0].W" in junit.render([bad])


# ------------------------------------------------------------------------------------------
# layout helpers
# ------------------------------------------------------------------------------------------
def test_grid_never_exceeds_the_width_and_falls_back_to_records():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 6))
        cols = [Col("h" * int(rng.integers(1, 12)), ["x" * int(rng.integers(0, 30)) for _ in range(n)],
                    drop=int(rng.integers(0, 3)), shrink=int(rng.integers(0, 2)) * 6) for _ in range(int(rng.integers(1, 8)))]
        width = int(rng.integers(40, 160))
        drawn = grid(cols, width)
        if drawn is None:
            drawn = records(cols, width)
        assert max(cell_len(plain(ln)) for ln in drawn) <= width


def test_grid_prefers_abbreviations_to_dropping_columns():
    cols = [Col("tensor", ["layers[0].x"]), Col("form", ["correlation"], compact=["corr"]),
            Col("max abs err", ["1.00e-05"], short="abs", right=True, drop=1)]
    wide = plain(grid(cols, 80)[2])
    assert "correlation" in wide
    narrow = [plain(ln) for ln in grid(cols, 27)]
    assert "corr " in narrow[2] + " " and "abs" in narrow[0] and max(map(len, narrow)) <= 27
    assert "abs" not in plain(grid(cols, 20)[0])


def test_shorten_wrap_stack():
    assert shorten("correlation1d-seed003", 12) == "correl…ed003"
    assert shorten("short", 12) == "short"
    assert all(cell_len(plain(ln)) <= 30 for ln in wrap("word " * 50 + "x" * 80, 30))
    lines = stack([("", "FAIL", ""), (" ", "name", ""), (" · ", "a" * 50, ""), (" · ", "b" * 10, "")], 40)
    assert all(cell_len(plain(ln)) <= 40 for ln in lines)
    assert "".join(plain(ln).strip() for ln in lines).replace("·", "").replace(" ", "") == \
        "FAILname" + "a" * 50 + "b" * 10


def test_command_lines_paste_back():
    argv = ["gradcheck", "run", "/tmp/" + "d" * 120 + "/case.yaml", "--sample", "5", "--save-arrays", "out dir"]
    lines = [plain(ln) for ln in command(argv, 50, prefix="reproduce:")]
    assert max(map(cell_len, lines)) <= 50 and len(lines) > 2
    assert shlex.split("\n".join(lines).replace("\\\n", "")[len("reproduce:"):]) == argv
