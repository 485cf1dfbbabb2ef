"""shrink.py / `gradcheck shrink`: a failing LeNet-style case shrinks to its culprit conv layer
alone, at most 1% of the checked entries, failing on the same tensor; a passing case exits 2."""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from gradcheck_cli.cli import main

BUGS = Path(__file__).parent / "user_layers" / "diag_bugs.py"
LENET = {"name": "lenet-buggy", "seed": 0, "input": [4, 1, 12, 12], "loss": "cross_entropy",
         "layers": [{"type": "conv2d", "out_channels": 4, "kernel": 3}, {"type": "relu"},
                    {"type": "custom", "impl": f"{BUGS}:ConvWeightGradFlipped",
                     "options": {"out_channels": 6, "kernel": 3, "padding": 1}},
                    {"type": "relu"}, {"type": "maxpool2d", "size": 2}, {"type": "flatten"},
                    {"type": "linear", "out_features": 10}]}


def _run(path: Path) -> tuple[int, dict]:
    res = CliRunner().invoke(main, ["run", str(path), "--format", "json"])
    assert res.exit_code in (0, 1), res.output
    return res.exit_code, json.loads(res.output)["cases"][0]


def _checked(case: dict) -> int:
    return sum(c["checked"] for c in case["checks"] + case["loss_checks"])


def test_lenet_with_a_wrong_conv_weight_gradient_shrinks_below_one_percent(tmp_path):
    src = tmp_path / "lenet.yaml"
    src.write_text(yaml.safe_dump(LENET, sort_keys=False))
    code, big = _run(src)
    assert code == 1 and big["culprits"] == [{"layer": 2, "tensor": "W"}]
    out = tmp_path / "small" / "lenet-small.yaml"
    res = CliRunner().invoke(main, ["shrink", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "kept layers[2] alone" in res.output and f"checked entries: {_checked(big)} -> " in res.output
    assert (out.parent / "lenet-small.x.npy").is_file()      # layer 2's input cannot come from the seed
    code, small = _run(out)
    assert code == 1
    assert small["culprits"] == [{"layer": 0, "tensor": "W"}]
    row = next(c for c in small["checks"] if c["tensor"] == "W" and not c["passed"])
    assert row["type"] == "custom" and row["diagnosis"]["kind"] == "flip"
    assert yaml.safe_load(out.read_text())["layers"][0]["impl"].endswith("diag_bugs.py:ConvWeightGradFlipped")
    assert _checked(small) <= 0.01 * _checked(big), (_checked(small), _checked(big))
    assert f"-> {_checked(small)} " in res.output


def test_first_layer_culprit_regenerates_its_input_from_the_seed(tmp_path):
    doc = {"seed": 3, "input": [3, 2, 6, 6], "layers": [
        {"type": "custom", "impl": f"{BUGS}:ConvWeightGradFlipped", "options": {"out_channels": 3}},
        {"type": "flatten"}, {"type": "linear", "out_features": 4}]}
    src = tmp_path / "c.yaml"
    src.write_text(yaml.safe_dump(doc))
    out = tmp_path / "s.yaml"
    res = CliRunner().invoke(main, ["shrink", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    written = yaml.safe_load(out.read_text())
    assert isinstance(written["input"], list) and not list(tmp_path.glob("*.npy"))
    code, small = _run(out)
    assert code == 1 and small["culprits"] == [{"layer": 0, "tensor": "W"}]


def test_a_passing_case_exits_2_with_one_line(tmp_path):
    src = tmp_path / "ok.yaml"
    src.write_text(yaml.safe_dump({"input": [2, 3], "layers": [{"type": "linear", "out_features": 2}]}))
    res = CliRunner().invoke(main, ["shrink", str(src), "-o", str(tmp_path / "s.yaml")])
    assert res.exit_code == 2
    assert len(res.output.strip().splitlines()) == 1 and "passes" in res.output
    assert not (tmp_path / "s.yaml").exists()


def test_bad_case_exits_2(tmp_path):
    src = tmp_path / "bad.yaml"
    src.write_text("input: [2, 3]\nlayers: [{type: linera}]\n")
    res = CliRunner().invoke(main, ["shrink", str(src), "-o", str(tmp_path / "s.yaml")])
    assert res.exit_code == 2 and "layers[0].type" in res.output


def test_docs_worked_example_is_what_shrink_prints(tmp_path, monkeypatch):
    root = Path(__file__).parent.parent
    doc = (root / "docs" / "diagnosis.md").read_text()
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["shrink", str(root / "docs" / "diagnosis" / "convnet-buggy.yaml"),
                                    "-o", "small/convnet-small.yaml"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip() and not ln.startswith("wrote")]
    assert lines and all(ln in doc for ln in lines), [ln for ln in lines if ln not in doc]


def test_output_must_not_overwrite_the_case(tmp_path):
    src = tmp_path / "c.yaml"
    src.write_text(yaml.safe_dump(LENET, sort_keys=False))
    res = CliRunner().invoke(main, ["shrink", str(src), "-o", str(src)])
    assert res.exit_code == 2 and yaml.safe_load(src.read_text()) == LENET
