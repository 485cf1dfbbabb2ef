"""The schema of a case's fields: one validator per field kind, the layer entries and their
options (registry.Option), each mistake a :class:`CaseError` naming the file and the field's path.

cases.py reads the file and assembles the :class:`~gradcheck_cli.cases.Case` from these fields.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .errors import CaseError
from .registry import FORMS, Option
from .yamlfile import MAX_DIMS, MAX_ENTRIES, _key, excerpt

DTYPES = ("float64", "float32")
REDUCTIONS = ("sum", "mean")
MODES = ("local", "network")   # the engine's modes: check.py


@dataclasses.dataclass(frozen=True)
class LayerConfig:
    """One entry of ``layers``: its type, validated options and fixed parameter files."""

    index: int
    type: str
    options: Mapping[str, Any]
    params: Mapping[str, Path]

    @property
    def field(self) -> str:
        return f"layers[{self.index}]"



def too_big(shape, file: str, field: str, what: str = "shape") -> None:
    """A CaseError if ``shape`` has more than MAX_ENTRIES entries (counted exactly, in Python
    integers: numpy's int64 products would wrap around for such shapes)."""
    n = math.prod(int(s) for s in shape)
    if n > MAX_ENTRIES:
        raise CaseError(file, field, f"{what} {excerpt(list(shape), 80)} has {n:.3g} entries, more "
                                     f"than any memory holds (at most 2^40 = {MAX_ENTRIES:,})")


def _kind(x: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing"}.get(type(x), type(x).__name__)


def suggest(word: str, choices) -> str:
    if not isinstance(word, str) or len(word) > 100:
        return ""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


class _Validator:
    def __init__(self, file: str, base: Path) -> None:
        self.file, self.base = file, base

    def fail(self, field: str, msg: str) -> None:
        raise CaseError(self.file, field, msg)

    # -- scalars ---------------------------------------------------------------------------
    def integer(self, x: Any, field: str, minimum: int | None = None,
                maximum: int | None = MAX_ENTRIES) -> int:
        if isinstance(x, bool) or not isinstance(x, int):
            self.fail(field, f"expected an integer, got {_kind(x)} {excerpt(x)}")
        if minimum is not None and x < minimum:
            self.fail(field, f"must be >= {minimum}, got {excerpt(x)}")
        if maximum is not None and x > maximum:
            self.fail(field, f"must be <= {maximum:,} (2^40), got {excerpt(x)}")
        return x

    def number(self, x: Any, field: str, positive: bool = False, nonneg: bool = False) -> float:
        if isinstance(x, str):          # PyYAML reads 1e-6 (no dot) as a string
            try:
                x = float(x)
            except ValueError:
                self.fail(field, f"expected a number, got {excerpt(x)}")
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            self.fail(field, f"expected a finite number, got {_kind(x)} {excerpt(x)}")
        if positive and x <= 0:
            self.fail(field, f"must be > 0, got {x}")
        if nonneg and x < 0:
            self.fail(field, f"must be >= 0, got {x}")
        return float(x)

    def string(self, x: Any, field: str) -> str:
        if not isinstance(x, str):
            self.fail(field, f"expected a string, got {_kind(x)}")
        return x

    def boolean(self, x: Any, field: str) -> bool:
        if not isinstance(x, bool):
            self.fail(field, f"expected true or false, got {_kind(x)} {excerpt(x)}")
        return x

    def choice(self, x: Any, field: str, choices) -> str:
        if not isinstance(x, str) or x not in choices:
            self.fail(field, f"unknown value {excerpt(x)}; one of: {', '.join(choices)}{suggest(x, choices)}")
        return x

    def mapping(self, x: Any, field: str, keys) -> dict:
        if not isinstance(x, dict):
            self.fail(field, f"expected a mapping, got {_kind(x)}")
        self.known_keys(x, keys, field)
        return x

    def known_keys(self, d: dict, keys, field: str) -> None:
        for k in d:
            if k not in keys:
                where = f"{field}.{_key(k)}" if field else _key(k)
                self.fail(where, f"unknown field{suggest(k, keys)}; known: {', '.join(keys)}")

    def shape(self, x: Any, field: str) -> tuple[int, ...]:
        if not isinstance(x, list) or not x:
            self.fail(field, f"expected a non-empty list of sizes like [4, 6], got {_kind(x)}")
        if len(x) > MAX_DIMS:
            self.fail(field, f"has {len(x)} axes; at most {MAX_DIMS}")
        shape = tuple(self.integer(s, f"{field}[{i}]", minimum=1) for i, s in enumerate(x))
        too_big(shape, self.file, field)
        return shape

    def npy(self, x: Any, field: str) -> Path:
        """A .npy file of real numbers (its header is read here; its values when the case runs)."""
        p = self.base / self.string(x, field)
        if not p.is_file():
            self.fail(field, f"file not found: {p}")
        dtype = self._read_npy(p, field).dtype
        if dtype.kind not in "biuf":
            self.fail(field, f"{p.name} holds {dtype} values; real numbers are needed")
        return p.resolve()

    def _read_npy(self, p: Path, field: str):
        import numpy as np

        try:
            return np.load(p, mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's field error
            self.fail(field, f"cannot read {p.name} as .npy: {exc}")

    # -- sections --------------------------------------------------------------------------
    def input(self, x: Any) -> tuple[tuple[int, ...], Path | None]:
        if isinstance(x, dict):
            self.known_keys(x, ("shape", "data"), "input")
            if "data" in x and "shape" not in x:
                data = self.npy(x["data"], "input.data")
                return self.shape(list(self._read_npy(data, "input.data").shape), "input.data"), data
            if "shape" not in x:
                self.fail("input.shape", "missing (required)")
            return self.shape(x["shape"], "input.shape"), \
                self.npy(x["data"], "input.data") if "data" in x else None
        return self.shape(x, "input"), None

    def layers(self, x: Any) -> tuple[LayerConfig, ...]:
        from . import catalog

        if not isinstance(x, list) or not x:
            self.fail("layers", "expected a non-empty list of layers")
        known = catalog.layers()
        out = []
        for i, entry in enumerate(x):
            field = f"layers[{i}]"
            if not isinstance(entry, dict):
                self.fail(field, f"expected a mapping with `type`, got {_kind(entry)}")
            if "type" not in entry:
                self.fail(f"{field}.type", "missing (required)")
            t = entry["type"]
            if not isinstance(t, str) or t not in known:
                self.fail(f"{field}.type", f"unknown layer {excerpt(t)}{suggest(t, known)}; "
                                           f"known: {', '.join(sorted(known))}")
            spec = known[t].cls
            opts = {o.name: o for o in spec.options}
            self.known_keys(entry, ("type", "params", *opts), field)
            values = {}
            for o in spec.options:
                if o.name in entry:
                    values[o.name] = self.option(o, entry[o.name], f"{field}.{o.name}")
                elif o.required:
                    self.fail(f"{field}.{o.name}", "missing (required)")
                else:
                    values[o.name] = o.default
            params = {}
            if "params" in entry and "params" not in opts:     # else the layer's own option
                pm = entry["params"]
                if not isinstance(pm, dict):
                    self.fail(f"{field}.params", f"expected a mapping of name: file.npy, got {_kind(pm)}")
                for k, f in pm.items():
                    params[str(k)] = self.npy(f, f"{field}.params.{k}")
            out.append(LayerConfig(i, t, MappingProxyType(values), MappingProxyType(params)))
        return tuple(out)

    def option(self, o: Option, x: Any, field: str) -> Any:
        if o.kind in ("int", "pair") and o.choices and isinstance(x, str):    # e.g. padding: same
            if x not in o.choices:
                numbers = "an integer" if o.kind == "int" else "an integer, a pair [a, b]"
                self.fail(field, f"unknown value {x!r}; {numbers} or one of: {', '.join(o.choices)}"
                                 f"{suggest(x, o.choices)}")
            val = x
        elif o.kind == "int":
            val = self.integer(x, field, minimum=o.min)
            if o.max is not None and val > o.max:
                self.fail(field, f"must be <= {o.max}, got {val}")
        elif o.kind == "pair":
            if isinstance(x, list):
                if len(x) != 2:
                    self.fail(field, f"expected an integer or a pair [a, b], got a list of {len(x)}")
                val = tuple(self.integer(v, f"{field}[{j}]", minimum=o.min) for j, v in enumerate(x))
            else:
                val = self.integer(x, field, minimum=o.min)
        elif o.kind == "bool":
            val = self.boolean(x, field)
        elif o.kind == "float":
            val = self.number(x, field)
            if o.min is not None and val < o.min:
                self.fail(field, f"must be >= {o.min}, got {val}")
        elif o.kind == "choice":
            val = self.choice(x, field, o.choices)
        elif o.kind == "str":
            val = self.string(x, field)
        elif o.kind == "choices":      # e.g. modes: [rev, fwd]
            if isinstance(x, str):
                x = [x]
            if not isinstance(x, list) or not x:
                self.fail(field, f"expected a non-empty list out of: {', '.join(o.choices)}, got {_kind(x)}")
            val = tuple(self.choice(v, f"{field}[{j}]", o.choices) for j, v in enumerate(x))
            if len(set(val)) < len(val):
                self.fail(field, f"names a value twice: {', '.join(val)}")
        elif o.kind == "any":          # checked by the layer itself (e.g. a list of axis names)
            val = x
        elif o.kind == "mapping":
            if not isinstance(x, dict):
                self.fail(field, f"expected a mapping, got {_kind(x)}")
            val = MappingProxyType(dict(x))
        else:  # pragma: no cover - a layer author's mistake, not the user's
            raise TypeError(f"unknown option kind {o.kind!r}")
        return o.resolve(val, self.base) if o.resolve else val

    def loss(self, x: Any) -> tuple[str, Path | None, str]:
        from .losses import LOSSES

        if isinstance(x, str):
            if x == "function":
                self.fail("loss", "loss `function` needs its code: loss: {type: function, impl: FILE.py:function}")
            return self.choice(x, "loss", tuple(LOSSES)), None, "sum"
        if not isinstance(x, dict):
            self.fail("loss", f"expected a loss name or a mapping with `type`, got {_kind(x)}")
        self.known_keys(x, ("type", "target", "reduction", "impl"), "loss")
        if "type" not in x:
            self.fail("loss.type", "missing (required)")
        name = self.choice(x["type"], "loss.type", (*LOSSES, "function"))
        if name == "function" or "impl" in x:
            name = self.function_loss(name, x)
        target = self.npy(x["target"], "loss.target") if "target" in x else None
        if target is not None and name != "function" and LOSSES[name].target_kind is None:
            self.fail("loss.target", f"loss `{name}` takes no target")
        return name, target, self.choice(x.get("reduction", "sum"), "loss.reduction", REDUCTIONS)

    def function_loss(self, name: str, x: dict) -> str:
        """``{type: function, impl: FILE.py:function}``: the loss as a name carrying its impl."""
        from .loss_function import FunctionRef

        if name != "function":
            self.fail("loss.impl", f"loss `{name}` takes no impl (only `type: function` does)")
        if "impl" not in x:
            self.fail("loss.impl", "missing (required): FILE.py:function returning (loss, dscores)")
        return FunctionRef(self.string(x["impl"], "loss.impl"), self.base, self.file)

    def regularization(self, x: Any) -> float:
        m = self.mapping(x, "regularization", ("l2",))
        return self.number(m.get("l2", 0.0), "regularization.l2", nonneg=True)

    def forms(self, x: Any, layers=()) -> tuple[str, ...] | None:
        from .catalog import get

        named = tuple(f for cfg in layers for f in get(cfg.type).cls.form_names(cfg.options) if f not in FORMS)
        if x is None:
            return None
        if isinstance(x, str):
            x = [x]
        if not isinstance(x, list) or not x:
            self.fail("forms", "expected a non-empty list of forms")
        return tuple(self.choice(f, f"forms[{i}]", (*FORMS, "custom", *named)) for i, f in enumerate(x))

