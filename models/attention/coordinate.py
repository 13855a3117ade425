"""Coordinate Attention.

Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
arXiv:2103.02907. Official code: Andrew-Qibin/CoordAttention.

Pool along W and along H separately, concatenate the two directional descriptors, a shared 1x1
conv (C -> mip, mip = max(8, C // 32)) + BN + h-swish, split, one 1x1 conv per direction back to C,
sigmoid; the output is x * a_h * a_w.

Departures from the paper: the directional pools are ``x.mean(3)`` / ``x.mean(2)`` rather than
``AdaptiveAvgPool2d((None, 1))`` / ``((1, None))`` (those fail CUDA deterministic mode and dynamic ONNX export).
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import HSwish
from models.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "CoordAtt",
    category="hybrid",
    paper="Coordinate Attention for Efficient Mobile Network Design",
    arxiv="2103.02907",
    year=2021,
    placement="backbone_end",
    config_name="ca",
    notes="Blog ports match the official layers but use adaptive pools (non-deterministic on CUDA, no dynamic ONNX).",
)
class CoordAtt(AttentionModule):
    """x * sigmoid(conv_h(f_h)) * sigmoid(conv_w(f_w)), reduction 32, mip >= 8."""

    def __init__(self, c1: int, reduction: int = 32):
        super().__init__()
        mip = max(8, c1 // reduction)
        self.conv1 = nn.Conv2d(c1, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = HSwish()
        self.conv_h = nn.Conv2d(mip, c1, 1)
        self.conv_w = nn.Conv2d(mip, c1, 1)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_h (B, C, H, 1), a_w (B, C, 1, W))."""
        h, w = x.shape[-2:]
        x_h = x.mean(3, keepdim=True)  # (B, C, H, 1)
        x_w = x.mean(2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        f = self.act(self.bn1(self.conv1(torch.cat((x_h, x_w), 2))))
        f_h, f_w = torch.split(f, [h, w], 2)
        return torch.sigmoid(self.conv_h(f_h)), torch.sigmoid(self.conv_w(f_w.transpose(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_h, a_w = self.gates(x)
        return x * a_h * a_w
