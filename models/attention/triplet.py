"""Triplet Attention.

Misra, Nalamada, Arasanipalai, Hou, "Rotate to Attend: Convolutional Triplet Attention Module",
WACV 2021, arXiv:2010.03045. Official code: landskape-ai/triplet-attention.

Three branches capture the (C, W), (H, C) and (H, W) interactions. Each rotates the tensor so that one axis plays the
"channels", Z-pools it ([max; mean] over that axis), runs a bias-free 7x7 conv (2 -> 1) + BatchNorm (eps 1e-5,
momentum 0.01), and gates the rotated tensor with its sigmoid; the three are rotated back and averaged. Equal to the
official module (golden test ``TripletAttention``); no forms.

Departures from the paper:
- No tensor is rotated: each branch Z-pools ``x`` along the axis the paper rotates into the channel position and only
  the small pooled map is transposed into the paper's layout (the same conv inputs, results and state dict, without
  three permute + contiguous copies). The output is ``x * (a_cw + a_hc + a_hw) / 3``.
- BatchNorms are ``BatchNorm2dSafe``: the official momentum 0.01 survives ultralytics' ``initialize_weights`` (which
  would set 0.03), and batch 1 on a 1x1 map uses running statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import BatchNorm2dSafe
from models.registry.protocol import GatedAttention
from models.registry import register_attention


def z_pool(x: torch.Tensor, dim: int) -> torch.Tensor:
    """[max; mean] over ``dim``, stacked as 2 channels at dim 1."""
    return torch.stack((x.amax(dim), x.mean(dim)), 1)


class ZPoolGate(nn.Module):
    """sigmoid(BN(conv_kxk(2 -> 1)(pooled))): the attention map of one triplet branch."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = BatchNorm2dSafe(1, eps=1e-5, momentum=0.01)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.bn(self.conv(pooled)))


@register_attention(
    "TripletAttention",
    category="cross-dimension",
    paper="Rotate to Attend: Convolutional Triplet Attention Module",
    arxiv="2010.03045",
    year=2021,
    placement="backbone_end",
    notes="EAP matches the official code; ultralytics' initialize_weights would reset its BN momentum to 0.03.",
    renamed={"k_size": "kernel_size", "ksize": "kernel_size"},
)
class TripletAttention(GatedAttention):
    """Average of the C-W, H-C and H-W Z-pool gates (the last one dropped with ``no_spatial``); 300 params."""

    gate_name = "mean of the branch gates"

    def __init__(self, c1: int, kernel_size: int = 7, no_spatial: bool = False):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"TripletAttention kernel_size must be odd, got {kernel_size}")
        self.cw = ZPoolGate(kernel_size)  # H rotated into the channel axis: map over (C, W)
        self.hc = ZPoolGate(kernel_size)  # W rotated into the channel axis: map over (H, C)
        self.hw = None if no_spatial else ZPoolGate(kernel_size)  # plain spatial gate over (H, W)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the branch gates, (B, C, H, W)."""
        a_cw = self.cw(z_pool(x, 2)).transpose(1, 2)  # (B, 1, C, W) -> (B, C, 1, W)
        a_hc = self.hc(z_pool(x, 3).transpose(2, 3)).permute(0, 3, 2, 1)  # (B, 1, H, C) -> (B, C, H, 1)
        if self.hw is None:
            return (a_cw + a_hc) / 2
        a_hw = self.hw(z_pool(x, 1))  # (B, 1, H, W)
        return (a_cw + a_hc + a_hw) / 3
