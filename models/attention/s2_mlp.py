"""S2Attention: the spatial-shift + split-attention unit of S2-MLPv2.

Yu, Li, Cai, Sun, Li, "S2-MLPv2: Improved Spatial-Shift MLP Architecture for Vision", arXiv:2108.01072
(2021). The spatial shift comes from S2-MLP (Yu et al., WACV 2022, arXiv:2106.07477). No official code;
the paper gives pseudo-code.

A channel MLP C -> 3C, split into X1, X2, X3; X1 gets spatial-shift-1 (four channel groups shifted by one pixel:
+1 and -1 along one axis, +1 and -1 along the other; the vacated border keeps its values, as the pseudo-code), X2
spatial-shift-2 (the axes the other way round), X3 none. Split attention (ResNeSt style): a = pooled(X1 + X2 + X3)
(B, C), a_hat = MLP2(GELU(MLP1(a))) (bias-free C -> C -> 3C), softmax over the 3 branches, O = sum_k a_hat_k X_k; a
channel MLP C -> C gives the output.

Forms (``form=``):

- ``"mean"`` (default): the descriptor is the *mean* over the positions, not the pseudo-code's sum (the sum makes the
  logits grow with H*W, behaves differently across image sizes and overflows fp16 on large maps). Shift-1 moves groups
  1/2 along W and 3/4 along H (the axis the pseudo-code names first, ``b, w, h, c = x.size()``); shift-2 the reverse.
- ``"paper"``: the pseudo-code: the sum over the three branches and all positions (in at least fp32), and the shift
  axes as the pseudo-code runs on PyTorch's channels-last (B, H, W, C) tensors, as every port runs it: shift-1 groups
  1/2 along H and 3/4 along W, so port weights load 1:1 (golden test ``S2Attention__paper``, copy semantics). The two
  axis conventions are the same function up to a relabelling of the channel groups.

Departures from the paper (both forms):
- The channel MLPs are 1x1 convs. The shifts are built out of place from slices (the pseudo-code's in-place slice
  assignments, run in PyTorch, smear row/column 0 along the axis for the "+1" shifts); any H, W >= 1.
- The token-mixing unit alone (as EAP's ``S2Attention``): S2-MLPv2's pre-LayerNorm, residual and channel-mixing MLP
  are not part of it. C must be a multiple of 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import at_least_fp32, check_form
from models.registry.protocol import AttentionModule
from models.registry import register_attention


def shift_one(x: torch.Tensor, dim: int, step: int) -> torch.Tensor:
    """Shift ``x`` by one pixel along ``dim`` (step +1 or -1); the vacated border keeps its values."""
    n = x.shape[dim]
    if step > 0:  # out[i] = x[i - 1], out[0] = x[0]
        return torch.cat((x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)), dim)
    return torch.cat((x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)), dim)  # out[i] = x[i + 1], out[-1] = x[-1]


def spatial_shift(x: torch.Tensor, first: int, second: int) -> torch.Tensor:
    """Four channel groups shifted +1/-1 along ``first`` then +1/-1 along ``second`` (out of place)."""
    g1, g2, g3, g4 = x.chunk(4, 1)
    return torch.cat(
        (shift_one(g1, first, 1), shift_one(g2, first, -1), shift_one(g3, second, 1), shift_one(g4, second, -1)), 1
    )


FORMS = ("mean", "paper")


@register_attention(
    "S2Attention",
    category="mlp",
    paper="S2-MLPv2: Improved Spatial-Shift MLP Architecture for Vision",
    arxiv="2108.01072",
    year=2021,
    placement="backbone_end",
    notes="EAP/ODS S2Attention build SplitAttention with channel=512 whatever C is (crash for C != 512) and shift "
    "in place, smearing row/column 0 for the +1 shifts. Here: out-of-place shifts, mean-pooled descriptor "
    "(form='paper': the pseudo-code's sum).",
    forms=FORMS,
)
class S2Attention(AttentionModule):
    """Expand to 3 branches, spatial-shift two of them, fuse with split attention, project back (~8C^2)."""

    def __init__(self, c1: int, form: str = "mean"):
        super().__init__()
        self.form = check_form("S2Attention", form, FORMS)
        if c1 % 4:
            raise ValueError(f"S2Attention shifts four channel groups: C must be a multiple of 4, got {c1}")
        self.mlp1 = nn.Conv2d(c1, 3 * c1, 1)
        self.attn_fc1 = nn.Conv2d(c1, c1, 1, bias=False)
        self.attn_fc2 = nn.Conv2d(c1, 3 * c1, 1, bias=False)
        self.mlp2 = nn.Conv2d(c1, c1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        x1, x2, x3 = self.mlp1(x).chunk(3, 1)
        if self.form == "paper":
            x1 = spatial_shift(x1, 2, 3)  # spatial-shift-1 on (B, H, W, C) as the ports run it: H first
            x2 = spatial_shift(x2, 3, 2)  # spatial-shift-2: W first
            a = at_least_fp32(x1 + x2 + x3).sum((2, 3), keepdim=True)  # (B, C, 1, 1), the pseudo-code's sum
            a = F.conv2d(F.gelu(F.conv2d(a, self.attn_fc1.weight.to(a.dtype))), self.attn_fc2.weight.to(a.dtype))
            a = a.reshape(b, 3, c, 1, 1).softmax(1).to(x.dtype)
        else:
            x1 = spatial_shift(x1, 3, 2)  # spatial-shift-1: W first, then H
            x2 = spatial_shift(x2, 2, 3)  # spatial-shift-2: H first, then W
            a = (x1 + x2 + x3).mean((2, 3), keepdim=True)  # (B, C, 1, 1)
            a = self.attn_fc2(F.gelu(self.attn_fc1(a))).reshape(b, 3, c, 1, 1).softmax(1)
        return self.mlp2(x1 * a[:, 0] + x2 * a[:, 1] + x3 * a[:, 2])
