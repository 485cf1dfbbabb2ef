"""Layers and their gradient forms, registered by decorators.

A layer is a class deriving from :class:`Layer`, registered with ``@register("name")``.
Its gradient forms are methods decorated with ``@form("kron", seed="001 eq. (9)")``, all with
the signature ``(self, dy, x, params) -> {"x": dL/dx, <param>: dL/d<param>, ...}``.
A form that has no meaning for a layer is listed in the class attribute ``na`` with a
one-line reason. The CLI, the check and the renderers read everything from here, so adding a
layer or a form touches only the layer's own module.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

import numpy as np

from .errors import ShapeError

FORMS: tuple[str, ...] = ("kron", "correlation", "spray")
REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a layer as written in the YAML case.

    ``kind`` is one of ``int`` (>= ``min``, <= ``max`` when set), ``pair`` (int or [int, int], each
    >= ``min``), ``bool``, ``float``, ``choice`` (one of ``choices``), ``choices`` (a list of
    distinct ``choices``), ``str``, ``mapping``, ``any`` (left to the layer to check). An ``int`` or
    ``pair`` option with ``choices`` also takes one of those words (``padding: same``).
    ``resolve`` may turn the validated value into something else, given the case's folder
    (for options that name files).
    """

    name: str
    kind: str
    default: Any = REQUIRED
    min: int | float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    resolve: Callable[[Any, Any], Any] | None = None
    max: int | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclasses.dataclass(frozen=True)
class FormInfo:
    name: str
    method: str
    seed: str


def form(name: str, seed: str = "") -> Callable:
    """Mark a layer method as the gradient form ``name``; ``seed`` cites the derivation."""
    if name not in FORMS and name != "custom":
        raise ValueError(f"unknown form {name!r}")

    def mark(fn: Callable) -> Callable:
        fn._gradcheck_form = FormInfo(name, fn.__name__, seed)
        return fn

    return mark


