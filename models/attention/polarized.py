"""Polarized Self-Attention, parallel (PSA_p) and sequential (PSA_s) layouts.

H. Liu et al., "Polarized Self-Attention: Towards High-quality Pixel-wise Regression",
arXiv:2107.00782 (2021; Neurocomputing 2022). Official code: DeLightCMU/PSA.

Implemented as the paper's equations (Section 3):

- channel-only branch: ``A_ch = sigmoid(LN(W_z(W_v(x) . softmax_N(W_q(x)))))`` with W_q: C -> 1,
  W_v: C -> C/2, W_z: C/2 -> C (1x1 convs), the product a softmax-weighted sum over the N = H*W positions
  and LN a LayerNorm over the C channels; ``Z_ch = A_ch * x`` (a (B, C, 1, 1) gate).
- spatial-only branch: ``A_sp = sigmoid(softmax_C(GAP(W_q(x))) . W_v(x))`` with W_q, W_v: C -> C/2, the
  product a softmax-weighted sum over the C/2 channels at each position; ``Z_sp = A_sp * x`` (a (B, 1, H, W) gate).
- parallel: ``Z_ch + Z_sp``; sequential: ``Z_sp(Z_ch(x))``.

Departures from the paper:
- The 1x1 convs have no bias, as in the official code (the paper does not say).
- The softmax-weighted sums are done in fp32 (on large maps the N-way softmax weights are fp16 subnormals).
- The official code differs from the paper and is *not* followed here: its PSA_p has no LayerNorm and
  puts the spatial softmax over N after the product; its PSA_s uses a C/2 -> C/8 -> LN -> ReLU -> C
  bottleneck for W_z and softmaxes W_v(x) over N.
- Global pooling is ``mean`` rather than ``AdaptiveAvgPool2d`` (same values).
"""

from __future__ import annotations

import torch
from torch import nn

from models.protocol import AttentionModule
from models.registry import register_attention


class _PolarizedBase(AttentionModule):
    """The two polarized filters; subclasses compose them in parallel or in sequence."""

    def __init__(self, c1: int):
        super().__init__()
        if c1 % 2:
            raise ValueError(f"Polarized self-attention needs an even channel count, got {c1}")
        ci = c1 // 2
        self.ch_wq = nn.Conv2d(c1, 1, 1, bias=False)
        self.ch_wv = nn.Conv2d(c1, ci, 1, bias=False)
        self.ch_wz = nn.Conv2d(ci, c1, 1, bias=False)
        self.ch_norm = nn.LayerNorm(c1)
        self.sp_wq = nn.Conv2d(c1, ci, 1, bias=False)
        self.sp_wv = nn.Conv2d(c1, ci, 1, bias=False)

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """A_ch, shape (B, C, 1, 1)."""
        q = self.ch_wq(x).flatten(2).float().softmax(-1)  # (B, 1, N), softmax over positions
        v = self.ch_wv(x).flatten(2).float()  # (B, C/2, N)
        z = (v * q).sum(-1, keepdim=True).unsqueeze(-1).to(x.dtype)  # (B, C/2, 1, 1)
        z = self.ch_norm(self.ch_wz(z).flatten(1))  # LayerNorm over the C channels
        return torch.sigmoid(z)[..., None, None]

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """A_sp, shape (B, 1, H, W)."""
        q = self.sp_wq(x).mean((2, 3), keepdim=True).float().softmax(1)  # (B, C/2, 1, 1), softmax over channels
        v = self.sp_wv(x).float()  # (B, C/2, H, W)
        return torch.sigmoid((v * q).sum(1, keepdim=True)).to(x.dtype)


_PAPER = "Polarized Self-Attention: Towards High-quality Pixel-wise Regression"
_NOTES = (
    "Paper form (LayerNorm in the channel branch, channel softmax before the product in the spatial branch); "
    "the official PSA_p/PSA_s deviate from the paper. EAP follows the paper but keeps conv biases."
)


@register_attention(
    "PolarizedSA_P",
    category="self-attention",
    paper=_PAPER,
    arxiv="2107.00782",
    year=2021,
    placement="backbone_end",
    notes=_NOTES,
)
class PolarizedSA_P(_PolarizedBase):
    """Parallel layout: x * A_ch(x) + x * A_sp(x) (the output can reach twice the input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_gate(x) + x * self.spatial_gate(x)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """A_ch (B, C) and A_sp (B, H, W), both computed from x."""
        return {"channel": self.channel_gate(x).flatten(1), "spatial": self.spatial_gate(x)[:, 0],
                "channel_how": "channel gate A_ch", "spatial_how": "spatial gate A_sp"}


@register_attention(
    "PolarizedSA_S",
    category="self-attention",
    paper=_PAPER,
    arxiv="2107.00782",
    year=2021,
    placement="backbone_end",
    notes=_NOTES,
)
class PolarizedSA_S(_PolarizedBase):
    """Sequential layout: z = x * A_ch(x); z * A_sp(z)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x * self.channel_gate(x)
        return z * self.spatial_gate(z)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """A_ch(x) (B, C) and A_sp(z) (B, H, W), the gates the forward applies."""
        a = self.channel_gate(x)
        return {"channel": a.flatten(1), "spatial": self.spatial_gate(x * a)[:, 0],
                "channel_how": "channel gate A_ch", "spatial_how": "spatial gate A_sp (of x * A_ch)"}
