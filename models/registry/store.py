"""The name store: a YAML row names a layer by string, and it resolves here and nowhere else (no ``eval``).

:class:`Registry` maps names to :class:`LayerSpec` (the class and how the parser treats its row). It is generic: the
instance that YAMLs use, with the places that register into it, is :data:`models.registry.layers.LAYERS`, and other
projects' names are resolved around it by :mod:`models.dialects`, which adds an explainer for names it knows.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

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
    """A mapping from YAML names to :class:`LayerSpec`; imports ``locations`` on the first look-up (as mmengine's
    registries do), so a look-up works after importing the instance alone.

    ``explainers``: functions ``name -> message or None`` that say more about a name that is not registered (the
    dialect layer adds one: another project's name for a module here, a module other projects have and this one
    lacks); the first message given is used, else the closest registered names.
    """

    def __init__(self, what: str, locations: tuple[str, ...] = ()):
        self.what = what
        self.locations = locations
        self._specs: dict[str, LayerSpec] = {}
        self._state = "empty"  # empty -> loading -> loaded
        self.explainers: list[Callable[[str], str | None]] = []

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
        """The spec registered as ``name``; aliases are not followed (their arguments need :meth:`resolve`)."""
        self._ensure_loaded()
        try:
            return self._specs[name]
        except (KeyError, TypeError):
            raise KeyError(self.unknown_message(name)) from None


    def closest(self, name, n: int = 5, extra: Mapping[str, str] | None = None) -> list[str]:
        """Up to ``n`` registered names (and names in ``extra``) closest to ``name`` (case-insensitive), best first."""
        self._ensure_loaded()
        by_lower: dict[str, str] = {}
        for key in [*self._specs, *(extra or {})]:
            by_lower.setdefault(key.lower(), key)
        low = str(name).lower()

        def score(key: str) -> float:  # similarity, with a name that begins the other (CoordAtt, CoordAttention) close
            short, long_ = sorted((key, low), key=len)
            prefix = 0.9 if len(short) >= 4 and long_.startswith(short) else 0.0
            return 2.0 if key == low else max(prefix, difflib.SequenceMatcher(None, low, key).ratio())

        ranked = sorted(by_lower, key=lambda k: -score(k))
        return [by_lower[k] for k in ranked if score(k) >= 0.6][:n]

    def unknown_message(self, name) -> str:
        """Why ``name`` does not resolve: an explainer's message, else the closest registered names."""
        self._ensure_loaded()
        for explain in self.explainers:
            message = explain(name)
            if message:
                return message
        close = self.closest(name)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"unknown {self.what} '{name}'.{hint} All names: docs/modules.md"

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

