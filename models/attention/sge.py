"""Spatial Group-wise Enhance (SGE).

Li, Hu, Yang, "Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional
Networks", arXiv:1905.09646 (2019). Official code: implus/PytorchInsight (``SpatialGroupEnhance``).

The channels are split into G groups. In each group every position's feature vector is dotted with the group's
global average vector; the similarity map is normalised over H*W (zero mean, unit unbiased std), scaled and shifted
by a per-group (w, b), and its sigmoid gates the group. Official init w = 0, b = 1 (every feature starts scaled by
sigmoid(1) ~= 0.73). Equal to the official module (golden test ``SGE``, G = 64 at C = 64); no forms.

Departures from the paper:
- G clamps to the largest divisor of C that is <= 64 (the official default); noted in ``build_notes``.
- For fp16/bf16 inputs the similarity map and its statistics run in fp32 (they overflow fp16 under
  ``model.half()``); fp32 and fp64 inputs keep their dtype, as in the official code.
- std = ``sqrt(max(var, 1e-12)) + 1e-5`` with var's denominator ``max(H*W - 1, 1)``: on a 1x1 map the official
  ``t.std()`` is NaN, and the clamp keeps the square root's gradient finite on constant maps; elsewhere the values
  equal the official ``t.std() + 1e-5``.
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import GroupedSpatialGate, at_least_fp32, divisor_at_most, spatial_dof
from models.registry import register_attention


@register_attention(
    "SGE",
    category="spatial",
    paper="Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional Networks",
    arxiv="1905.09646",
    year=2019,
    placement="backbone_end",
    notes="EAP/ODS default to 8 groups and initialise b = 0 (output 0.5*x at init); official: 64 groups, b = 1.",
)
class SGE(GroupedSpatialGate):
    """Per group: x * sigmoid(w * normalise(sum_c x * mean_hw(x)) + b); 2G parameters."""

    def __init__(self, c1: int, groups: int = 64):
        super().__init__()
        self.groups = self.clamp("groups", groups, divisor_at_most(c1, groups), f"C={c1}")
        self.weight = nn.Parameter(torch.zeros(1, self.groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, self.groups, 1, 1))

    def _grouped_gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x as (B*G, C/G, H, W), its per-group spatial gate (B*G, 1, H, W))."""
        b, _, h, w = x.shape
        g = x.reshape(b * self.groups, -1, h, w)
        gf = at_least_fp32(g)
        sim = (gf * gf.mean((2, 3), keepdim=True)).sum(1, keepdim=True)  # (B*G, 1, H, W)
        t = sim - sim.mean((2, 3), keepdim=True)
        var = t.square().sum((2, 3), keepdim=True) / spatial_dof(t)
        t = t / (var.clamp(min=1e-12).sqrt() + 1e-5)
        t = t.reshape(b, self.groups, h, w) * at_least_fp32(self.weight) + at_least_fp32(self.bias)
        return g, torch.sigmoid(t).reshape(b * self.groups, 1, h, w).to(x.dtype)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
