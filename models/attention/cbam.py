"""CBAM: Convolutional Block Attention Module.

Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018, arXiv:1807.06521.
Official code: Jongchan/attention-module.

Channel attention: a shared MLP (C -> C/r -> C, with biases as in the official Linear layers) on the
average- and max-pooled descriptors, summed, sigmoid. Spatial attention: channel-wise mean and max
of the refined map, 7x7 conv (2 -> 1, no bias) + BatchNorm, sigmoid. No residual inside the block
(the paper's residual belongs to the host ResBlock).

Forms (``form=``):

- ``"paper"`` (default): the spatial descriptor is ``[mean_c; max_c]`` as the paper writes it,
  ``[AvgPool(F); MaxPool(F)]``; hidden width ``max(C // r, min(min_channels, C))``, ``min_channels`` default 8
  (``min_channels=1``: exactly C // r). The default because earlier versions built it (existing configs keep their
  parameter counts and weights).
- ``"official"``: the official code exactly (golden test ``CBAM``): its ``ChannelPool`` stacks ``[max_c; mean_c]``,
  so official spatial-conv weights load 1:1, and the hidden width is exactly C // r (``min_channels`` is not
  accepted; 0 is an error naming the layer).

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

from models.attention._common import BatchNorm2dSafe, check_form, form_hidden_width
from models.registry.protocol import AttentionModule
from models.registry import register_attention


class ChannelGate(nn.Module):
    """sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))), shape (B, C, 1, 1)."""

    def __init__(self, c1: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(c1, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, c1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))


class SpatialGate(nn.Module):
    """sigmoid(BN(conv_kxk([mean_c(x); max_c(x)]))), shape (B, 1, H, W); ``max_first``: [max_c; mean_c] (official)."""

    def __init__(self, kernel_size: int = 7, max_first: bool = False):
        super().__init__()
        self.max_first = max_first
        if kernel_size % 2 == 0:
            raise ValueError(f"CBAM kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = BatchNorm2dSafe(1, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = (x.mean(1, keepdim=True), x.amax(1, keepdim=True))
        s = torch.cat(pooled[::-1] if self.max_first else pooled, 1)
        return torch.sigmoid(self.bn(self.conv(s)))


FORMS = ("paper", "official")


@register_attention(
    "CBAM",
    category="hybrid",
    paper="CBAM: Convolutional Block Attention Module",
    arxiv="1807.06521",
    year=2018,
    placement="backbone_end",
    notes="EAP's CBAMBlock uses a 49x49 spatial kernel and adds a residual the paper does not have.",
    renamed={"k_size": "kernel_size", "ksize": "kernel_size"},
    forms=FORMS,
)
class CBAM(AttentionModule):
    """Channel gate, then spatial gate, applied sequentially (r=16, 7x7)."""

    def __init__(self, c1: int, reduction: float = 16, kernel_size: int = 7, min_channels: int | None = None,
                 form: str = "paper"):
        super().__init__()
        self.form = check_form("CBAM", form, FORMS)
        self.channel = ChannelGate(c1, form_hidden_width(self, "CBAM", c1, reduction, min_channels, form, 8))
        self.spatial = SpatialGate(kernel_size, max_first=form == "official")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        return x * self.spatial(x)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The two gates the forward applies: channel (B, C) and spatial (B, H, W)."""
        mc = self.channel(x)
        return {"channel": mc.flatten(1), "spatial": self.spatial(x * mc)[:, 0],
                "channel_how": "channel gate", "spatial_how": "spatial gate (of the channel-refined map)"}
