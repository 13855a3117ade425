"""ParNet attention: the RepVGG-SSE block of ParNet.

Goyal, Bochkovskiy, Deng, Koltun, "Non-deep Networks", arXiv:2110.07641 (2021; NeurIPS 2022).
Official code: imankgoyal/NonDeepNetworks (``RepVGGBlock`` with ``se_block=True``, ``SE1``).

Three parallel branches on the input, summed, then SiLU: bias-free 1x1 conv + BN; bias-free 3x3 conv + BN;
Skip-Squeeze-Excitation (SSE): ``x_hat = BN(x)`` (RepVGG's identity branch), then ``x_hat * sigmoid(W GAP(x_hat))``
with one bias-free 1x1 conv C -> C. Stride 1, C_in = C_out: shape-preserving, a full conv block (about 11 C^2
parameters) that changes the features even at init. The 1x1 and 3x3 branches could be folded into one 3x3 conv
(RepVGG); that is not done here. Equal to the official block (golden test ``ParNetAttention``); no forms.

Departures from the paper:
- The SSE squeeze is ``mean`` (same values as ``AdaptiveAvgPool2d(1)``).
- BatchNorms are ``BatchNorm2dSafe`` (batch 1 on a 1x1 map uses running statistics), with PyTorch's eps/momentum
  rather than ultralytics' 1e-3/0.03.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe
from models.registry.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "ParNetAttention",
    category="channel",
    paper="Non-deep Networks",
    arxiv="2110.07641",
    year=2021,
    placement="backbone_end",
    notes="EAP applies the SSE to x itself (no BN before the squeeze, none on the gated tensor) and keeps conv "
    "biases before BN; official: SSE on BN(x), bias-free 1x1 in the SSE and bias-free branch convs.",
)
class ParNetAttention(AttentionModule):
    """SiLU(BN(conv1x1(x)) + BN(conv3x3(x)) + BN(x) * sigmoid(conv1x1(GAP(BN(x)))))."""

    def __init__(self, c1: int):
        super().__init__()
        self.conv1x1 = nn.Conv2d(c1, c1, 1, bias=False)
        self.bn1x1 = BatchNorm2dSafe(c1)
        self.conv3x3 = nn.Conv2d(c1, c1, 3, padding=1, bias=False)
        self.bn3x3 = BatchNorm2dSafe(c1)
        self.bn_skip = BatchNorm2dSafe(c1)
        self.sse = nn.Conv2d(c1, c1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.bn_skip(x)
        skip = skip * torch.sigmoid(self.sse(skip.mean((2, 3), keepdim=True)))
        return F.silu(self.bn1x1(self.conv1x1(x)) + self.bn3x3(self.conv3x3(x)) + skip)
