"""``gradcheck shrink``: from a failing case, the smallest case that still fails the same way.

"The same way": the culprit tensor (the failing tensor of the highest failing layer) fails on the
same layer type, and with the same diagnosis kind when the original row had one (diagnosis.py).
Steps, each kept only when the failure persists:

1. the culprit layer alone (local mode, the default projection loss). Its input is the case's
   input regenerated from the seed when the culprit is the first layer and the case draws its
   input; otherwise the layer's input as the original run computed it, saved as .npy data next
   to the output. Its parameters are drawn from the seed; if the bug then hides, the original
   values are given as .npy data too.
2. greedy reductions, repeated until none applies: the batch, the channels, then the other axes
   of the input; then every integer option (out_channels, kernel, stride, padding, ... and the
   integers of a custom layer's ``options``) towards its minimum, and every true option to false.
   Input data is cut to the new shape (its leading entries along each axis).

Every candidate is a case document validated by cases.from_dict and run by check.run_case; a
candidate that is bad input (shapes that no longer chain, a user function refusing the shape)
is skipped.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .cases import Case, from_dict
from .errors import GradcheckError

MAX_PASSES = 8      # rounds of reductions (each round tries every reduction once)
KEEP = ("type", "per_sample", "init", "order", "modes", "output")   # how a case runs, not its size


@dataclasses.dataclass
class Shrunk:
    """The written case: its document, what was removed, and the checked entries before/after."""

    doc: dict
    removed: list[str]
    before: int
    after: int
    culprit: str
    files: list[Path]


def _plain(v: Any, rel: Callable[[Path], str]) -> Any:
    """An option's resolved value back in YAML form (files relative to the output's folder)."""
    from .layers.usercode import Impl

    if isinstance(v, Impl):
        where, name, is_file = v.parse()
        return f"{rel(v.base / where)}:{name}" if is_file else v.text
    if isinstance(v, Mapping):
        return {str(k): _plain(x, rel) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [_plain(x, rel) for x in v]
    if isinstance(v, Path):
        return rel(v)
    return v.item() if isinstance(v, np.generic) else v


def layer_doc(case: Case, i: int, rel: Callable[[Path], str]) -> dict:
    """Layer ``i`` of ``case`` as a YAML mapping (options that differ from their defaults)."""
    from .catalog import get

    cfg = case.layers[i]
    doc: dict[str, Any] = {"type": cfg.type}
    for o in get(cfg.type).cls.options:
        if o.name in cfg.options:
            v = _plain(cfg.options[o.name], rel)
            if v != _plain(o.default, rel):
                doc[o.name] = v
    if cfg.params:
        doc["params"] = {k: rel(p) for k, p in cfg.params.items()}
    return doc


def _checked(result) -> int:
    return sum(r.checked for r in result.checks)


def _culprit(result, n_layers: int) -> tuple[int, str, str | None]:
    """(layer, tensor, diagnosis kind) of the failing tensor of the highest failing layer."""
    layer_tensors = [(i, t) for i, t in result.culprits if i < n_layers]
    if not layer_tensors:
        raise GradcheckError(f"{result.file}: no layer's tensor fails on its own (only the loss or the "
                             "whole-network check): nothing to shrink to")
    i, t = max(layer_tensors, key=lambda p: p[0])
    row = next(r for r in result.checks if (r.layer, r.tensor) == (i, t) and not r.passed)
    return i, t, row.diagnosis.kind if row.diagnosis is not None else None


class _Search:
    """Runs candidate documents in a scratch folder; keeps the input (and parameter) arrays."""

    def __init__(self, case: Case, i: int, tensor: str, kind: str | None, scratch: Path):
        self.case, self.i, self.tensor, self.kind, self.scratch = case, i, tensor, kind, scratch
        self.type = case.layers[i].type
        self.runs = 0

    def run(self, doc: dict, x: np.ndarray | None, params: dict[str, np.ndarray]):
        """The result of ``doc`` with input data ``x`` (None: from the seed), or None if bad input."""
        from .check import run_case

        doc = {**doc, "layers": [dict(doc["layers"][0])]}
        if x is not None:
            np.save(self.scratch / "x.npy", x)
            doc["input"] = {"data": "x.npy"}
        if params:
            for k, v in params.items():
                np.save(self.scratch / f"p.{k}.npy", v)
            doc["layers"][0]["params"] = {k: f"p.{k}.npy" for k in params}
        self.runs += 1
        try:
            return run_case(from_dict(doc, str(self.scratch / "case.yaml"), base_dir=self.scratch))
        except GradcheckError:
            return None

    def same_way(self, result) -> bool:
        if result is None or result.passed:
            return False
        rows = [r for r in result.checks if r.layer == 0 and r.tensor == self.tensor and not r.passed]
        return bool(rows) and rows[0].type == self.type and (
            self.kind is None or any(r.diagnosis is not None and r.diagnosis.kind == self.kind for r in rows))


def _input_of(case: Case, i: int) -> np.ndarray | None:
    """Layer i's input as the check computed it; None when the seed regenerates it (i = 0)."""
    if i == 0 and case.input_data is None:
        return None
    from . import kinks
    from .network import Network

    net = Network.build(case)
    kinks.keep_margin(net)
    return net.forward(np.float64)[i]


