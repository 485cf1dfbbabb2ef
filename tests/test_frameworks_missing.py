"""Without torch or jax installed, their cases exit 2 with one line naming the pip command.

The missing framework is simulated: ``sys.modules[name] = None`` makes ``import name`` raise
ImportError in this process, as it would where the package is not installed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gradcheck_cli.cli import main
from gradcheck_cli.errors import UserCodeError

EX = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("framework, case, layer", [
    ("torch", EX / "torch" / "layernorm.yaml", "torch my_modules.py:LayerNorm"),
    ("torch", EX / "torch" / "cnn.yaml", "torch my_modules.py:Conv3x3"),
    ("jax", EX / "jax" / "layernorm.yaml", "jax my_layers.py:LayerNorm"),
])
@pytest.mark.parametrize("command", ["run", "validate"])
def test_case_exits_2_with_the_pip_command(monkeypatch, framework, case, layer, command):
    monkeypatch.setitem(__import__("sys").modules, framework, None)
    res = CliRunner().invoke(main, [command, str(case)])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines() == [
        f"error: {case}: layers[0] ({layer}): needs {'PyTorch' if framework == 'torch' else 'JAX'}, "
        f"which is not installed: pip install 'gradcheck-cli[{framework}]'"]


def test_python_api_raises_the_same_hint(monkeypatch):
    import gradcheck_cli.torch as gt

    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    with pytest.raises(UserCodeError, match=r"pip install 'gradcheck-cli\[torch\]'"):
        gt.check_module(object(), np.zeros((2, 3)))


def test_numpy_routes_need_neither(monkeypatch):
    for name in ("torch", "jax"):
        monkeypatch.setitem(__import__("sys").modules, name, None)
    res = CliRunner().invoke(main, ["run", str(EX / "cs231n" / "net.yaml")])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("name", ["gradcheck", "gradgradcheck", "GradcheckError"])
def test_torch_dropins_raise_importerror_with_the_pip_command(monkeypatch, name):
    import gradcheck_cli.torch as gt

    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    monkeypatch.delitem(__import__("sys").modules, "gradcheck_cli.torch.dropin", raising=False)
    monkeypatch.delattr(gt, "dropin", raising=False)      # as if never imported
    with pytest.raises(ImportError, match=r"pip install 'gradcheck-cli\[torch\]'"):
        getattr(gt, name)


def test_jax_check_grads_raises_importerror_with_the_pip_command(monkeypatch):
    import gradcheck_cli.jax as gj

    monkeypatch.setitem(__import__("sys").modules, "jax", None)
    monkeypatch.delitem(__import__("sys").modules, "gradcheck_cli.jax.dropin", raising=False)
    monkeypatch.delattr(gj, "dropin", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'gradcheck-cli\[jax\]'"):
        gj.check_grads
