"""Squeeze-and-Excitation and Effective SE.

SE: Hu, Shen, Albanie, Sun, Wu, "Squeeze-and-Excitation Networks", CVPR 2018, arXiv:1709.01507.

Departures from the paper:
- The two fully connected layers are 1x1 convolutions on the (B, C, 1, 1) descriptor (same maths).
- The hidden width is ``max(C // reduction, min(min_channels, C))`` (default floor 8) so narrow layers never get a
  zero-width bottleneck; ``min_channels=1`` gives the paper's C // r exactly. A floor is recorded in ``build_notes``.
- The squeeze is ``x.mean((2, 3))`` instead of an adaptive pooling layer (CUDA-deterministic, ONNX-dynamic).
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import hidden_width
from models.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "SE",
    category="channel",
    paper="Squeeze-and-Excitation Networks",
    arxiv="1709.01507",
    year=2018,
    placement="backbone_end",
    notes="Same maths in most ports; EAP defines an init_weights() it never calls.",
)
class SE(AttentionModule):
    """x * sigmoid(W2 relu(W1 GAP(x))), reduction r=16."""

    def __init__(self, c1: int, reduction: float = 16, min_channels: int = 8):
        super().__init__()
        hidden = hidden_width(self, c1, reduction, min_channels)
        self.fc1 = nn.Conv2d(c1, hidden, 1, bias=True)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, c1, 1, bias=True)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights in (0, 1), shape (B, C, 1, 1)."""
        return torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)

    def attention_maps(self, x: torch.Tensor) -> dict:
        return self.gate_maps(self.gate(x), "channel gate")
