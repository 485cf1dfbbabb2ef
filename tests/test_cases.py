"""Bad input: every mistake is exit 2 with one or two lines naming the file and the field."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from click.testing import CliRunner

from gradcheck_cli.cases import from_dict, load
from gradcheck_cli.cli import main
from gradcheck_cli.errors import CaseError
from gradcheck_cli.catalog import layers

layers()    # import the layer modules once: the timing below is the check, not numpy/scipy imports

OK_LAYERS = "layers:\n  - type: linear\n    out_features: 3\n"

# (file text, expected field path or None for file-level, words the message must contain)
BAD = {
    "empty": ("", None, ["empty file"]),
    "only-comment": ("# nothing here\n", None, ["empty file"]),
    "broken-yaml": ("input: [4, 6]\nlayers:\n  - type: linear\n    out_features: [3\n", None,
                    ["broken YAML"]),
    "list-top": ("- input: [4, 6]\n- layers: []\n", None, ["top level", "a list"]),
    "scalar-top": ("42\n", None, ["top level"]),
    "no-layers": ("input: [4, 6]\n", "layers", ["missing"]),
    "empty-layers": ("input: [4, 6]\nlayers: []\n", "layers", ["non-empty"]),
    "layers-mapping": ("input: [4, 6]\nlayers: {type: relu}\n", "layers", ["list"]),
    "no-input": (OK_LAYERS, "input", ["missing"]),
    "unknown-layer": ("input: [4, 6]\nlayers:\n  - type: linaer\n", "layers[0].type",
                      ["unknown layer", "did you mean `linear`"]),
    "layer-no-type": ("input: [4, 6]\nlayers:\n  - out_features: 3\n", "layers[0].type", ["missing"]),
    "layer-not-mapping": ("input: [4, 6]\nlayers:\n  - relu\n", "layers[0]", ["mapping"]),
    "unknown-loss": ("input: [4, 6]\n" + OK_LAYERS + "loss: mse2\n", "loss", ["did you mean `mse`"]),
    "unknown-loss-type": ("input: [4, 6]\n" + OK_LAYERS + "loss: {type: crossentropy}\n", "loss.type",
                          ["did you mean `cross_entropy`"]),
    "unknown-form": ("input: [4, 6]\n" + OK_LAYERS + "forms: [kronn]\n", "forms[0]",
                     ["did you mean `kron`"]),
    "unknown-top-key": ("input: [4, 6]\n" + OK_LAYERS + "tolerence: {rtol: 1e-3}\n", "tolerence",
                        ["unknown field", "did you mean `tolerance`"]),
    "unknown-layer-option": ("input: [4, 6]\nlayers:\n  - type: linear\n    out_feature: 3\n",
                             "layers[0].out_feature", ["did you mean `out_features`"]),
    "unknown-dtype": ("input: [4, 6]\n" + OK_LAYERS + "dtype: float16\n", "dtype", ["float32"]),
    "wrong-type-int": ("input: [4, 6]\nlayers:\n  - type: linear\n    out_features: three\n",
                       "layers[0].out_features", ["integer"]),
    "wrong-type-bool": ("input: [4, 6]\nlayers:\n  - type: linear\n    out_features: 3\n    bias: 2\n",
                        "layers[0].bias", ["true or false"]),
    "wrong-type-seed": ("input: [4, 6]\n" + OK_LAYERS + "seed: 1.5\n", "seed", ["integer"]),
    "wrong-type-rtol": ("input: [4, 6]\n" + OK_LAYERS + "tolerance: {rtol: small}\n", "tolerance.rtol",
                        ["number"]),
    "wrong-type-input": ("input: 4\n" + OK_LAYERS, "input", ["list of sizes"]),
    "zero-size": ("input: [4, 0]\n" + OK_LAYERS, "input[1]", [">= 1"]),
    "negative-size": ("input: [4, -6]\n" + OK_LAYERS, "input[1]", [">= 1"]),
    "zero-features": ("input: [4, 6]\nlayers:\n  - type: linear\n    out_features: 0\n",
                      "layers[0].out_features", [">= 1"]),
    "negative-rtol": ("input: [4, 6]\n" + OK_LAYERS + "tolerance: {rtol: -1}\n", "tolerance.rtol", ["> 0"]),
    "zero-eps": ("input: [4, 6]\n" + OK_LAYERS + "numerical: {eps: 0}\n", "numerical.eps", ["> 0"]),
    "nan-eps": ("input: [4, 6]\n" + OK_LAYERS + "numerical: {eps: .nan}\n", "numerical.eps", ["finite"]),
    "kernel-too-large": ("input: [2, 1, 4, 4]\nlayers:\n  - type: conv2d\n    out_channels: 2\n"
                         "    kernel: 7\n    padding: 1\n", "layers[0].kernel", ["input shape [2, 1, 4, 4]"]),
    "shapes-do-not-chain": ("input: [4]\n" + OK_LAYERS, "layers[0]", ["input shape [4]"]),
    "conv-after-linear": ("input: [4, 6]\nlayers:\n  - type: linear\n    out_features: 3\n"
                          "  - type: conv2d\n    out_channels: 2\n    kernel: 3\n", "layers[1]",
                          ["(N, C, H, W)", "input shape [4, 3]"]),
    "missing-npy-param": ("input: [4, 6]\nlayers:\n  - type: add\n    params: {w: w.npy}\n",
                          "layers[0].params.w", ["not found", "w.npy"]),
    "missing-npy-input": ("input: {shape: [4, 6], data: x.npy}\n" + OK_LAYERS, "input.data",
                          ["not found", "x.npy"]),
    "missing-npy-target": ("input: [4, 6]\n" + OK_LAYERS + "loss: {type: mse, target: t.npy}\n",
                           "loss.target", ["not found"]),
    "python-tag": ("input: !!python/object/apply:os.system ['echo pwned']\n" + OK_LAYERS, None,
                   ["refused YAML tag"]),
    "python-name-tag": ("input: [4, 6]\n" + OK_LAYERS + "loss: !!python/name:os.system\n", None,
                        ["refused YAML tag"]),
}


def _write(tmp_path, text, name="case.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("key", sorted(BAD))
def test_bad_input_exit_2_names_file_and_field(tmp_path, key):
    text, field, words = BAD[key]
    p = _write(tmp_path, text)
    for cmd in ("validate", "run"):
        res = CliRunner().invoke(main, [cmd, str(p)])
        assert res.exit_code == 2, (key, cmd, res.output)
        assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)
        out = res.output.strip()
        assert "Traceback" not in out
        assert 1 <= len(out.splitlines()) <= 2, out
        assert str(p) in out
        if field is not None:
            assert f": {field}: " in out, out
        for w in words:
            assert w in out, (w, out)


def test_missing_file_and_folder(tmp_path):
    res = CliRunner().invoke(main, ["run", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "nope.yaml" in res.output and "no such file" in res.output
    with pytest.raises(CaseError, match="folder"):
        load(tmp_path)


def test_broken_yaml_names_the_line(tmp_path):
    p = _write(tmp_path, "input: [4, 6]\nlayers:\n  - type: linear\n    out_features: 3\n  bad: [\n")
    with pytest.raises(CaseError) as err:
        load(p)
    assert err.value.line in (5, 6) and f"{p}:{err.value.line}:" in str(err.value)


def test_tab_indentation_is_broken_yaml_with_line(tmp_path):
    p = _write(tmp_path, "input: [4, 6]\nlayers:\n\t- type: relu\n")
    with pytest.raises(CaseError) as err:
        load(p)
    assert err.value.line == 3 and "broken YAML" in str(err.value)


def test_not_utf8(tmp_path):
    p = tmp_path / "case.yaml"
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(CaseError, match="cannot read"):
        load(p)


def test_python_tag_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    p = _write(tmp_path, f"input: !!python/object/apply:os.system ['touch {marker}']\n" + OK_LAYERS)
    with pytest.raises(CaseError, match="refused YAML tag"):
        load(p)
    assert not marker.exists()


@pytest.mark.parametrize("content, words", [
    (b"not an npy file", ["cannot read", "x.npy"]),
    (None, ["has shape [3, 6]", "[4, 6]"]),
])
def test_unusable_npy_is_exit_2(tmp_path, content, words):
    if content is None:
        np.save(tmp_path / "x.npy", np.zeros((3, 6)))
    else:
        (tmp_path / "x.npy").write_bytes(content)
    p = _write(tmp_path, "input: {shape: [4, 6], data: x.npy}\n" + OK_LAYERS)
    res = CliRunner().invoke(main, ["run", str(p)])
    assert res.exit_code == 2 and "input.data" in res.output and str(p) in res.output
    for w in words:
        assert w in res.output


def test_npy_with_nan_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[1.0, np.nan, 0, 0, 0, 0]] * 4))
    p = _write(tmp_path, "input: {data: x.npy}\n" + OK_LAYERS)
    res = CliRunner().invoke(main, ["run", str(p)])
    assert res.exit_code == 2 and "input.data" in res.output and "NaN" in res.output


def test_param_npy_of_wrong_shape(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros(5))
    p = _write(tmp_path, "input: [4, 6]\nlayers:\n  - type: add\n    params: {w: w.npy}\n")
    res = CliRunner().invoke(main, ["run", str(p)])
    assert res.exit_code == 2 and "layers[0].params.w" in res.output and "[6]" in res.output


def test_object_npy_is_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}] * 24, dtype=object).reshape(4, 6), allow_pickle=True)
    p = _write(tmp_path, "input: {shape: [4, 6], data: x.npy}\n" + OK_LAYERS)
    res = CliRunner().invoke(main, ["run", str(p)])
    assert res.exit_code == 2 and "input.data" in res.output


def test_from_dict_rejects_non_mapping():
    with pytest.raises(CaseError, match="top level"):
        from_dict([1, 2], "f.yaml")


@pytest.mark.parametrize("cmd", ["run", "sweep"])
def test_case_too_big_for_memory_is_refused_before_allocating(tmp_path, monkeypatch, cmd):
    """64 x 64 x 128 x 128 float64 is 537 MB per activation: refused from the shapes alone."""
    monkeypatch.setenv("GRADCHECK_MAX_MEMORY", "1GiB")
    p = _write(tmp_path, "input: [64, 64, 128, 128]\nlayers:\n"
                         "  - {type: conv2d, out_channels: 64, kernel: 3, padding: 1}\n")
    tracemalloc.start()
    res = CliRunner().invoke(main, [cmd, str(p)])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MiB allocated before the refusal"
    assert res.exit_code == 2 and not isinstance(res.exception, MemoryError)
    out = res.output.strip()
    assert len(out.splitlines()) == 1 and f"{p}: input: " in out
    assert "over the memory limit of 1.0 GiB" in out and "GRADCHECK_MAX_MEMORY" in out
