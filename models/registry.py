"""The layer contract: YAML names, how a row's arguments bind to a class, and the errors a bad row gets.

This is the bottom of the model side. A YAML row names a layer by string; the parser resolves it here
and nowhere else (no ``eval``, no module globals). Making a class placeable from a YAML is one
decorator on the class. Everything a row's arguments must satisfy lives here too, so the parser, the
blocks that take an attention module by name (``C3Att``, ``ResidualBlend``) and the insertion tool bind
arguments the same way and fail with the same :class:`ConfigError`:

- :func:`bind_arguments`: YAML arguments against the class signature (old hyperparameter names renamed,
  with a note), one error type naming the layer and what the class accepts;
- :func:`scaled_width`: the nominal-width rule (a YAML's channel count times ``width_multiple``, capped
  by ``max_channels``, rounded to a multiple of 8);
- :func:`attention_arguments`: an attention row's optional first argument checked against its real
  input width.

The registry imports the places that register into it the first time it is asked for a name
(:data:`LOCATIONS`, as mmengine's registries do), so ``LAYERS.get("CBAM")`` works after importing this
module alone, and nothing below the parser ever imports the parser.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ultralytics.utils.ops import make_divisible

# Modules whose import registers layers, imported on the first look-up (order: blocks the others build on first).
LOCATIONS = (
    "models.common",
    "models.yolov7_blocks",
    "models.attention",
    "models.attention_blocks",
    "models.heads",
)

KINDS = ("attention", "conv", "repeat", "concat", "head", "passthrough", "norm", "custom")


class ConfigError(ValueError):
    """A model YAML that cannot be built; the message names the file, the layer and the argument."""


@dataclass(frozen=True)
class RowContext:
    """What a layer's own argument rule (:attr:`LayerSpec.make_args`) may read about its row."""

    c_from: list[int]  # channels of each 'from' input
    model: dict  # the whole model dict (nc, anchors, hyp, reg_max, ...)
    width: float = 1.0  # width_multiple
    max_channels: float = float("inf")
    where: str = "<row>"  # "file: layer i (Name)", for messages


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class LayerSpec:
    """How the parser treats one registered layer type.

    kind:
        ``attention``: shape-preserving, ``cls(c_in, *hyperparameters)``; output channels = input channels.
        ``conv``: ``cls(c1, c2, *rest)``; the YAML's first argument is the nominal output width (scaled).
        ``repeat``: like ``conv`` with the repeat count inserted as the third argument.
        ``concat``: output channels are the sum of the inputs.
        ``head``: detection head; :attr:`make_args` turns the row into constructor arguments.
        ``passthrough``: output channels equal input channels, arguments passed as written.
        ``norm``: ``cls(c_in)``, shape-preserving.
        ``custom``: :attr:`make_args` gives the constructor arguments and the output channels.
    """

    name: str
    cls: type
    kind: str
    # Parser hooks (None / False: not used)
    make_args: Callable[[list, RowContext], tuple[list, int | None]] | None = None
    # one YAML name, several classes: (args, model dict) -> registered name (Detect [nc, anchors] -> AnchorDetect;
    # Bottleneck in a YAML without 'scales:' -> yolov5.Bottleneck)
    dispatch: Callable[[list, dict], str] | None = None
    post_build: Callable[[Any, list], None] | None = None  # adjust the built module (e.g. SPPF's YOLOv5 activation)
    shape_preserving: bool = False  # may be inserted anywhere (attention, norms, wrappers)
    legacy: bool | None = None  # value of the head class's ``legacy`` flag while building (ultralytics Detect)
    renamed: Mapping[str, str] = field(default_factory=dict)  # old hyperparameter name -> current name
    # Attention metadata (only for kind 'attention')
    category: str = ""
    paper: str = ""
    arxiv: str = ""
    year: int = 0
    placement: str = "backbone_end"  # backbone_end | p5 | neck_outputs
    dense: bool = False  # builds an N x N (or similar) attention map
    onnx_dynamic: bool = True  # exports with dynamic H and W
    onnx_note: str = ""  # why not, when onnx_dynamic is False
    notes: str = ""  # where popular ports differ / departures from the paper
    forms: tuple[str, ...] = ()  # values of the class's ``form`` argument (official code / paper / named variants)
    config_name: str = ""  # file-name tag of configs/yolov5-<tag>.yaml (default: the name in lower case)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"layer '{self.name}': unknown kind '{self.kind}'; kinds are {', '.join(KINDS)}")
        if self.kind in ("head", "custom") and self.make_args is None:
            raise ValueError(f"layer '{self.name}': kind '{self.kind}' needs make_args")
        object.__setattr__(self, "renamed", _frozen(self.renamed))
        if self.kind in ("attention", "norm"):
            object.__setattr__(self, "shape_preserving", True)

    @property
    def tag(self) -> str:
        """File-name tag of the module's config: ``configs/yolov5-<tag>.yaml``."""
        return self.config_name or self.name.lower()