def _params_of(case: Case, i: int) -> dict[str, np.ndarray]:
    from . import kinks
    from .network import Network

    net = Network.build(case)
    kinks.keep_margin(net)
    return {k: np.asarray(v) for k, v in net.params[i].items()}


def _smaller(v: int, low: int) -> list[int]:
    """Values below v to try, smallest first."""
    return sorted({c for c in (low, 1, 2, 3, v // 2, v - 1) if low <= c < v})


def _axis(ax: int, ndim: int) -> str:
    """The name of input axis ``ax`` in a reduction's description."""
    names = {2: ["batch", "features"], 3: ["batch", "channels", "length"],
             4: ["batch", "channels", "height", "width"]}.get(ndim)
    return names[ax] if names else ("batch" if ax == 0 else f"input axis {ax}")


def _reductions(doc: dict, shape: tuple[int, ...]):
    """(description, new document, new shape) candidates, in the order they are tried."""
    shapes = _param_shapes(doc)
    for ax, size in enumerate(shape):
        for v in _smaller(size, 1):
            new = (*shape[:ax], v, *shape[ax + 1:])
            yield f"{_axis(ax, len(shape))} {size} -> {v}", doc, new
            if any(size in s for s in shapes.values()):     # a functions layer's shapes follow
                yield (f"{_axis(ax, len(shape))} {size} -> {v} with every parameter size {size}",
                       _resized(doc, size, v), new)
    for size in sorted({d for s in shapes.values() for d in s}, reverse=True):
        for v in _smaller(size, 1):
            yield f"parameter sizes {size} -> {v}", _resized(doc, size, v), None
    layer = doc["layers"][0]
    for key, v in layer.items():
        yield from _option(doc, [key], v)
    for key, v in (layer.get("options") or {}).items() if isinstance(layer.get("options"), dict) else ():
        yield from _option(doc, ["options", key], v)


def _param_shapes(doc: dict) -> dict[str, list[int]]:
    """A functions layer's parameter shapes (``params: {w: [4, 3, 3, 3]}``), {} for other layers."""
    layer = doc["layers"][0]
    if layer.get("type") != "functions" or not isinstance(layer.get("params"), dict):
        return {}
    return {k: v for k, v in layer["params"].items() if isinstance(v, list)}


def _resized(doc: dict, size: int, v: int) -> dict:
    """``doc`` with every parameter size equal to ``size`` made ``v`` (a functions layer)."""
    params = {k: ([v if d == size else d for d in s] if isinstance(s, list) else s)
              for k, s in doc["layers"][0]["params"].items()}
    return _with(doc, ["params"], params)


def _option(doc: dict, path: list[str], v: Any):
    """Smaller values of one option: ints (and pairs) towards 0 or 1, true to false."""
    name = ".".join(path)
    if path[-1] in KEEP or isinstance(v, str) or path == ["params"]:
        return
    if isinstance(v, bool):
        if v:
            yield f"{name} true -> false", _with(doc, path, False), None
    elif isinstance(v, int):
        for c in _smaller(v, 0):
            yield f"{name} {v} -> {c}", _with(doc, path, c), None
    elif isinstance(v, list) and len(v) == 2 and all(isinstance(c, int) and not isinstance(c, bool) for c in v):
        for c in _smaller(max(v), 0):
            new = [min(c, e) for e in v]
            if new != v:
                yield f"{name} {v} -> {new}", _with(doc, path, new), None


def _with(doc: dict, path: list[str], value: Any) -> dict:
    layer = dict(doc["layers"][0])
    if len(path) == 1 or not isinstance(layer.get(path[0]), dict) or path[0] == "params":
        layer[path[0]] = value
    else:
        layer[path[0]] = {**layer[path[0]], path[1]: value}
    return {**doc, "layers": [layer]}


def shrink(case: Case, output: str | Path, say: Callable[[str], None] = lambda s: None) -> Shrunk:
    """Write the smallest case failing as ``case`` does to ``output`` (and its .npy data beside it)."""
    from .check import run_case

    output = Path(output)
    first = run_case(case)
    if first.passed:
        raise GradcheckError(f"{case.file}: the case passes: nothing to shrink")
    i, tensor, kind = _culprit(first, len(case.layers))
    label = f"layers[{i}].{tensor} ({case.layers[i].type}" + (f", {kind})" if kind else ")")
    say(f"culprit: {label}; {_checked(first)} checked entries")
    removed = [f"layers {', '.join(str(k) for k in range(len(case.layers)) if k != i)} "
               f"(kept layers[{i}] alone)"] if len(case.layers) > 1 else []
    doc: dict[str, Any] = {"name": f"{case.name}-small", "seed": case.seed, "dtype": case.dtype}
    doc["layers"] = [layer_doc(case, i, lambda p: str(Path(p).resolve()))]
    for key, value in (("regularization", {"l2": case.l2} if case.l2 else None), ("forms", list(case.forms or []) or None),
                       ("tolerance", {k: v for k, v in (("rtol", case.rtol), ("atol", case.atol)) if v is not None} or None),
                       ("numerical", {"eps": case.eps} if case.eps else None)):
        if value:
            doc[key] = value
    if case.layers[i].params:       # fixed parameter files: their shapes would block every reduction
        doc["layers"][0].pop("params")
    x = _input_of(case, i)
    shape = tuple(case.shapes[i])
    params: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        search = _Search(case, i, tensor, kind, Path(tmp))

        def attempt(d, s, p):
            return search.run({**d, "input": list(s)}, None if x is None else x[tuple(slice(0, n) for n in s)], p)

        result = attempt(doc, shape, params)
        if not search.same_way(result):
            params = _params_of(case, i)
            result = attempt(doc, shape, params)
            if not search.same_way(result):
                raise GradcheckError(f"{case.file}: layers[{i}] alone does not fail as it does in the case "
                                     "(its failure needs the layers around it): nothing written")
            removed.append("nothing else: the parameters' values are kept as data (the bug hides with others)")
        for _ in range(MAX_PASSES):
            changed = False
            for what, d, s in list(_reductions(doc, shape)):
                s = s or shape
                r, p = attempt(d, s, params), params
                if r is None and params:        # the parameters' data no longer fits: draw them
                    r, p = attempt(d, s, {}), {}
                if search.same_way(r):
                    doc, shape, result, params, changed = d, s, r, p, True
                    removed.append(what)
                    say(f"  {what}: {_checked(r)} checked entries")
                    break
            if not changed:
                break
        files = _write(doc, shape, x, params, output, result)
    return Shrunk(doc, removed, _checked(first), _checked(result), label, files)


def _write(doc: dict, shape, x, params, output: Path, result) -> list[Path]:
    """The case file, with input and parameter data beside it; paths relative to its folder."""
    import yaml

    from .outfiles import write_text

    folder = output.parent if str(output.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)

    def rel(p) -> str:       # relative when near the output (at most one folder up), else absolute
        try:
            r = os.path.relpath(Path(p), folder.resolve())
        except ValueError:
            return str(p)
        return r if not r.startswith(os.path.join("..", "..")) else str(p)

    out = {k: doc[k] for k in ("name", "seed", "dtype")}
    out["input"] = list(shape)
    out.update({k: v for k, v in doc.items() if k not in out and k != "input"})
    out["layers"] = [dict(doc["layers"][0])]
    layer = out["layers"][0]
    for key in ("impl", "forward", "backward"):
        if isinstance(layer.get(key), str) and ":" in layer[key] and os.path.isabs(layer[key].rpartition(":")[0]):
            where, _, name = layer[key].rpartition(":")
            layer[key] = f"{rel(where)}:{name}"
    files = [output]
    if x is not None:
        data = folder / f"{output.stem}.x.npy"
        np.save(data, x[tuple(slice(0, n) for n in shape)])
        out["input"] = {"data": data.name}
        files.append(data)
    if params:
        layer["params"] = {}
        for k, v in params.items():
            f = folder / f"{output.stem}.{k}.npy"
            np.save(f, v)
            layer["params"][k] = f.name
            files.append(f)
    write_text(str(output), yaml.safe_dump(out, sort_keys=False, default_flow_style=None))
    return files
