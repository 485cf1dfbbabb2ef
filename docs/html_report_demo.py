"""Writes the HTML report shown in docs/html-report.png: a conv2d with two planted bugs (dL/dx
wrong along the top border, dL/dW wrong in the kernel's first column), a custom layer missing its
slope (examples/leaky-buggy.yaml) and two passing cases.

    python docs/html_report_demo.py /tmp/report.html
    chromium --headless --no-sandbox --disable-gpu --screenshot=docs/html-report.png \
        --window-size=1200,1600 file:///tmp/report.html
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gradcheck_cli import registry  # noqa: E402
from gradcheck_cli.cases import load  # noqa: E402
from gradcheck_cli.check import run_case  # noqa: E402
from gradcheck_cli.layers.conv import Conv2d  # noqa: E402
from gradcheck_cli.report import html  # noqa: E402

CASE = """\
name: conv-border-bug
seed: 5
input: [2, 3, 6, 6]
layers:
  - {type: conv2d_border_bug, out_channels: 4, kernel: 3, padding: 1}
  - {type: tanh}
  - {type: flatten}
  - {type: linear, out_features: 3}
loss: mse
"""


class BorderBug(Conv2d):
    """conv2d with dL/dx 10 % low on the top border row and dL/dW 5 % high in column 0."""

    def _grads(self, form, dy, x, params):
        g = dict(super()._grads(form, dy, x, params))
        g["x"], g["W"] = g["x"].copy(), g["W"].copy()
        g["x"][:, :, 0, :] *= 0.9
        g["W"][..., 0] *= 1.05
        return g


def main(out: str) -> None:
    registry.register("conv2d_border_bug")(BorderBug)
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "conv-border-bug.yaml"
        f.write_text(CASE, encoding="utf-8")
        results = []
        for p in (f, ROOT / "examples" / "leaky-buggy.yaml", ROOT / "cases" / "linear-mse.yaml",
                  ROOT / "cases" / "fc-batch-l2.yaml"):
            start = time.perf_counter()
            results.append(run_case(load(p)))
            results[-1].seconds = results[-1].seconds or time.perf_counter() - start
    np.seterr(all="ignore")
    Path(out).write_text(html.render(results), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "html-report.html")
