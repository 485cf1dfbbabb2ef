"""YAML -> validated, frozen Case: reading the file, the top-level fields, the layers' shapes.
The fields' schema and validators are in case_schema.py.

Every mistake in a case raises :class:`CaseError` naming the file, the field's path
(``layers[1].out_features``) and, for broken YAML, the line.
"""
from __future__ import annotations

import dataclasses
import functools
import unicodedata
from pathlib import Path
from typing import Any

from .case_schema import (DTYPES, MODES, REDUCTIONS, LayerConfig, _kind, _Validator,  # noqa: F401 (API)
                          suggest, too_big)
from .errors import CaseError, ShapeError
from .yamlfile import MAX_DIMS, MAX_ENTRIES, _key, excerpt, parse_yaml, read_case_text  # noqa: F401 (API)

TOP_KEYS = ("name", "description", "seed", "dtype", "input", "layers", "loss", "regularization",
            "forms", "tolerance", "numerical", "mode", "slow")   # slow: read by pytest_plugin.py


@dataclasses.dataclass(frozen=True)
class Case:
    """A validated case. Paths are absolute; tolerances left None take the dtype's default."""

    name: str
    file: str
    layers: tuple[LayerConfig, ...]
    input_shape: tuple[int, ...]
    input_data: Path | None = None
    seed: int = 0
    dtype: str = "float64"
    loss: str = "projection"
    target: Path | None = None
    reduction: str = "sum"
    l2: float = 0.0
    forms: tuple[str, ...] | None = None
    rtol: float | None = None
    atol: float | None = None
    eps: float | None = None
    description: str = ""
    mode: str | None = None      # None: the default mode (local)

    @functools.cached_property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shapes between layers, from the input on: worked out once per case (:func:`check_shapes`)."""
        return tuple(check_shapes(self))


# ------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------
def load(path: str | Path) -> Case:
    """Read and validate one case file."""
    path = Path(path)
    text = read_case_text(path)
    return from_dict(parse_yaml(text, str(path)), str(path), base_dir=path.parent,
                     default_name=path.stem)


def from_dict(doc: Any, file: str = "<dict>", base_dir: str | Path = ".",
              default_name: str = "case") -> Case:
    """Validate a parsed case document (a dict as in the YAML file)."""
    v = _Validator(file, Path(base_dir))
    if doc is None:
        raise CaseError(file, "", "empty file: a case needs at least `input` and `layers`")
    if not isinstance(doc, dict):
        raise CaseError(file, "", f"the top level must be a mapping of fields, got {_kind(doc)}")
    v.known_keys(doc, TOP_KEYS, "")
    for key in ("input", "layers"):
        if key not in doc:
            raise CaseError(file, key, "missing (required)")

    name = v.string(doc.get("name", default_name), "name")
    if "name" in doc and (bad := next((c for c in name if unicodedata.category(c) in ("Cc", "Cs")), None)):
        raise CaseError(file, "name", f"contains the control character U+{ord(bad):04X}; a name is "
                                      "printed in terminals and written into XML reports")
    seed = v.integer(doc.get("seed", 0), "seed", minimum=0, maximum=None)
    dtype = v.choice(doc.get("dtype", "float64"), "dtype", DTYPES)
    input_shape, input_data = v.input(doc["input"])
    layers = v.layers(doc["layers"])
    loss, target, reduction = v.loss(doc.get("loss", "projection"))
    l2 = v.regularization(doc.get("regularization", {}))
    forms = v.forms(doc.get("forms"), layers)
    tol = v.mapping(doc.get("tolerance", {}), "tolerance", ("rtol", "atol"))
    num = v.mapping(doc.get("numerical", {}), "numerical", ("eps",))
    case = Case(
        name=name, file=file, layers=layers, input_shape=input_shape, input_data=input_data,
        seed=seed, dtype=dtype, loss=loss, target=target, reduction=reduction, l2=l2, forms=forms,
        rtol=v.number(tol["rtol"], "tolerance.rtol", positive=True) if "rtol" in tol else None,
        atol=v.number(tol["atol"], "tolerance.atol", nonneg=True) if "atol" in tol else None,
        eps=v.number(num["eps"], "numerical.eps", positive=True) if "eps" in num else None,
        description=v.string(doc.get("description", ""), "description"),
        mode=v.choice(doc["mode"], "mode", MODES) if "mode" in doc else None,
    )
    v.boolean(doc.get("slow", False), "slow")
    case.shapes         # noqa: B018 - the layers' shapes must chain (CaseError), kept for the run
    return case


def check_shapes(case: Case) -> list[tuple[int, ...]]:
    """Shapes between layers, from the input on; a CaseError at the first that does not chain.
    Use ``case.shapes``, which keeps the result."""
    from .catalog import make_layer

    shapes = [case.input_shape]
    for cfg in case.layers:
        layer = make_layer(cfg, case.file)
        try:
            shapes.append(tuple(int(s) for s in layer.output_shape(shapes[-1])))
        except ShapeError as exc:
            raise CaseError(case.file, f"{cfg.field}.{exc.field}" if exc.field != "input" else cfg.field,
                            f"{exc.message} (input shape {list(shapes[-1])})") from None
        if any(s <= 0 for s in shapes[-1]):
            raise CaseError(case.file, cfg.field,
                            f"output shape {list(shapes[-1])} is empty for input shape {list(shapes[-2])}")
        too_big(shapes[-1], case.file, cfg.field, "output shape")
        for name, s in layer.param_shapes(shapes[-2]).items():
            too_big(s, case.file, f"{cfg.field}.params.{name}", "shape")
    return shapes


def discover(paths: list[str]) -> list[Path]:
    """Case files named on the command line: files as given, folders -> every *.yaml / *.yml inside."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file())
        else:
            found.append(p)
    return found
