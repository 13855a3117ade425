"""LSK: Large Selective Kernel attention (LSKNet).

Li, Hou, Zheng, Cheng, Yang, Li, "Large Selective Kernel Network for Remote Sensing Object
Detection", ICCV 2023, arXiv:2303.09030. Official code: zcablii/LSKNet (``LSKblock``, ``Attention``).

The LSK module (``LSKblock``): U1 = DW 5x5 (x), U2 = DW 7x7 dilation 3 (U1) (receptive fields 5 and 23), each
projected to C/2 by its own 1x1 conv; [mean; max] over the concatenated C channels, a 7x7 conv (2 -> 2) and a sigmoid
give one spatial selection mask per kernel; A = 1x1 (C/2 -> C)(U1' S1 + U2' S2); the output is x * A, an unbounded
gate (no sigmoid). In LSKNet it always sits in the sub-block ``x + proj_2(LSK(GELU(proj_1(x))))`` (1x1 convs;
``Attention``): ``wrapped=True`` (default) builds that residual form, which supports ``init_identity``;
``wrapped=False`` the bare module. Equal to the official code (golden test ``LSKBlock``).

Departures from the paper:
- The residual form omits the BatchNorm before it, the layer scale (1e-2) and the feed-forward sub-block of the
  LSKNet Block, which belong to the backbone block around it.
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import VANResidual
from models.registry import register_attention


class LSKSelect(nn.Module):
    """The bare LSK module: x * conv(U1' * S1 + U2' * S2) (unbounded gate)."""

    def __init__(self, c1: int):
        super().__init__()
        ch = max(c1 // 2, 1)
        self.conv0 = nn.Conv2d(c1, c1, 5, padding=2, groups=c1)
        self.conv_spatial = nn.Conv2d(c1, c1, 7, padding=9, dilation=3, groups=c1)
        self.conv1 = nn.Conv2d(c1, ch, 1)
        self.conv2 = nn.Conv2d(c1, ch, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv = nn.Conv2d(ch, c1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u1 = self.conv0(x)
        u2 = self.conv_spatial(u1)
        u1, u2 = self.conv1(u1), self.conv2(u2)
        both = torch.cat((u1, u2), 1)
        s = torch.sigmoid(self.conv_squeeze(torch.cat((both.mean(1, keepdim=True), both.amax(1, keepdim=True)), 1)))
        return x * self.conv(u1 * s[:, 0:1] + u2 * s[:, 1:2])


@register_attention(
    "LSKBlock",
    category="spatial",
    paper="Large Selective Kernel Network for Remote Sensing Object Detection",
    arxiv="2303.09030",
    year=2023,
    placement="backbone_end",
    notes="ODS/blog ports use the bare LSKblock (unbounded x * attn gate, no residual); default here is "
    "LSKNet's residual form x + proj_2(LSK(GELU(proj_1(x)))) (wrapped=False for the bare module).",
)
class LSKBlock(VANResidual):
    """LSK module, by default in LSKNet's residual sub-block form (~3.5C^2; bare ~1.5C^2)."""

    def __init__(self, c1: int, wrapped: bool = True):
        super().__init__()
        self.lsk = LSKSelect(c1)
        self._wrap(c1, wrapped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.lsk, x)

    def extra_repr(self) -> str:
        return f"wrapped={self.wrapped}"
