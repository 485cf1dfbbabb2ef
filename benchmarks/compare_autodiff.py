"""Compare gradcheck's saved analytic gradients with PyTorch autograd (float64).

    gradcheck run CASE.yaml --save-arrays DIR
    python benchmarks/compare_autodiff.py CASE.yaml DIR/<case name>.npz [--json]

The case file gives the layers, their options, the loss and the regularisation; the .npz gives
the exact input, parameter values and loss target/projection the check used, and every analytic
gradient (``layer{i}.{tensor}.{form}.analytic``). The network is rebuilt here in torch from the
layer definitions alone (no gradcheck layer code runs), its loss backpropagated by autograd, and
for every saved analytic array the script prints

    max |analytic - autograd| / max |autograd|      (relative to the tensor's scale)

Requires torch (``pip install '.[bench]'``); torch is never needed by gradcheck itself nor by
its tests. Layers without a torch equivalent here (e.g. a user's custom layer) stop the
comparison with a message. Exit code: 0 if every difference is below --tol (default 1e-10),
1 otherwise, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

# W of these layers is in the L2 term (README: "W of linear/conv")
REGULARIZED = {"linear": ("W",), "conv2d": ("W",), "conv1d": ("W",)}


def _pair(v):
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


def torch_layer(torch, cfg_type: str, opts: dict, x, p: dict):
    """The layer's forward written with torch primitives, from the case's definition."""
    F = torch.nn.functional
    if cfg_type == "linear":
        y = x.reshape(x.shape[0], -1) @ p["W"]
        return y + p["b"] if "b" in p else y
    if cfg_type == "relu":
        return torch.relu(x)
    if cfg_type == "sigmoid":
        return torch.sigmoid(x)
    if cfg_type == "tanh":
        return torch.tanh(x)
    if cfg_type == "add":
        return x + p["w"]
    if cfg_type == "flatten":
        return x.reshape(x.shape[0], -1)
    if cfg_type == "conv2d":
        return F.conv2d(x, p["W"], p.get("b"), stride=_pair(opts.get("stride", 1)),
                        padding=_pair(opts.get("padding", 0)))
    if cfg_type == "conv1d":
        return F.conv1d(x, p["W"], p.get("b"), stride=int(opts.get("stride", 1)),
                        padding=int(opts.get("padding", 0)))
    if cfg_type == "correlation1d":                  # y_i = sum_j x_{i+j} w_j
        return F.conv1d(x[:, None, :], p["w"][None, None, :])[:, 0, :]
    if cfg_type in ("maxpool2d", "avgpool2d"):
        size = _pair(opts["size"])
        stride = _pair(opts["stride"]) if opts.get("stride") is not None else size
        pool = F.max_pool2d if cfg_type == "maxpool2d" else F.avg_pool2d
        return pool(x, size, stride)
    raise NotImplementedError(f"no torch equivalent for layer type {cfg_type!r}")


def torch_loss(torch, name: str, reduction: str, y, target):
    F = torch.nn.functional
    N = y.shape[0]
    z = y.reshape(N, -1)
    if name == "projection":
        total = (y * target).sum()
    elif name == "sum":
        total = y.sum()
    elif name == "mse":
        total = 0.5 * ((y - target) ** 2).sum()
    elif name == "cross_entropy":
        total = F.cross_entropy(z, target, reduction="sum")
    else:
        raise NotImplementedError(f"no torch equivalent for loss {name!r}")
    return total / N if reduction == "mean" else total


def compare(case_path: str | Path, npz_path: str | Path) -> list[dict]:
    """Rows {array, layer, type, tensor, form, max_abs_diff, rel_diff} for every analytic array."""
    import torch

    from gradcheck_cli.cases import load

    case = load(case_path)
    arrays = np.load(npz_path, allow_pickle=False)
    t64 = lambda a: torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64)  # noqa: E731
    x = t64(arrays["input"]).requires_grad_(True)
    params = []
    for i, cfg in enumerate(case.layers):
        prefix = f"layer{i}."
        p = {k[len(prefix):]: t64(arrays[k]).requires_grad_(True) for k in arrays.files
             if k.startswith(prefix) and k.count(".") == 1}
        params.append(p)
    inputs, h = [], x
    for cfg, p in zip(case.layers, params):
        h.retain_grad()
        inputs.append(h)
        h = torch_layer(torch, cfg.type, dict(cfg.options), h, p)
    if case.loss == "cross_entropy":
        target = torch.tensor(np.asarray(arrays["target"]), dtype=torch.long)
    elif "projection" in arrays.files:
        target = t64(arrays["projection"])
    elif "target" in arrays.files:
        target = t64(arrays["target"])
    else:
        target = None
    L = torch_loss(torch, case.loss, case.reduction, h, target)
    if case.l2:
        for cfg, p in zip(case.layers, params):
            for name in REGULARIZED.get(cfg.type, ()):
                if name in p:
                    L = L + 0.5 * case.l2 * (p[name] ** 2).sum()
    L.backward()

    rows = []
    pat = re.compile(r"layer(\d+)\.(\w+)\.(\w+)\.analytic$")
    for key in sorted(arrays.files):
        m = pat.match(key)
        if not m:
            continue
        i, tensor, form = int(m.group(1)), m.group(2), m.group(3)
        if form == "loss":          # the loss's own check (local mode): not a layer's gradient
            continue
        ref_t = inputs[i].grad if tensor == "x" else params[i][tensor].grad
        ref = ref_t.detach().numpy() if ref_t is not None else np.zeros(arrays[key].shape)
        a = np.asarray(arrays[key], dtype=np.float64)
        diff = float(np.max(np.abs(a - ref), initial=0.0))
        scale = float(np.max(np.abs(ref), initial=0.0))
        rows.append({"array": key, "layer": i, "type": case.layers[i].type, "tensor": tensor,
                     "form": form, "max_abs_diff": diff, "rel_diff": diff / scale if scale else diff})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("case", help="the case YAML")
    ap.add_argument("npz", help="the .npz written by gradcheck run --save-arrays")
    ap.add_argument("--tol", type=float, default=1e-10, help="largest relative difference accepted")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("error: torch is not installed (pip install '.[bench]')", file=sys.stderr)
        return 2
    try:
        rows = compare(args.case, args.npz)
    except (NotImplementedError, KeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'array':<34} {'max abs diff':>13} {'rel diff':>10}")
        for r in rows:
            print(f"{r['array']:<34} {r['max_abs_diff']:>13.3e} {r['rel_diff']:>10.3e}")
        worst = max((r["rel_diff"] for r in rows), default=0.0)
        print(f"{Path(args.case).name}: {len(rows)} arrays, largest relative difference {worst:.3e}")
    return 0 if all(r["rel_diff"] <= args.tol for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
