"""Polarized Self-Attention, parallel (PSA_p) and sequential (PSA_s) layouts.

H. Liu et al., "Polarized Self-Attention: Towards High-quality Pixel-wise Regression",
arXiv:2107.00782 (2021; Neurocomputing 2022). Official code: DeLightCMU/PSA.

The paper's equations (Section 3), 1x1 convs W: channel-only ``A_ch = sigmoid(LN(W_z(W_v(x) . softmax_N(W_q(x)))))``
(W_q: C -> 1, W_v: C -> C/2, W_z: C/2 -> C; the product a softmax-weighted sum over the N = H*W positions, LN over the
C channels), ``Z_ch = A_ch * x``; spatial-only ``A_sp = sigmoid(softmax_C(GAP(W_q(x))) . W_v(x))`` (W_q, W_v:
C -> C/2; a softmax-weighted sum over the C/2 channels per position), ``Z_sp = A_sp * x``. Parallel: Z_ch + Z_sp;
sequential: Z_sp(Z_ch(x)).

Forms (``form=``):

- ``"paper"`` (default): the equations above.
- ``"official"``: the official ``PSA_p`` / ``PSA_s`` (golden tests ``PolarizedSA_P``, ``PolarizedSA_S``). PSA_p: no
  LayerNorm, and the spatial softmax over the N positions *after* the product,
  ``A_sp = sigmoid(softmax_N(GAP(W_q(x)) . W_v(x)))``. PSA_s: W_z is a bottleneck
  ``1x1 (C/2 -> C/8, bias) -> LayerNorm([C/8, 1, 1]) -> ReLU -> 1x1 (C/8 -> C, bias)``, and the spatial gate of
  z = x * A_ch is ``sigmoid(GAP(W_q(z)) . softmax_N(W_v(z)))`` (no softmax on the query). W_q and W_v get the
  official Kaiming-normal (fan_in) init.

Departures from the paper:
- The 1x1 convs have no bias, as in the official code (the paper does not say).
- The softmax-weighted sums run in at least fp32 in every form (on large maps the N-way weights are fp16
  subnormals); fp32/fp64 inputs keep their dtype. Global pooling is ``mean``.
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import at_least_fp32, check_form
from models.registry.protocol import AttentionModule
from models.registry import register_attention

FORMS = ("paper", "official")


class _PolarizedBase(AttentionModule):
    """The two polarized filters; subclasses compose them in parallel or in sequence."""

    sequential = False

    def __init__(self, c1: int, form: str = "paper"):
        super().__init__()
        self.form = check_form(type(self).__name__, form, FORMS)
        if c1 % 2:
            raise ValueError(f"Polarized self-attention needs an even channel count, got {c1}")
        ci = c1 // 2
        official = form == "official"
        self.ch_wq = nn.Conv2d(c1, 1, 1, bias=False)
        self.ch_wv = nn.Conv2d(c1, ci, 1, bias=False)
        if official and self.sequential:  # PSA_s: conv_up = 1x1 -> LayerNorm -> ReLU -> 1x1 bottleneck (ratio 4)
            cu = ci // 4
            if cu < 1:
                raise ValueError(f"PolarizedSA_S form='official' needs C >= 8 (bottleneck C/2 // 4), got C={c1}")
            self.ch_up1 = nn.Conv2d(ci, cu, 1)
            self.ch_up_norm = nn.LayerNorm([cu, 1, 1])
            self.ch_up2 = nn.Conv2d(cu, c1, 1)
        else:
            self.ch_wz = nn.Conv2d(ci, c1, 1, bias=False)
        if not official:
            self.ch_norm = nn.LayerNorm(c1)
        self.sp_wq = nn.Conv2d(c1, ci, 1, bias=False)
        self.sp_wv = nn.Conv2d(c1, ci, 1, bias=False)
        if official:  # official reset_parameters: kaiming_init(mode='fan_in') of the four query/value convs
            for conv in (self.ch_wq, self.ch_wv, self.sp_wq, self.sp_wv):
                nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """A_ch, shape (B, C, 1, 1)."""
        q = at_least_fp32(self.ch_wq(x).flatten(2)).softmax(-1)  # (B, 1, N), softmax over positions
        v = at_least_fp32(self.ch_wv(x).flatten(2))  # (B, C/2, N)
        z = (v * q).sum(-1, keepdim=True).unsqueeze(-1).to(x.dtype)  # (B, C/2, 1, 1)
        if self.form == "official":
            if self.sequential:
                z = self.ch_up2(torch.relu(self.ch_up_norm(self.ch_up1(z))))
            else:
                z = self.ch_wz(z)
            return torch.sigmoid(z)
        z = self.ch_norm(self.ch_wz(z).flatten(1))  # LayerNorm over the C channels
        return torch.sigmoid(z)[..., None, None]

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """A_sp, shape (B, 1, H, W)."""
        q = at_least_fp32(self.sp_wq(x).mean((2, 3), keepdim=True))  # (B, C/2, 1, 1)
        v = at_least_fp32(self.sp_wv(x))  # (B, C/2, H, W)
        if self.form != "official":  # paper: softmax over the channels, then the product
            return torch.sigmoid((v * q.softmax(1)).sum(1, keepdim=True)).to(x.dtype)
        if self.sequential:  # PSA_s: each value channel softmaxed over the positions, then the product
            v = v.flatten(2).softmax(-1).reshape(v.shape)
            return torch.sigmoid((v * q).sum(1, keepdim=True)).to(x.dtype)
        s = (v * q).sum(1, keepdim=True)  # PSA_p: the product, then a softmax over the positions
        return torch.sigmoid(s.flatten(2).softmax(-1).reshape(s.shape)).to(x.dtype)


_PAPER = "Polarized Self-Attention: Towards High-quality Pixel-wise Regression"
_NOTES = (
    "Default: paper form (LayerNorm in the channel branch, channel softmax before the product in the spatial branch); "
    "the official PSA_p/PSA_s deviate from the paper (form='official'). EAP follows the paper but keeps conv biases."
)


@register_attention(
    "PolarizedSA_P",
    category="self-attention",
    paper=_PAPER,
    arxiv="2107.00782",
    year=2021,
    placement="backbone_end",
    notes=_NOTES,
    forms=FORMS,
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
    forms=FORMS,
)
class PolarizedSA_S(_PolarizedBase):
    """Sequential layout: z = x * A_ch(x); z * A_sp(z)."""

    sequential = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x * self.channel_gate(x)
        return z * self.spatial_gate(z)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """A_ch(x) (B, C) and A_sp(z) (B, H, W), the gates the forward applies."""
        a = self.channel_gate(x)
        return {"channel": a.flatten(1), "spatial": self.spatial_gate(x * a)[:, 0],
                "channel_how": "channel gate A_ch", "spatial_how": "spatial gate A_sp (of x * A_ch)"}
