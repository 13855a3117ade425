"""Shuffle Attention (SA-Net).

Zhang, Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks", ICASSP 2021,
arXiv:2102.00240. Official code: wofmanaf/SA-Net (``sa_layer``).

The channels are split into G groups and each group into two halves: the first gets a channel gate
``sigmoid(W_c GAP(x0) + b_c)``, the second a spatial gate ``sigmoid(W_s GN(x1) + b_s)`` (GroupNorm with one channel
per group). W and b are per-channel scalars shared by all groups, initialised to 0 and 1. The halves are concatenated,
the groups put back, and a channel shuffle with 2 groups mixes the halves. Equal to the official ``sa_layer`` (golden
test ``ShuffleAttention``); no forms.

Departures from the paper:
- G clamps to the largest divisor of C/2 that is <= 64 (the official default), so any even C works; noted in
  ``build_notes``. Odd C is rejected.
- The channel descriptor is ``x.mean((2, 3))`` (same values as ``AdaptiveAvgPool2d(1)``).
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import channel_shuffle, divisor_at_most
from models.registry.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "ShuffleAttention",
    category="hybrid",
    paper="SA-Net: Shuffle Attention for Deep Convolutional Neural Networks",
    arxiv="2102.00240",
    year=2021,
    placement="backbone_end",
    notes="EAP/ODS default to G=8 (official 64) and raise when C % 2G != 0; otherwise the same maths.",
)
class ShuffleAttention(AttentionModule):
    """Grouped channel gate (half) + spatial GN gate (half), then channel shuffle; 3C/G parameters."""

    def __init__(self, c1: int, groups: int = 64):
        super().__init__()
        if c1 % 2:
            raise ValueError(f"ShuffleAttention needs an even channel count, got {c1}")
        self.groups = self.clamp("groups", groups, divisor_at_most(c1 // 2, groups), f"C={c1}, needs C % 2G == 0")
        half = c1 // (2 * self.groups)
        self.cweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.gn = nn.GroupNorm(half, half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x0, x1 = x.reshape(b * self.groups, -1, h, w).chunk(2, 1)
        xc = x0 * torch.sigmoid(self.cweight * x0.mean((2, 3), keepdim=True) + self.cbias)
        xs = x1 * torch.sigmoid(self.sweight * self.gn(x1) + self.sbias)
        out = torch.cat((xc, xs), 1).reshape(b, c, h, w)
        return channel_shuffle(out, 2)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
