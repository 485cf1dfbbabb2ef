"""Reference: torch.autograd.gradcheck of a whole network's scalar loss (needs torch; optional).

    python benchmarks/torch_net.py CASE.yaml

Builds the case's network in torch (conv2d, relu, tanh, maxpool2d, avgpool2d, flatten, linear;
cross_entropy, mse, sum or projection loss), float64, one thread, and runs
torch.autograd.gradcheck on L(x, W_1, b_1, ...): the full Jacobian of the scalar loss, every
entry of the input and of every parameter (the setup most favourable to torch: one output row).
Imports torch and PyYAML only. Prints one JSON line: ok, entries, seconds (of the gradcheck call).
"""
from __future__ import annotations

import json
import sys
import time


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def build(case: dict, torch):
    """(function of (x, *params) -> scalar loss, [x, *params]) for the case's layers."""
    F = torch.nn.functional
    g = torch.Generator().manual_seed(int(case.get("seed", 0)))
    x = torch.randn(*case["input"], generator=g, dtype=torch.float64, requires_grad=True)
    shape, ops, params = list(case["input"]), [], []

    def param(*s):
        fan_in = max(1, int(torch.tensor(s[1:]).prod()) if len(s) > 1 else 1)
        p = (torch.randn(*s, generator=g, dtype=torch.float64) / fan_in ** 0.5).requires_grad_()
        params.append(p)
        return len(params) - 1

    for layer in case["layers"]:
        kind = layer["type"]
        if kind == "conv2d":
            k, st, pd = _pair(layer["kernel"]), _pair(layer.get("stride", 1)), _pair(layer.get("padding", 0))
            w = param(layer["out_channels"], shape[1], *k)
            b = param(layer["out_channels"]) if layer.get("bias", True) else None
            ops.append(lambda h, p, w=w, b=b, st=st, pd=pd: F.conv2d(h, p[w], None if b is None else p[b], st, pd))
            shape = [shape[0], layer["out_channels"]] + [(shape[2 + a] + 2 * pd[a] - k[a]) // st[a] + 1 for a in (0, 1)]
        elif kind in ("maxpool2d", "avgpool2d"):
            k = _pair(layer["size"])
            st = _pair(layer.get("stride") or layer["size"])
            pool = F.max_pool2d if kind == "maxpool2d" else F.avg_pool2d
            ops.append(lambda h, p, pool=pool, k=k, st=st: pool(h, k, st))
            shape = shape[:2] + [(shape[2 + a] - k[a]) // st[a] + 1 for a in (0, 1)]
        elif kind == "flatten":
            ops.append(lambda h, p: h.reshape(h.shape[0], -1))
            shape = [shape[0], int(torch.tensor(shape[1:]).prod())]
        elif kind == "linear":
            d = int(torch.tensor(shape[1:]).prod())
            w = param(d, layer["out_features"])
            b = param(layer["out_features"]) if layer.get("bias", True) else None
            ops.append(lambda h, p, w=w, b=b: h.reshape(h.shape[0], -1) @ p[w] + (0 if b is None else p[b]))
            shape = [shape[0], layer["out_features"]]
        elif kind in ("relu", "tanh", "sigmoid"):
            ops.append(lambda h, p, f=getattr(torch, kind): f(h))
        else:
            raise SystemExit(f"torch_net.py: layer type {kind!r} not supported")
    loss = case.get("loss", "projection")
    loss = loss["type"] if isinstance(loss, dict) else loss
    target = (torch.randint(0, shape[-1], (shape[0],), generator=g) if loss == "cross_entropy"
              else torch.randn(*shape, generator=g, dtype=torch.float64))

    def L(x, *p):
        h = x
        for op in ops:
            h = op(h, p)
        if loss == "cross_entropy":
            return F.cross_entropy(h, target, reduction="sum")
        if loss == "mse":
            return 0.5 * ((h - target) ** 2).sum()
        if loss == "sum":
            return h.sum()
        return (h * target).sum()

    return L, [x, *params]


def main() -> None:
    import torch
    import yaml

    torch.set_num_threads(1)
    with open(sys.argv[1], encoding="utf-8") as fh:
        case = yaml.safe_load(fh)
    L, inputs = build(case, torch)
    start = time.perf_counter()
    ok = torch.autograd.gradcheck(L, tuple(inputs), raise_exception=False)
    print(json.dumps({"ok": bool(ok), "entries": sum(int(t.numel()) for t in inputs),
                      "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
