"""The module protocol: what every attention module offers the rest of the project.

Heatmaps, weight transfer, the docs and the dense-memory check read attention modules only through
this contract, never by probing for attribute names:

- ``build_notes``: the adjustments made while building (a group count clamped to a divisor of C, a
  hidden width floored...), recorded with :meth:`AttentionModule.clamp` and printed under the model's
  layer table;
- :meth:`~AttentionModule.init_identity`: make the module compute exactly ``x`` (zero gamma, zero last
  layer) and return True, or return False when it cannot (a sigmoid gate is never exactly 1);
- :meth:`~AttentionModule.attention_maps`: the module's own maps for one input, ``{"spatial": (B, H, W),
  "channel": (B, C)}`` (either may be absent), optionally with ``"spatial_how"``/``"channel_how"`` labels;
- :meth:`~AttentionModule.attention_map_elements`: for dense modules, the elements of the attention map
  an ``h x w`` input makes (the memory check sizes it).

Blocks that are not attention modules but can start as the identity (``C3Att``, ``ELANAtt``, ``ResidualBlend``)
implement :class:`IdentityInit`; one that extends another layer (C3Att extends C3) names it in
:attr:`IdentityInit.TRANSFER_FROM`, so pretrained weights of that layer transfer into it. :class:`GatedAttention` is
the base of the ``x * gate(x)`` modules. :class:`DetectionHead` is what this project's heads offer the model, fusion
and weight transfer (ultralytics' ``Detect`` is used as ultralytics defines it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

AttentionMaps = dict[str, Any]  # {"spatial": (B, H, W), "channel": (B, C), "spatial_how": str, "channel_how": str}


class IdentityInit:
    """Mixin of layers that can be set to compute the identity (for an exact start after weight transfer)."""

    TRANSFER_FROM: tuple[str, ...] = ()  # layer types whose weights this layer extends (a C3 in C3Att's place)

    def init_identity(self) -> bool:
        """Make the layer compute exactly its input; return True on success, False if it cannot."""
        return False


class AttentionModule(IdentityInit, nn.Module):
    """Base class of every registered attention module (``@register_attention``).

    Subclasses call ``super().__init__()`` first, take the input channel count as their first argument and keep
    the input shape.
    """

    def __init__(self):
        super().__init__()
        self.build_notes: list[str] = []

    def clamp(self, what: str, asked, got, why: str = ""):
        """Return ``got``; when it differs from ``asked``, record ``"what asked -> got (why)"`` in build_notes.

        ``self.heads = self.clamp("heads", heads, divisor_at_most(c1, heads), f"C={c1}")`` is the whole pattern
        of a hyperparameter a module adjusts to fit its input width.
        """
        if got != asked:
            self.build_notes.append(f"{what} {asked} -> {got}" + (f" ({why})" if why else ""))
        return got

    def attention_maps(self, x: torch.Tensor) -> AttentionMaps:
        """The module's own maps for ``x``: ``{"spatial": (B, H, W), "channel": (B, C)}``, either may be absent,
        optionally labelled by ``"spatial_how"``/``"channel_how"``. Empty (the default): heatmaps derive both maps
        from the layer's input and output. A multiplicative gate returns ``self.gate_maps(gate, "how")``."""
        return {}

    def attention_map_elements(self, h: int, w: int) -> int:
        """Elements of the attention map (per sample) an ``h x w`` input makes; dense modules override as needed."""
        return (h * w) ** 2

    @staticmethod
    def gate_maps(gate: torch.Tensor, how: str = "gate") -> AttentionMaps:
        """Maps of a multiplicative gate of shape (B, C or 1, H or 1, W or 1): spatial = mean over channels,
        channel = mean over pixels, each only where the gate varies along that axis."""
        maps: AttentionMaps = {}
        if gate.shape[-2:] != (1, 1):
            maps["spatial"], maps["spatial_how"] = gate.mean(1), f"{how}, mean over channels"
        if gate.shape[1] > 1:
            pooled = gate.shape[-2:] != (1, 1)
            maps["channel"] = gate.mean((2, 3))
            maps["channel_how"] = f"{how}, mean over pixels" if pooled else how
        return maps


class GatedAttention(AttentionModule):
    """Base of the modules that rescale their input by a gate: ``forward(x) = x * gate(x)``.

    A subclass defines :meth:`gate` (a tensor broadcastable to x: (B, C, 1, 1), (B, 1, H, W) or (B, C, H, W)) and
    :attr:`gate_name` (how heatmaps label it); the forward pass and the heatmap maps follow from it.
    """

    gate_name = "gate"

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)

    def attention_maps(self, x: torch.Tensor) -> AttentionMaps:
        return self.gate_maps(self.gate(x), self.gate_name)


class DetectionHead:
    """Mixin of this project's detection heads (the anchor-based ones): what the model and weight transfer ask of them.

    The model calls :meth:`setup_strides` once after building (with the strides its probe measured), uses
    :meth:`make_criterion` as its loss and :meth:`fuse` when it is fused for inference; weight transfer asks
    :meth:`transfer_state` for a pretrained head's tensors in this head's names.
    """

    def setup_strides(self, strides: torch.Tensor) -> torch.Tensor:
        """Take the measured strides of the input levels; return the model's strides."""
        raise NotImplementedError

    def make_criterion(self, model: nn.Module):
        """The loss of a model ending in this head."""
        raise NotImplementedError

    def fuse(self) -> None:
        """Fold what only training needs into the inference layers (nothing by default)."""

    def pairs_with(self, source: nn.Module) -> bool:
        """Whether a pretrained head ``source`` of another class plays this head's role (its weights can transfer)."""
        return False

    def transfer_state(self, source: nn.Module, source_name: str,
                       notes: list[str]) -> tuple[dict[str, torch.Tensor], set[str]] | None:
        """A pretrained head ``source`` (from ``source_name``) in this head's place: (its tensors under this head's
        keys, this head's keys it set itself, e.g. identity parts), with what it did appended to ``notes``; None when
        it maps nothing special (tensors then transfer by key and shape)."""
        return None


def init_identity(module: nn.Module) -> bool:
    """Set ``module`` to the identity if it supports it (:class:`IdentityInit`); True on success."""
    return bool(module.init_identity()) if isinstance(module, IdentityInit) else False


def attention_modules(root: nn.Module) -> list[tuple[str, AttentionModule]]:
    """(qualified name, module) of every attention module under ``root``, outermost only (none inside another)."""
    found: list[tuple[str, AttentionModule]] = []
    for name, m in root.named_modules():
        if isinstance(m, AttentionModule) and not any(name.startswith(p + ".") or p == "" for p, _ in found):
            found.append((name, m))
    return found
