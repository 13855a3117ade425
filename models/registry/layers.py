"""The registry instance YAML rows resolve through, and the decorator that makes an attention module placeable.

:data:`LOCATIONS` names the modules whose import registers layers; :data:`LAYERS` imports them on its first look-up,
so ``from models.registry import LAYERS`` is enough to resolve every name. That is the one runtime edge from the
bottom of the house to the rooms above it (tests/test_layering.py names it); nothing here imports them statically.
"""

from __future__ import annotations

import inspect
from typing import Callable, Mapping

from models.registry.store import LayerSpec, Registry

# Modules whose import registers layers, imported on the first look-up (order: blocks the others build on first).
LOCATIONS = (
    "models.layers.blocks",
    "models.layers.yolov7",
    "models.attention",
    "models.layers.attention_blocks",
    "models.layers.port_blocks",
    "models.layers.c2f_attention",
    "models.heads.detect",
    "models.heads.anchor",
)

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

    The class subclasses :class:`models.registry.protocol.AttentionModule`, takes the input channel count as its first
    positional argument, keeps the input shape, and gives its hyperparameters the paper's defaults. ``renamed``
    maps hyperparameter names a module used to accept (or that popular ports use) to the current ones; YAML rows
    may still write them. ``forms`` lists the values of the class's ``form`` argument where a module offers several
    (``"official"``: the official code's forward, checked by the golden tests; ``"paper"``: the paper's equations;
    named variants); the signature's default must be one of them.
    """

    def deco(cls: type) -> type:
        from models.registry.protocol import AttentionModule  # torch-level base class; imported late to keep this file light

        if not (isinstance(cls, type) and issubclass(cls, AttentionModule)):
            raise TypeError(f"@register_attention: {getattr(cls, '__name__', cls)!r} must subclass "
                            "models.registry.protocol.AttentionModule (build notes, init_identity, attention_maps)")
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

