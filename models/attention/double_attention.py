"""A^2-Nets: the double attention block.

Chen, Kalantidis, Li, Yan, Feng, "A^2-Nets: Double Attention Networks", NeurIPS 2018, arXiv:1810.11579.
No official code from the authors (the paper gives the computation graph).

Three 1x1 convs: A (C -> c_m) is the feature bank; B (C -> c_n) gives c_n attention maps, each softmaxed **over the
N = H*W positions**; V (C -> c_n) gives one attention vector per position, softmaxed **over the c_n maps**. Gather:
G = A B^T (B, c_m, c_n); distribute: Z = G V (B, c_m, N); a 1x1 conv c_m -> C reconstructs the width: y = x + conv(Z).

Departures from the paper:
- c_m = c_n = max(C // reduction, min(min_channels, C)), reduction 4, floor 8 (the paper fixes no ratio for arbitrary
  C); a floor is noted in ``build_notes``. ``min_channels=1``: exactly C // reduction; explicit ``c_m``/``c_n`` are used
  as given.
- Both softmaxes in fp32 (gather/distribute are convex combinations and stay in the input dtype).
- The reconstruct conv keeps PyTorch's default init; ``init_identity()`` zeroes it (the paper defines no identity
  start).
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import at_least_fp32, hidden_width
from models.registry.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "DoubleAttention",
    category="self-attention",
    paper="A^2-Nets: Double Attention Networks",
    arxiv="1810.11579",
    year=2018,
    placement="backbone_end",
    dense=False,
    notes="EAP/ODS softmax without dim= normalises over the batch (all ones at batch 1) and drop the residual.",
)
class DoubleAttention(AttentionModule):
    """y = x + conv(A softmax_N(B)^T softmax_cn(V)), c_m = c_n = C/4 (>= 8)."""

    def __init__(self, c1: int, c_m: int | None = None, c_n: int | None = None, reduction: int = 4,
                 min_channels: int = 8):
        super().__init__()
        c_m = int(c_m) if c_m else hidden_width(self, c1, reduction, min_channels, "c_m")
        c_n = int(c_n) if c_n else c_m
        self.conv_a = nn.Conv2d(c1, c_m, 1)
        self.conv_b = nn.Conv2d(c1, c_n, 1)
        self.conv_v = nn.Conv2d(c1, c_n, 1)
        self.proj = nn.Conv2d(c_m, c1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        feats = self.conv_a(x).flatten(2)  # (B, c_m, N)
        maps = at_least_fp32(self.conv_b(x).flatten(2)).softmax(-1).to(feats.dtype)  # (B, c_n, N): softmax over N
        vecs = at_least_fp32(self.conv_v(x).flatten(2)).softmax(1).to(feats.dtype)  # (B, c_n, N): softmax over c_n
        gathered = torch.bmm(feats, maps.transpose(1, 2))  # (B, c_m, c_n)
        z = torch.bmm(gathered, vecs)  # (B, c_m, N)
        return x + self.proj(z.reshape(b, -1, h, w))

    def init_identity(self) -> bool:
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.bias.zero_()
        return True
