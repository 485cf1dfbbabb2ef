"""`gradcheck run --html`: one self-contained file, every case, a map for every failing tensor."""
from __future__ import annotations

import base64
import re

import numpy as np
from click.testing import CliRunner

from gradcheck_cli.cli import main
from gradcheck_cli.report import html
from gradcheck_cli.report.html import MAX_SLICES, error_ratio, pick_slices

from test_output import BUGGY, CASES, ROOT, ShiftedConv2d

EXTERNAL = re.compile(r"https?://|(src|href)\s*=\s*['\"]?(//|[a-z]+:(?!image/png;base64))|url\(|@import|<link|<script",
                      re.I)


def test_html_is_one_self_contained_file_with_a_map_per_failing_tensor(tmp_path, temp_layer):
    temp_layer("shifted_convolution_two_d", ShiftedConv2d)
    (tmp_path / "buggy.yaml").write_text(BUGGY, encoding="utf-8")
    out = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["run", str(tmp_path / "buggy.yaml"), str(ROOT / "examples" / "leaky-buggy.yaml"),
                                    str(CASES / "linear-mse.yaml"), "--html", str(out)])
    assert res.exit_code == 1, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["buggy.yaml", "report.html"]     # one file
    doc = out.read_text(encoding="utf-8")
    assert not EXTERNAL.search(doc), EXTERNAL.search(doc)
    # every case; the passing one collapsed, the failing ones open
    assert doc.count("<details open>") == 2
    assert re.search(r"<details><summary><span class='pass'>PASS</span> <b>linear-mse</b>", doc)
    # a map for every failing tensor: conv W (three forms alike: one set) and the custom layer's x
    maps = re.findall(r"<figure class='heatmap' data-tensor='([^']+)' data-forms='([^']+)'", doc)
    assert sorted(maps) == [("layers[0].W", "kron correlation spray"), ("layers[0].x", "custom")]
    assert "wrong: layers[0].W" in doc and "wrong: layers[0].x" in doc
    # each tensor's maps: the 3x2 slices of W [o, c, :, :] in the error, analytic and numerical maps
    for label in ("[0, 0, :, :]", "[2, 1, :, :]"):
        assert doc.count(f"<div>{label}</div>") == 3
    for png in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", doc):
        assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"


def test_slices_are_capped_and_the_cap_is_said():
    ratio = np.zeros((6, 8, 3, 3))
    ratio[5, 7, 1, 1] = 50.0
    picked, total = pick_slices(ratio)
    assert total == 48 and len(picked) == MAX_SLICES and (5, 7) in picked and picked == sorted(picked)
    assert pick_slices(np.ones(7)) == ([()], 1)


def test_the_error_ratio_uses_the_tolerance_and_marks_unchecked_entries():
    a = np.array([1.0, 2.0, 0.0, np.nan])
    n = np.array([1.0, 2.2, np.nan, 1.0])
    r = error_ratio(a, n, atol=1e-9, rtol=1e-6)
    assert r[0] == 0 and abs(r[1] - 0.2 / (1e-9 + 2.2e-6)) < 1e-6 * r[1]
    assert np.isnan(r[2]) and np.isposinf(r[3])


def test_a_passing_run_has_no_maps(tmp_path):
    from gradcheck_cli.cases import load
    from gradcheck_cli.check import run_case

    doc = html.render([run_case(load(CASES / "linear-mse.yaml"))])
    assert "class='heatmap'" not in doc and "<details open>" not in doc and "1 of 1 cases passed" in doc
