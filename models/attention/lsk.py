"""LSK: Large Selective Kernel attention (LSKNet).

Li, Hou, Zheng, Cheng, Yang, Li, "Large Selective Kernel Network for Remote Sensing Object
Detection", ICCV 2023, arXiv:2303.09030. Official code: zcablii/LSKNet (``LSKblock``, ``Attention``).

The LSK module (``LSKblock`` in the official code):

1. Large-kernel decomposition: U1 = DW 5x5 (x), U2 = DW 7x7 dilation 3 (U1): receptive fields 5 and 23.
2. Each is projected to C/2 channels by its own 1x1 conv; [mean; max] over the concatenated C channels
   gives a 2-channel descriptor, and a 7x7 conv (2 -> 2) + sigmoid gives one spatial selection mask
   per kernel.
3. A = 1x1 (C/2 -> C)(U1' * S1 + U2' * S2); the output is x * A. A is not squashed (no sigmoid): the gate
   is unbounded.

In LSKNet the module always sits inside the "large kernel selection" sub-block:
``x + proj_2(LSK(GELU(proj_1(x))))`` with 1x1 convs proj_1, proj_2 (``Attention`` in the official code).
``wrapped=True`` (the default) builds that residual form, which keeps the unbounded gate on a residual
path and supports :meth:`LSKBlock.init_identity`; ``wrapped=False`` gives the bare module.

Departures from the paper:
- The residual sub-block omits the BatchNorm in front of it and the layer scale (1e-2) of the LSKNet Block,
  which belong to the backbone block around it; the feed-forward sub-block is not included either.
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
