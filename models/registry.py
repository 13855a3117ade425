"""Name -> class registry used by the YAML parser.

A YAML row names a layer by string. The parser resolves that string here and nowhere else: no
``eval``, no module globals. Making a class placeable from YAML is one decorator on the class.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class LayerSpec:
    """How the parser treats one registered layer type.

    kind:
        ``attention``: shape-preserving, ``cls(c_in, *hyperparameters)``; output channels = input channels.
        ``conv``: ``cls(c1, c2, *rest)``; the YAML's first argument is the nominal output width (scaled).
        ``repeat``: like ``conv`` with the repeat count inserted as the third argument.
        ``concat``: output channels are the sum of the inputs.
        ``head``: detection head, built from the channel list of its inputs.
        ``passthrough``: output channels equal input channels, arguments passed as written.
    """

    name: str
    cls: type
    kind: str
    # Attention metadata (ignored for other kinds)
    category: str = ""
    paper: str = ""
    arxiv: str = ""
    year: int = 0
    placement: str = "backbone_end"  # backbone_end | p5 | neck_outputs
    dense: bool = False  # builds an N x N (or similar) attention map
    onnx_dynamic: bool = True  # exports with dynamic H and W
    onnx_note: str = ""  # why not, when onnx_dynamic is False
    notes: str = ""  # where popular ports differ / departures from the paper
    extra: dict = field(default_factory=dict)


class Registry:
    """A mapping from YAML names to :class:`LayerSpec`."""

    def __init__(self, what: str):
        self.what = what
        self._specs: dict[str, LayerSpec] = {}

    def register(self, name: str | None = None, *, kind: str, **meta) -> Callable[[type], type]:
        def deco(cls: type) -> type:
            key = name or cls.__name__
            if key in self._specs and self._specs[key].cls is not cls:
                raise KeyError(f"{self.what} name '{key}' is already registered by {self._specs[key].cls!r}")
            known = {f for f in LayerSpec.__dataclass_fields__} - {"name", "cls", "kind", "extra"}
            fields = {k: v for k, v in meta.items() if k in known}
            extra = {**meta.get("extra", {}), **{k: v for k, v in meta.items() if k not in known and k != "extra"}}
            self._specs[key] = LayerSpec(name=key, cls=cls, kind=kind, extra=extra, **fields)
            return cls

        return deco

    def add(self, cls: type, *, kind: str, name: str | None = None, **meta) -> None:
        self.register(name, kind=kind, **meta)(cls)

    def get(self, name: str) -> LayerSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), list(self._specs), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"unknown {self.what} '{name}'.{hint} Registered: {', '.join(sorted(self._specs))}"

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def __iter__(self):
        return iter(self._specs.values())

    def names(self, kind: str | None = None) -> list[str]:
        return sorted(k for k, s in self._specs.items() if kind is None or s.kind == kind)


LAYERS = Registry("layer")


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
    **extra,
) -> Callable[[type], type]:
    """Class decorator: make an attention module placeable from a model YAML.

    The class must take the input channel count as its first positional argument, keep the input
    shape, and give its hyperparameters the paper's defaults.
    """
    return LAYERS.register(
        name,
        kind="attention",
        category=category,
        paper=paper,
        arxiv=arxiv,
        year=year,
        placement=placement,
        dense=dense,
        onnx_dynamic=onnx_dynamic,
        onnx_note=onnx_note,
        notes=notes,
        extra=extra,
    )


def attention_specs() -> list[LayerSpec]:
    """All registered attention modules, sorted by name (imports every attention family first)."""
    import models.attention  # noqa: F401  (registers on import)

    return sorted((s for s in LAYERS if s.kind == "attention"), key=lambda s: s.name)
