"""BAM: Bottleneck Attention Module.

Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018, arXiv:1807.06514.
Official code: Jongchan/attention-module (MODELS/bam.py).

Two parallel branches, summed and squashed, applied as a residual gate:

- Channel M_c: GAP -> FC(C -> C/r) -> ReLU -> FC(C/r -> C), shape (B, C, 1, 1).
- Spatial M_s: 1x1 (C -> C/r) -> BN -> ReLU -> [3x3 conv, dilation d, padding d -> BN -> ReLU] x 2
  -> 1x1 (C/r -> 1), shape (B, 1, H, W). Padding equals the dilation, so H and W are kept.
- M = sigmoid(M_c + M_s) broadcast to (B, C, H, W); y = x + x * M = x * (1 + M).

Defaults: r = 16, d = 4, two dilated convs, one hidden FC layer (the paper's and the official defaults).

Departures from the paper:
- No BatchNorm on the pooled (B, C/r) vector of the channel branch (``BatchNorm1d`` raises at batch 1 in train
  mode: the YOLO stride probe). The FC layers keep their biases, so at inference the paper's BN folds exactly
  into the first FC; only the batch-statistics normalisation during training is gone.
- The spatial-branch BatchNorms are ``BatchNorm2dSafe`` (a 1x1 map at batch 1 in train mode falls back to
  running statistics); they keep PyTorch's default eps/momentum as in the official code.
- The hidden width is ``max(C // r, min(min_channels, C))``, default floor 8 (``min_channels=1``: exactly C // r);
  a floor is recorded in ``build_notes``.
- The FC layers are 1x1 convolutions on (B, C, 1, 1); the squeeze is ``x.mean((2, 3))`` (the official code uses
  ``avg_pool2d`` with a kernel of size H, which is wrong for non-square maps).
- Fusion: the paper combines the branches by a sum (its ablation prefers it); the official code multiplies them,
  ``sigmoid(M_c * M_s)``. The default is the paper's ``fusion="sum"``; ``fusion="mul"`` reproduces the official code.
- EAP's BAMBlock uses 3 hidden FCs and 3 dilated convs with dilation 2 but padding 1, which shrinks the map and
  fails on any size but about 7x7; not reproduced.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, hidden_width
from models.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "BAM",
    category="hybrid",
    paper="BAM: Bottleneck Attention Module",
    arxiv="1807.06514",
    year=2018,
    placement="backbone_end",
    notes=(
        "EAP's BAM uses dilation 2 with padding 1 (map shrinks; crashes off 7x7) and BatchNorm1d on the pooled "
        "vector (crashes at batch 1). Official code fuses sigmoid(Mc*Ms); paper (default here) sigmoid(Mc+Ms)."
    ),
)
class BAM(AttentionModule):
    """x * (1 + sigmoid(M_c(x) + M_s(x))), r=16, dilation 4, two dilated convs."""

    def __init__(
        self, c1: int, reduction: int = 16, dilation: int = 4, num_dilated: int = 2, fusion: str = "sum",
        min_channels: int = 8,
    ):
        super().__init__()
        if fusion not in ("sum", "mul"):
            raise ValueError(f"BAM fusion must be 'sum' (paper) or 'mul' (official code), got {fusion!r}")
        self.fusion = fusion
        hidden = hidden_width(self, c1, reduction, min_channels)
        # channel branch
        self.fc1 = nn.Conv2d(c1, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, c1, 1)
        # spatial branch
        self.reduce = nn.Conv2d(c1, hidden, 1)
        self.reduce_bn = BatchNorm2dSafe(hidden)
        self.dilated = nn.ModuleList(
            nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation) for _ in range(num_dilated)
        )
        self.dilated_bn = nn.ModuleList(BatchNorm2dSafe(hidden) for _ in range(num_dilated))
        self.final = nn.Conv2d(hidden, 1, 1)

    def channel_att(self, x: torch.Tensor) -> torch.Tensor:
        """M_c, shape (B, C, 1, 1)."""
        return self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))

    def spatial_att(self, x: torch.Tensor) -> torch.Tensor:
        """M_s, shape (B, 1, H, W)."""
        s = F.relu(self.reduce_bn(self.reduce(x)))
        for conv, bn in zip(self.dilated, self.dilated_bn):
            s = F.relu(bn(conv(s)))
        return self.final(s)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """M(F) = sigmoid(M_c + M_s), (B, C, H, W) (the product with ``fusion="mul"``)."""
        mc, ms = self.channel_att(x), self.spatial_att(x)
        return torch.sigmoid(mc + ms if self.fusion == "sum" else mc * ms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x * self.gate(x)

    def attention_maps(self, x: torch.Tensor) -> dict:
        return self.gate_maps(self.gate(x), "gate M = sigmoid(M_c + M_s)" if self.fusion == "sum" else
                              "gate M = sigmoid(M_c * M_s)")
