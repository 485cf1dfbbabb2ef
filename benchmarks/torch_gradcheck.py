"""Reference: torch.autograd.gradcheck on the same conv2d layer (needs torch; optional).

    python benchmarks/torch_gradcheck.py N C O H W K PAD

Checks y = conv2d(x, W, b, padding=PAD) with x (N, C, H, W), W (O, C, K, K), b (O,), float64,
with torch.autograd.gradcheck's defaults (full Jacobian: numerical by central differences per
input entry, analytical by one backward pass per output entry). Imports only torch, so the
whole-process time is torch's own. Prints one JSON line: ok, seconds (of the gradcheck call).
"""
from __future__ import annotations

import json
import sys
import time


def main() -> None:
    N, C, O, H, W, K, P = (int(a) for a in sys.argv[1:8])
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    x = torch.randn(N, C, H, W, dtype=torch.float64, requires_grad=True)
    w = (torch.randn(O, C, K, K, dtype=torch.float64) / (C * K * K) ** 0.5).requires_grad_()
    b = (0.1 * torch.randn(O, dtype=torch.float64)).requires_grad_()
    start = time.perf_counter()
    ok = torch.autograd.gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=P), (x, w, b))
    print(json.dumps({"ok": bool(ok), "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
