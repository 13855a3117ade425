"""CBAM: Convolutional Block Attention Module.

Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018, arXiv:1807.06521.
Official code: Jongchan/attention-module.

Channel attention: a shared MLP (C -> C/r -> C, with biases as in the official Linear layers) on the
average- and max-pooled descriptors, summed, sigmoid. Spatial attention: channel-wise mean and max
of the refined map, 7x7 conv (2 -> 1, no bias) + BatchNorm, sigmoid. No residual inside the block
(the paper's residual belongs to the host ResBlock).

Departures from the paper:
- The MLP is written as 1x1 convolutions; pooling uses ``mean``/``amax`` (deterministic on CUDA, ONNX-dynamic).
- Hidden width is ``max(C // r, min(min_channels, C))``, default floor 8 (``min_channels=1``: exactly C // r); a
  floor is recorded in ``build_notes``.
- The spatial BatchNorm keeps the official momentum 0.01; on a single-value batch (batch 1, 1x1 map,
  train mode) it normalises with its running statistics instead of raising.
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import BatchNorm2dSafe, hidden_width
from models.protocol import AttentionModule
from models.registry import register_attention


class ChannelGate(nn.Module):
    """sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))), shape (B, C, 1, 1)."""

    def __init__(self, c1: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(c1, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, c1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))


class SpatialGate(nn.Module):
    """sigmoid(BN(conv_kxk([mean_c(x); max_c(x)]))), shape (B, 1, H, W)."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"CBAM kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = BatchNorm2dSafe(1, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.cat((x.mean(1, keepdim=True), x.amax(1, keepdim=True)), 1)
        return torch.sigmoid(self.bn(self.conv(s)))


@register_attention(
    "CBAM",
    category="hybrid",
    paper="CBAM: Convolutional Block Attention Module",
    arxiv="1807.06521",
    year=2018,
    placement="backbone_end",
    notes="EAP's CBAMBlock uses a 49x49 spatial kernel and adds a residual the paper does not have.",
    renamed={"k_size": "kernel_size", "ksize": "kernel_size"},
)
class CBAM(AttentionModule):
    """Channel gate, then spatial gate, applied sequentially (r=16, 7x7)."""

    def __init__(self, c1: int, reduction: float = 16, kernel_size: int = 7, min_channels: int = 8):
        super().__init__()
        self.channel = ChannelGate(c1, hidden_width(self, c1, reduction, min_channels))
        self.spatial = SpatialGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        return x * self.spatial(x)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The two gates the forward applies: channel (B, C) and spatial (B, H, W)."""
        mc = self.channel(x)
        return {"channel": mc.flatten(1), "spatial": self.spatial(x * mc)[:, 0],
                "channel_how": "channel gate", "spatial_how": "spatial gate (of the channel-refined map)"}
