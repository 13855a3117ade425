"""GAM: Global Attention Mechanism.

Liu, Shao, Hoffmann, "Global Attention Mechanism: Retain Information to Enhance Channel-Spatial
Interactions", arXiv:2112.05561 (2021). No official code was released.

CBAM-like sequential channel then spatial attention, without any pooling:

- channel submodule: a two-layer MLP (C -> C/r, ReLU, C/r -> C) applied to every pixel's channel vector
  (the paper's 3-D permutation + MLP + inverse permutation, which is exactly two 1x1 convs), sigmoid,
  ``F2 = M_c * x``. The map M_c is per pixel: there is no global descriptor.
- spatial submodule: 7x7 conv C -> C/r, BN, ReLU, 7x7 conv C/r -> C, BN, sigmoid, ``y = M_s * F2``.

Parameters are about 100 C^2 / r (1.6 M at C=256, r=4): heavy for a small YOLO. ``groups > 1`` gives the
paper's lighter ResNet-50 variant (grouped 7x7 convs with a channel shuffle).

Departures from the paper:
- The paper specifies no code; the layer details (conv biases, BN after each 7x7 conv) follow the widely
  used port (ODS ``GAM_Attention``), so the parameter count matches it.
- The per-pixel MLP is written as two 1x1 convs (identical maths, no permutes).
- The grouped variant (``groups > 1``, off by default) shuffles channels between the two grouped 7x7 convs;
  the paper only says "group convolution with channel shuffle". Its group count is clamped to a divisor of
  both C and C/r (noted in ``build_notes``).
- The BatchNorms are ``BatchNorm2dSafe`` (batch 1 on a 1x1 map in train mode uses the running statistics).
- The hidden width is ``max(C // r, min(min_channels, C))`` with ``min_channels=1`` by default, i.e. exactly C // r
  (never 0); a floor is recorded in ``build_notes``. The paper's ``rate`` is called ``reduction`` here, like every
  other module's C -> C/r ratio (``rate`` is still accepted in YAML rows).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.attention._common import BatchNorm2dSafe, channel_shuffle, divisor_at_most, hidden_width
from models.registry.protocol import AttentionModule
from models.registry import register_attention


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


@register_attention(
    "GAM",
    category="hybrid",
    paper="Global Attention Mechanism: Retain Information to Enhance Channel-Spatial Interactions",
    arxiv="2112.05561",
    year=2021,
    placement="p5",
    notes="Some blog versions return x*x or skip the channel sigmoid; ODS has both sigmoids (same maths as here). "
    "~100C^2/r parameters: place at small C or use groups > 1.",
    renamed={"rate": "reduction"},
)
class GAM(AttentionModule):
    """x * M_c(x) then * M_s(.), both full-resolution sigmoid maps; reduction (the paper's rate) r = 4."""

    def __init__(self, c1: int, reduction: int = 4, groups: int = 1, min_channels: int = 1):
        super().__init__()
        hidden = hidden_width(self, c1, reduction, min_channels)
        g = self.clamp("groups", groups, divisor_at_most(math.gcd(c1, hidden), groups), f"C={c1}, C/r={hidden}")
        self.channel_mlp = nn.Sequential(nn.Conv2d(c1, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, c1, 1))
        self.spatial = nn.Sequential(
            nn.Conv2d(c1, hidden, 7, padding=3, groups=g),
            BatchNorm2dSafe(hidden),
            nn.ReLU(),
            *([ChannelShuffle(g)] if g > 1 else []),
            nn.Conv2d(hidden, c1, 7, padding=3, groups=g),
            BatchNorm2dSafe(c1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.sigmoid(self.channel_mlp(x))
        return x * torch.sigmoid(self.spatial(x))

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The two gates the forward applies; both are (B, C, H, W) maps here (the channel gate is per pixel):
        channel = the channel gate's mean over pixels, spatial = the spatial gate's mean over channels."""
        mc = torch.sigmoid(self.channel_mlp(x))
        ms = torch.sigmoid(self.spatial(x * mc))
        return {"channel": mc.mean((2, 3)), "spatial": ms.mean(1),
                "channel_how": "channel gate, mean over pixels", "spatial_how": "spatial gate, mean over channels"}