class Registry:
    """A mapping from YAML names to :class:`LayerSpec`; imports ``locations`` on the first look-up."""

    def __init__(self, what: str, locations: tuple[str, ...] = ()):
        self.what = what
        self.locations = locations
        self._specs: dict[str, LayerSpec] = {}
        self._state = "empty"  # empty -> loading -> loaded

    # -- registration --------------------------------------------------------------------------------------------------

    def register(self, name: str | None = None, *, kind: str, **fields) -> Callable[[type], type]:
        """Class decorator: register ``cls`` under ``name`` (default: the class name)."""

        def deco(cls: type) -> type:
            key = name or cls.__name__
            old = self._specs.get(key)
            if old is not None and old.cls is not cls:
                raise KeyError(f"{self.what} name '{key}' is already registered by {old.cls!r}")
            self._specs[key] = LayerSpec(name=key, cls=cls, kind=kind, **fields)
            return cls

        return deco

    def add(self, cls: type, *, kind: str, name: str | None = None, **fields) -> None:
        self.register(name, kind=kind, **fields)(cls)

    # -- look-up -------------------------------------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if self._state != "empty":
            return  # loaded, or a location is importing right now (its own registrations need no look-up)
        self._state = "loading"
        try:
            for location in self.locations:
                importlib.import_module(location)
        except BaseException:
            self._state = "empty"
            raise
        self._state = "loaded"

    def get(self, name: str) -> LayerSpec:
        self._ensure_loaded()
        try:
            return self._specs[name]
        except (KeyError, TypeError):
            raise KeyError(self.unknown_message(name)) from None

    def unknown_message(self, name) -> str:
        close = difflib.get_close_matches(str(name), list(self._specs), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"unknown {self.what} '{name}'.{hint} Registered: {', '.join(sorted(self._specs))}"

    def __contains__(self, name) -> bool:
        self._ensure_loaded()
        return isinstance(name, str) and name in self._specs

    def __iter__(self):
        self._ensure_loaded()
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._specs)

    def names(self, kind: str | None = None) -> list[str]:
        self._ensure_loaded()
        return sorted(k for k, s in self._specs.items() if kind is None or s.kind == kind)

    def specs(self, kind: str | None = None) -> list[LayerSpec]:
        """Registered specs (of one kind), sorted by name."""
        self._ensure_loaded()
        return sorted((s for s in self._specs.values() if kind is None or s.kind == kind), key=lambda s: s.name)


LAYERS = Registry("layer", locations=LOCATIONS)


def register_attention(
    name: str | None = None,
    *,
    category: str,
    paper: str,
    arxiv: str = "",
    year: int = 0,
    placement: str = "backbone_end",
    dense: bool = False,
    onnx_dynamic: bool = True,
    onnx_note: str = "",
    notes: str = "",
    renamed: Mapping[str, str] | None = None,
    forms: tuple[str, ...] = (),
    config_name: str = "",
) -> Callable[[type], type]:
    """Class decorator: make an attention module placeable from a model YAML.

    The class subclasses :class:`models.protocol.AttentionModule`, takes the input channel count as its first
    positional argument, keeps the input shape, and gives its hyperparameters the paper's defaults. ``renamed``
    maps hyperparameter names a module used to accept (or that popular ports use) to the current ones; YAML rows
    may still write them. ``forms`` lists the values of the class's ``form`` argument where a module offers several
    (``"official"``: the official code's forward, checked by the golden tests; ``"paper"``: the paper's equations;
    named variants); the signature's default must be one of them.
    """

    def deco(cls: type) -> type:
        from models.protocol import AttentionModule  # torch-level base class; imported late to keep this file light

        if not (isinstance(cls, type) and issubclass(cls, AttentionModule)):
            raise TypeError(f"@register_attention: {getattr(cls, '__name__', cls)!r} must subclass "
                            "models.protocol.AttentionModule (build notes, init_identity, attention_maps)")
        params = list(inspect.signature(cls).parameters)
        for old, new in (renamed or {}).items():
            if new not in params:
                raise TypeError(f"@register_attention({name or cls.__name__}): renamed {old!r} -> {new!r}, "
                                f"but {cls.__name__} has no parameter {new!r}")
        if forms:
            form = inspect.signature(cls).parameters.get("form")
            if form is None or form.default not in forms or len(set(forms)) != len(forms):
                raise TypeError(f"@register_attention({name or cls.__name__}): forms={forms!r} needs a 'form' parameter "
                                "whose default is one of them (each listed once)")
        return LAYERS.register(
            name, kind="attention", category=category, paper=paper, arxiv=arxiv, year=year, placement=placement,
            dense=dense, onnx_dynamic=onnx_dynamic, onnx_note=onnx_note, notes=notes, renamed=renamed or {},
            forms=tuple(forms), config_name=config_name,
        )(cls)

    return deco


