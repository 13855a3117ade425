"""Coordinate Attention.

Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
arXiv:2103.02907. Official code: Andrew-Qibin/CoordAttention.

Pool along W and along H separately, concatenate the two directional descriptors, a shared 1x1
conv (C -> mip, mip = max(8, C // 32)) + BN + h-swish, split, one 1x1 conv per direction back to C,
sigmoid; the output is x * a_h * a_w.

Departures from the paper:
- The directional pools are ``x.mean(3)`` / ``x.mean(2)`` rather than ``AdaptiveAvgPool2d((None, 1))`` /
  ``((1, None))`` (those fail CUDA deterministic mode and dynamic ONNX export).
- mip follows the project's one hidden-width rule, ``max(C // reduction, min(min_channels, C))`` with
  ``min_channels=8``: the official max(8, C // 32) for every C >= 8 (below 8 channels the floor is C, not 8); a
  floor is recorded in ``build_notes``.
- The BN is ``BatchNorm2dSafe`` with the official (PyTorch default) eps 1e-5 and momentum 0.1. A plain
  ``nn.BatchNorm2d`` would be reset to eps 1e-3 / momentum 0.03 by ultralytics' ``initialize_weights`` when a YOLO
  model is built (it matches ``nn.BatchNorm2d`` exactly); the subclass keeps the official values. (Its batch-1
  fallback never triggers here: the BN sees H + W >= 2 values per channel.)

Equal to the official ``CoordAtt`` (golden test ``CoordAtt``); no forms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, hidden_width
from models.registry.protocol import AttentionModule
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

    def __init__(self, c1: int, reduction: int = 32, min_channels: int = 8):
        super().__init__()
        mip = hidden_width(self, c1, reduction, min_channels, "mip")
        self.conv1 = nn.Conv2d(c1, mip, 1)
        self.bn1 = BatchNorm2dSafe(mip)  # official eps/momentum, kept inside YOLO models
        self.conv_h = nn.Conv2d(mip, c1, 1)
        self.conv_w = nn.Conv2d(mip, c1, 1)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_h (B, C, H, 1), a_w (B, C, 1, W))."""
        h, w = x.shape[-2:]
        x_h = x.mean(3, keepdim=True)  # (B, C, H, 1)
        x_w = x.mean(2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        f = F.hardswish(self.bn1(self.conv1(torch.cat((x_h, x_w), 2))))  # functional: never in-place
        f_h, f_w = torch.split(f, [h, w], 2)
        return torch.sigmoid(self.conv_h(f_h)), torch.sigmoid(self.conv_w(f_w.transpose(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_h, a_w = self.gates(x)
        return x * a_h * a_w

    def attention_maps(self, x: torch.Tensor) -> dict:
        a_h, a_w = self.gates(x)
        return self.gate_maps(a_h * a_w, "product of the H and W gates")
