"""`gradcheck run --html`: one self-contained file, every case, a map for every failing tensor."""
from __future__ import annotations

import base64
import io
import re

import numpy as np
from click.testing import CliRunner

from gradcheck_cli.cli import main
from gradcheck_cli.report import html
from gradcheck_cli.cases import load
from gradcheck_cli.check import run_case
from gradcheck_cli.layers.dense import ReLU
from gradcheck_cli.report.html import MAX_SLICES, pick_slices

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


class BuggyReLU(ReLU):
    """relu whose dL/dx is off by 1e-3 at [0, 2] (inside the rounding noise of a sample whose
    loss is about 1e6) and by 1 at [1, 1] and [1, 3]."""

    def backward(self, form_name, dy, x, params):
        g = np.array(super().backward(form_name, dy, x, params)["x"], copy=True)
        g[0, 2] += 1e-3
        g[1, 1] += 1.0
        g[1, 3] += 1.0
        return {"x": g}


def _error_map_image(doc: str, label: str) -> np.ndarray:
    """``label``'s error map as RGBA 0-255 (a 2-D tensor: one panel, the figure's first image)."""
    from matplotlib.image import imread

    fig = doc[doc.index(f"data-tensor='{label}'"):]
    png = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", fig).group(1)
    img = (imread(io.BytesIO(base64.b64decode(png))) * 255).round()
    return img


def test_the_error_map_is_red_exactly_where_the_row_fails(tmp_path, temp_layer):
    """Entries that pass only by the noise term (a loss of 1e6) and by the kink rule (relu at 0)
    beside entries that fail: the map's red entries are the row's failing ones, no more."""
    temp_layer("buggy_relu_for_maps", BuggyReLU)
    x = np.array([[1e6, 0.0, 0.5, -0.7, 0.3, 2e6], [0.0, 0.8, 0.2, 0.4, -1.2, 0.0]])
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "case.yaml").write_text("input: {data: x.npy}\nmode: network\nforms: [correlation]\nlayers:\n"
                                        "  - {type: buggy_relu_for_maps}\n  - {type: linear, out_features: 2}\n",
                                        encoding="utf-8")
    r = run_case(load(tmp_path / "case.yaml"))
    row = next(w for w in r.rows if w.label == "layers[0].x")
    assert row.failed == 2 and row.kinks == 3 and {tuple(e.index) for e in row.worst} == {(1, 1), (1, 3)}
    a, n = r.arrays["layer0.x.correlation.analytic"], r.arrays["layer0.x.correlation.numerical"]
    tolerance = 1e-9 + 1e-6 * np.maximum(np.abs(a), np.abs(n))
    beyond = {tuple(int(v) for v in k) for k in np.argwhere(np.abs(a - n) > tolerance)}
    # the old map's approximation (tolerance only) drew the noise and kink entries red too
    assert {(0, 2), (0, 1), (1, 0), (1, 5)} <= beyond
    img = _error_map_image(html.render([r]), "layers[0].x")
    step = img.shape[0] // 2
    centre = img[step // 2::step, step // 2::step]              # one pixel per entry, (2, 6, 4)
    reds = {(i, j) for i in range(2) for j in range(6) if centre[i, j, 0] > centre[i, j, 2]}
    assert reds == {(1, 1), (1, 3)}


def test_a_passing_run_has_no_maps(tmp_path):
    from gradcheck_cli.cases import load
    from gradcheck_cli.check import run_case

    doc = html.render([run_case(load(CASES / "linear-mse.yaml"))])
    assert "class='heatmap'" not in doc and "<details open>" not in doc and "1 of 1 cases passed" in doc


def test_a_row_failing_only_with_the_random_cotangent_maps_that_check(tmp_path, temp_layer):
    """Below a dead ReLU column the upstream check sees nothing; the map must draw the random
    cotangent's check, whose failing entries are the row's (column 0 of W)."""
    from gradcheck_cli.cases import from_dict
    from gradcheck_cli.layers.dense import Linear
    from gradcheck_cli.registry import form

    class WrongDeadColumn(Linear):
        @form("kron", seed="test: dW wrong in column 0")
        def kron(self, dy, x, params):
            g = super().kron(dy, x, params)
            g["W"] = g["W"].copy()
            g["W"][:, 0] = 2.0 * g["W"][:, 0]
            return g

    temp_layer("test-wrong-dead-column-map", WrongDeadColumn)
    np.save(tmp_path / "b.npy", np.array([-50.0, 0.2, 0.1]))
    case = from_dict({"input": [4, 3], "forms": ["kron"], "layers": [
        {"type": "test-wrong-dead-column-map", "out_features": 3, "params": {"b": "b.npy"}}, {"type": "relu"}]},
        str(tmp_path / "case.yaml"), base_dir=tmp_path)
    r = run_case(case)
    row = next(w for w in r.rows if (w.layer, w.tensor) == (0, "W"))
    assert not row.passed and row.cotangent == "random"
    img = _error_map_image(html.render([r]), "layers[0].W")
    shape = r.arrays["layer0.W.kron.analytic"].shape
    step = img.shape[0] // shape[0]
    centre = img[step // 2::step, step // 2::step]
    reds = {(i, j) for i in range(shape[0]) for j in range(shape[1]) if centre[i, j, 0] > centre[i, j, 2]}
    assert len(reds) == row.failed > 0 and all(j == 0 for _, j in reds)
