"""CPCA: Channel Prior Convolutional Attention.

Huang et al., "Channel prior convolutional attention for medical image segmentation",
Computers in Biology and Medicine 2024, arXiv:2306.05196. Official code: Cuthbert-Huang/CPCANet
(``RepBlock`` with ``ChannelAttention`` in ``network_architecture/CPCANet.py``).

1. x = GELU(P(x)), P a biased 1x1 conv C -> C.
2. Channel prior: ca = sigmoid(MLP(GAP x)) + sigmoid(MLP(GMP x)), one biased MLP 1x1 C -> C/4 -> ReLU -> 1x1 C/4 -> C;
   ca in (0, 2); x = x * ca.
3. Spatial: x0 = DW5x5(x); x1 = DW7x1(DW1x7(x0)); x2 = DW11x1(DW1x11(x0)); x3 = DW21x1(DW1x21(x0)) (biased
   depthwise); s = P(x0 + x1 + x2 + x3).
4. out = P(s * x).

One 1x1 conv P serves steps 1, 3 and 4, as in the official code. The spatial map has no sigmoid and the block no
residual: a full block, not a gate, not identity-like at init. Equal to the official ``RepBlock`` (golden test
``CPCA``); no forms.

Departures from the paper:
- Pooling is ``mean`` / ``amax`` instead of adaptive pooling. Activations are functional (no in-place ReLU).
- Channel-prior hidden width ``max(C // 4, min(min_channels, C))``, default floor 8 (official C // 4:
  ``min_channels=1``); they differ only for C < 32, and a floor is noted in ``build_notes``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import hidden_width
from models.registry.protocol import AttentionModule
from models.registry import register_attention


def _dw(c: int, k: tuple[int, int]) -> nn.Conv2d:
    return nn.Conv2d(c, c, k, padding=(k[0] // 2, k[1] // 2), groups=c, bias=True)


@register_attention(
    "CPCA",
    category="hybrid",
    paper="Channel prior convolutional attention for medical image segmentation",
    arxiv="2306.05196",
    year=2024,
    placement="backbone_end",
    notes=(
        "Same structure as the official RepBlock (shared 1x1 conv used three times, no sigmoid on the spatial map); "
        "ports use adaptive pools (non-deterministic on CUDA)."
    ),
)
class CPCA(AttentionModule):
    """P(P(strip-conv pyramid(x')) * x'), x' = channel-prior(GELU(P(x))), reduce 4."""

    def __init__(self, c1: int, reduction: int = 4, min_channels: int = 8):
        super().__init__()
        hidden = hidden_width(self, c1, reduction, min_channels, "channel-prior hidden width")
        self.fc1 = nn.Conv2d(c1, hidden, 1, bias=True)
        self.fc2 = nn.Conv2d(hidden, c1, 1, bias=True)
        self.dw5 = _dw(c1, (5, 5))
        self.strips = nn.ModuleList(nn.Sequential(_dw(c1, (1, k)), _dw(c1, (k, 1))) for k in (7, 11, 21))
        self.conv = nn.Conv2d(c1, c1, 1, bias=True)  # P: shared by the input projection, spatial map and output

    def channel_prior(self, x: torch.Tensor) -> torch.Tensor:
        """sigmoid(MLP(avg)) + sigmoid(MLP(max)), shape (B, C, 1, 1), values in (0, 2)."""

        def mlp(v: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.fc2(F.relu(self.fc1(v))))

        return mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv(x))
        x = x * self.channel_prior(x)
        x0 = self.dw5(x)
        s = x0
        for strip in self.strips:
            s = s + strip(x0)
        return self.conv(self.conv(s) * x)
