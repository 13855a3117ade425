"""EMA: Efficient Multi-scale Attention with cross-spatial learning.

Ouyang et al., "Efficient Multi-Scale Attention Module with Cross-Spatial
Learning", ICASSP 2023, arXiv:2305.13563. Official code: YOLOonMe/EMA-attention-module.

The channels are reshaped into G sub-feature groups (batch B G, C/G channels). Per group: a 1x1 branch (the map
averaged along W and along H, concatenated, one shared 1x1 conv, split back, sigmoids re-weight the group, then a
GroupNorm with one channel per group) gives x1; a 3x3 conv gives x2. Cross-spatial learning: the channel softmax of
GAP(x1) weights x2 and that of GAP(x2) weights x1 (dot products over the C/G channels per position); the sigmoid of the
sum of the two (1, H, W) maps gates the group. Equal to the official code (golden test ``EMAttention``); no forms.

Departures from the paper:
- G (``groups``; the official ``factor``, 32, is an accepted old name) clamps to the largest divisor of C not above it
  (the official reshape raises when G does not divide C); noted in ``build_notes``.
- Directional and global pools are ``mean`` over H / W / both instead of ``AdaptiveAvgPool2d``.
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import GroupedSpatialGate, divisor_at_most
from models.registry import register_attention


@register_attention(
    "EMAttention",
    category="hybrid",
    paper="Efficient Multi-Scale Attention Module with Cross-Spatial Learning",
    arxiv="2305.13563",
    year=2023,
    placement="backbone_end",
    notes="ODS defaults to factor 8 (official 32); official/ODS use adaptive pools (no dynamic ONNX, "
    "CUDA-nondeterministic backward). Registered as EMAttention to avoid YOLO's ModelEMA.",
    renamed={"factor": "groups"},
)
class EMAttention(GroupedSpatialGate):
    """Grouped 1x1 (directional) + 3x3 branches fused by cross-spatial softmax attention."""

    def __init__(self, c1: int, groups: int = 32):
        super().__init__()
        self.groups = self.clamp("groups", groups, divisor_at_most(c1, groups), f"C={c1}")
        cg = c1 // self.groups
        self.conv1x1 = nn.Conv2d(cg, cg, 1)
        self.conv3x3 = nn.Conv2d(cg, cg, 3, padding=1)
        self.gn = nn.GroupNorm(cg, cg)

    def _grouped_gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x as (B*G, C/G, H, W), its per-group gate sigmoid(weights) (B*G, 1, H, W))."""
        b, _, h, w = x.shape
        g = x.reshape(b * self.groups, -1, h, w)
        x_h = g.mean(3, keepdim=True)  # (BG, C/G, H, 1)
        x_w = g.mean(2, keepdim=True).transpose(2, 3)  # (BG, C/G, W, 1)
        a_h, a_w = torch.split(self.conv1x1(torch.cat((x_h, x_w), 2)), [h, w], 2)
        x1 = self.gn(g * torch.sigmoid(a_h) * torch.sigmoid(a_w.transpose(2, 3)))
        x2 = self.conv3x3(g)
        q1 = x1.mean((2, 3)).softmax(-1).unsqueeze(1)  # (BG, 1, C/G)
        q2 = x2.mean((2, 3)).softmax(-1).unsqueeze(1)
        weights = torch.matmul(q1, x2.flatten(2)) + torch.matmul(q2, x1.flatten(2))  # (BG, 1, H*W)
        return g, torch.sigmoid(weights).reshape(b * self.groups, 1, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