class Layer:
    """Base class of every layer.

    Subclasses set ``options`` (the YAML fields), ``param_names`` (or override ``params``),
    implement ``output_shape``, ``init_params`` and ``forward``, and decorate one method per
    gradient form. ``per_sample`` says that sample n of the output depends only on sample n of
    the input (true for every built-in layer), which lets the numerical check fold many
    perturbed copies into the batch axis.
    """

    type_name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    param_names: ClassVar[tuple[str, ...]] = ()
    regularized: ClassVar[tuple[str, ...]] = ()
    na: ClassVar[dict[str, str]] = {}
    per_sample: ClassVar[bool] = True
    forms: ClassVar[dict[str, FormInfo]] = {}
    example_input: ClassVar[tuple[int, ...]] = (4, 6)   # input shape of the starter case
    example: ClassVar[dict[str, Any]] = {}               # option values of the starter case

    def __init__(self, **options: Any) -> None:
        for opt in self.options:
            setattr(self, opt.name, options.get(opt.name, opt.default))

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        found: dict[str, FormInfo] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                info = getattr(attr, "_gradcheck_form", None)
                if info is not None:
                    found[info.name] = info
        cls.forms = {f: found[f] for f in (*FORMS, "custom") if f in found}

    # -- what a subclass provides -------------------------------------------------------
    def params(self) -> tuple[str, ...]:
        """Names of this layer's parameters (may depend on options, e.g. ``bias``)."""
        return self.param_names

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the output for an input of ``in_shape`` (batch first); ShapeError if impossible."""
        return tuple(in_shape)

    def param_shapes(self, in_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Shape of each parameter for an input of ``in_shape``."""
        return {}

    def init_params(self, in_shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw parameter values (gradients of ordinary size: scaled by fan-in)."""
        out = {}
        for name, shape in self.param_shapes(in_shape).items():
            fan_in = max(1, int(np.prod(shape[1:])) if len(shape) > 1 else 1)
            out[name] = rng.standard_normal(shape) / np.sqrt(fan_in)
        return out

    def forward(self, x: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def forward_stacked(self, x: np.ndarray, params: dict[str, np.ndarray], name: str,
                        values: np.ndarray) -> np.ndarray:
        """Outputs for K values of parameter ``name`` at once: shape (K, *output).

        The default evaluates the forward once per value; layers override it with one
        vectorised evaluation. Either way each output is a real forward evaluation.
        """
        out = []
        for v in values:
            p = dict(params)
            p[name] = v
            out.append(self.forward(x, p))
        return np.stack(out)

    def anchor(self, params: dict[str, np.ndarray]) -> None:
        """Called by Network.build with the parameter values the check is made at (no-op here).

        A layer whose backward is the exact derivative of a surrogate built around these values
        (e.g. a straight-through rule) keeps them, and its forward then evaluates that surrogate,
        equal to the real forward at these values.
        """

    def row_note(self, tensor: str, form: str, analytic: np.ndarray, numerical: np.ndarray) -> str:
        """A note for the check row of ``tensor`` in ``form`` (checked entries, flat); "" for none."""
        return ""

    def kink_distance(self, x: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray | None:
        """Optional hook: for each entry of ``x``, how far that entry alone must move before this
        layer's output stops being differentiable in it (ReLU: |x|; max-pool: the gap between the
        entry and its window's max, or for the max the gap to the runner-up; 0 at a tie).

        None (the default): the layer does not say; the general one-sided rule still catches kinks.
        The check uses it to count kinks exactly and to keep generated inputs a margin away.
        """
        return None

    def frozen_forward(self, x: np.ndarray, params: dict[str, np.ndarray],
                       at: np.ndarray) -> np.ndarray | None:
        """Optional hook, for a layer with selections (ReLU on/off, a max-pool's argmax): the
        forward with every selection fixed as at the input ``at`` (same shape as ``x``). It equals
        ``forward`` at x = at, is smooth in x, and its derivative is what the layer's forms give
        at ``at`` (their convention on kinks). ``x`` may hold several copies of the batch stacked
        on the first axis (a multiple of ``at``'s): repeat the selections for each. None (the
        default): no selections, the forward
        serves. Used by frozen.py for entries whose step crosses several kinks at once.
        """
        return None

    def structure(self, in_shape: tuple[int, ...], name: str):
        """Which outputs of one sample each entry of ``name`` ("x" or a parameter) can change.

        A boolean scipy.sparse matrix (entries of one output sample, entries of one input
        sample for "x" | entries of the parameter), true at [r, j] when entry j can change
        output r; it may over-approximate, never under. ``None`` (the default) means "every
        output of the sample". The numerical check uses it to perturb entries whose outputs do
        not overlap in one forward evaluation (see ``sparsity.py``).
        """
        return None

    def workspace(self, in_shape: tuple[int, ...]) -> int:
        """Bytes of scratch memory one forward pass on ``in_shape`` needs besides its output."""
        return 0

    @classmethod
    def form_names(cls, options: Any) -> tuple[str, ...]:
        """The forms of a layer with these validated options (``forms:`` may name them): the
        class's own, unless its options name forms (``type: expression``)."""
        return tuple(cls.forms)

    # -- helpers -------------------------------------------------------------------------
    def backward(self, form_name: str, dy: np.ndarray, x: np.ndarray,
                 params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Gradients of x and every parameter by the form ``form_name``."""
        return getattr(self, self.forms[form_name].method)(dy, x, params)

    @classmethod
    def starter_case(cls) -> str:
        """A YAML case for this layer alone, for `gradcheck new`."""
        import yaml

        filler = {"int": 3, "pair": 3, "bool": True, "float": 1.0, "str": "", "mapping": {}}
        opts = {}
        for o in cls.options:
            if o.name in cls.example:
                opts[o.name] = cls.example[o.name]
            elif not o.required:
                opts[o.name] = list(o.default) if isinstance(o.default, tuple) else o.default
            else:
                opts[o.name] = o.choices[0] if o.kind == "choice" else filler[o.kind]
        doc = {"name": f"{cls.type_name}-starter", "seed": 0, "dtype": "float64",
               "input": list(cls.example_input), "layers": [{"type": cls.type_name, **opts}],
               "loss": "projection"}
        return (f"# gradcheck case: {cls.summary}\n# run: gradcheck run this.yaml\n"
                + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    name: str
    cls: type[Layer]

    @property
    def forms(self) -> dict[str, FormInfo]:
        return self.cls.forms

    @property
    def na(self) -> dict[str, str]:
        return self.cls.na


LAYERS: dict[str, LayerSpec] = {}


def register(name: str) -> Callable[[type[Layer]], type[Layer]]:
    """Class decorator: make a Layer subclass available as ``type: name`` in cases."""

    def deco(cls: type[Layer]) -> type[Layer]:
        cls.type_name = name
        for f in FORMS:
            if f not in cls.forms and f not in cls.na and "custom" not in cls.forms:
                raise TypeError(f"layer {name!r}: form {f!r} neither implemented nor marked n/a")
        LAYERS[name] = LayerSpec(name, cls)
        return cls

    return deco


def pair(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """An int or a pair of ints as a pair."""
    if isinstance(v, (list, tuple)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def need(cond: bool, field: str, msg: str) -> None:
    """Raise ShapeError on ``field`` unless ``cond`` holds (used in output_shape)."""
    if not cond:
        raise ShapeError(field, msg)
