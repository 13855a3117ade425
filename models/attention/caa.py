"""CAA: Context Anchor Attention from PKINet.

Cai et al., "Poly Kernel Inception Network for Remote Sensing Detection", CVPR 2024,
arXiv:2403.06258. Official code: NUST-Machine-Intelligence-Laboratory/PKINet (``CAA``).

A long-range spatial gate from strip convolutions:
``a = sigmoid(ConvBNSiLU_1x1( DW (v x 1)( DW (1 x h)( ConvBNSiLU_1x1( AvgPool7x7(x) ) ) ) ))``, h = v = 11; the average
pool has stride 1 and padding 3 (zeros counted), the 1x1 convs are bias-free with BN (eps 1e-3, momentum 0.03) and
SiLU, the depthwise strip convs biased. Equal to the official ``CAA`` (golden test ``CAA``); no forms.

Departures from the paper:
- Standalone ``y = x * a`` (as in the ODS port): in PKINet the map multiplies the output of the block's poly-kernel
  inception branch (``x_inception * a``, plus an identity), which is not part of a module inserted into YOLO.
- BatchNorms are ``BatchNorm2dSafe`` with PKINet's eps/momentum (batch 1 on a 1x1 map uses running statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe
from models.registry.protocol import GatedAttention
from models.registry import register_attention


class ConvBNSiLU(nn.Module):
    """1x1 conv (no bias) + BN (eps 1e-3, momentum 0.03) + SiLU, like PKINet's ConvModule."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 1, bias=False)
        self.bn = BatchNorm2dSafe(c2, eps=1e-3, momentum=0.03)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.bn(self.conv(x)))


@register_attention(
    "CAA",
    category="spatial",
    paper="Poly Kernel Inception Network for Remote Sensing Detection",
    arxiv="2403.06258",
    year=2024,
    placement="backbone_end",
    notes="Standalone x * CAA(x) as in ODS; in PKINet the map gates the inception branch output instead.",
)
class CAA(GatedAttention):
    """x * sigmoid(conv2(v_conv(h_conv(conv1(avgpool7(x)))))), strip kernels 1x11 and 11x1."""

    gate_name = "context anchor gate"

    def __init__(self, c1: int, h_kernel_size: int = 11, v_kernel_size: int = 11):
        super().__init__()
        if h_kernel_size % 2 == 0 or v_kernel_size % 2 == 0:
            raise ValueError(f"CAA strip kernels must be odd, got {h_kernel_size}, {v_kernel_size}")
        self.conv1 = ConvBNSiLU(c1, c1)
        self.h_conv = nn.Conv2d(c1, c1, (1, h_kernel_size), padding=(0, h_kernel_size // 2), groups=c1)
        self.v_conv = nn.Conv2d(c1, c1, (v_kernel_size, 1), padding=(v_kernel_size // 2, 0), groups=c1)
        self.conv2 = ConvBNSiLU(c1, c1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The context anchor map in (0, 1), shape (B, C, H, W)."""
        a = self.conv1(F.avg_pool2d(x, 7, 1, 3))
        return torch.sigmoid(self.conv2(self.v_conv(self.h_conv(a))))