def attention_specs() -> list[LayerSpec]:
    """All registered attention modules, sorted by name."""
    return LAYERS.specs("attention")


# ----------------------------------------------------------------------------------------------------------------------
# Argument binding


def scaled_width(nominal: float, width: float = 1.0, max_channels: float = float("inf")) -> int:
    """The nominal-width rule: a YAML channel count times ``width_multiple``, capped, rounded to a multiple of 8."""
    return make_divisible(min(nominal, max_channels) * width, 8)


def accepted_parameters(cls) -> list[str]:
    """Constructor parameters after the first (the input channels), as a YAML row may name them."""
    return list(inspect.signature(cls).parameters)[1:]


def bind_arguments(cls, args: list, kwargs: dict, where: str, renamed: Mapping[str, str] | None = None,
                   notes: list[str] | None = None) -> dict:
    """Check ``cls(*args, **kwargs)`` against the signature; return the keywords with old names renamed.

    ``renamed`` maps accepted old hyperparameter names to current ones; each rename is added to ``notes``.
    Raises :class:`ConfigError` naming ``where``, the problem and the accepted parameters.
    """
    kwargs = dict(kwargs)
    for old, new in (renamed or {}).items():
        if old in kwargs:
            if new in kwargs:
                raise ConfigError(f"{where}: {cls.__name__} got both '{old}' (the old name) and '{new}'; write '{new}' only")
            kwargs[new] = kwargs.pop(old)
            if notes is not None:
                notes.append(f"'{old}' is the old name of '{new}'")
    try:
        inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as e:
        params = ", ".join(accepted_parameters(cls))
        old = f" (old names: {', '.join(f'{o} -> {n}' for o, n in renamed.items())})" if renamed else ""
        raise ConfigError(f"{where}: bad arguments for {cls.__name__}: {e}. It accepts: {params}{old}") from None
    return kwargs


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def attention_arguments(spec: LayerSpec, args: list, c_in: int, where: str, width: float = 1.0,
                        max_channels: float = float("inf"), notes: list[str] | None = None) -> tuple[list, dict]:
    """An attention row's arguments -> (positional hyperparameters, keywords), checked against the input width.

    ``args`` is what the row writes after the module name: an optional nominal channel count (the width a YOLOv5
    YAML writes before ``width_multiple``), positional hyperparameters and an optional trailing dict of keywords.
    """
    args = list(args)
    kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
    if args and is_int(args[0]):
        nominal = args.pop(0)
        scaled = scaled_width(nominal, width, max_channels)
        if scaled != c_in:
            exact = c_in / width if width else c_in
            ok = float(exact).is_integer() and scaled_width(exact, width, max_channels) == c_in
            fix = f"write {int(exact)}" if ok else "omit it"
            raise ConfigError(
                f"{where}: {spec.name} was given {nominal} channels, which width_multiple {width:g} scales to {scaled}, "
                f"but its input (the 'from' layer) has {c_in} channels. Fix the first argument ({fix}) or leave it out: "
                "attention modules take their input channels from the 'from' layer."
            )
    kwargs = bind_arguments(spec.cls, [c_in, *args], kwargs, where, spec.renamed, notes)
    return args, kwargs


def attention_spec(name, where: str) -> LayerSpec:
    """The registered attention module ``name``; :class:`ConfigError` for unknown names and non-attention layers."""
    if not isinstance(name, str):
        raise ConfigError(f"{where}: the attention module must be a registered name, got {name!r}")
    try:
        spec = LAYERS.get(name)
    except KeyError as e:
        raise ConfigError(f"{where}: {e.args[0]}") from None
    if spec.kind != "attention":
        raise ConfigError(f"{where}: '{name}' is a '{spec.kind}' layer, not an attention module. "
                          f"Attention modules: {', '.join(LAYERS.names('attention'))}")
    return spec
