"""CAFM: the Convolution and Attention Fusion Module of HCANet.

Hu, Gao, Zhou, Dong, Du, "Hybrid Convolutional and Attention Network for Hyperspectral Image Denoising",
IEEE GRSL 2024, arXiv:2403.10067. Official code: summitgao/HCANet (``HCANet.py``, class ``Attention``).

Shared projection: ``qkv = DW3x3(1x1(x))`` (C -> 3C, no biases), split into heads of d = C / heads channels.

- Global branch (channel, "transposed" attention as in Restormer): q, k L2-normalised over the pixels,
  ``A = softmax(q k^T * t_head)`` (d x d per head, learnable temperature t), ``g = 1x1(A v)``.
- Local branch (as in ACmix): for every pixel and every channel index within a head, a 1x1 "fc" maps the 3 * heads
  values (q, k, v of all heads) to 9 features; a grouped 3x3 conv (d groups, 9 -> heads channels each, with bias)
  gives ``l`` (C channels).
- ``CAFM(x) = g + l``.

As a YOLO layer the module is, by default (``wrapped=True``), HCANet's CAMixing block attention half:
``y = x + CAFM(LayerNorm(x))`` (LayerNorm over the channels, eps 1e-5); :meth:`CAFM.init_identity` zeroes the last
layer of both branches. ``wrapped=False`` gives the bare module (its output replaces x, as in blog ports).
``num_heads`` default 8 (HCANet's deepest level; C = 48, 96, 192, 384 with 1, 2, 4, 8 heads), clamped to a divisor
of C (a build note).

Forms (``form=``), which differ only in how the local branch groups the q/k/v values:

- ``"paper"`` (default): per pixel, the 3C values of qkv regrouped as (3 * heads) x d, the local branch a
  convolution of each pixel's own channels ("channel shuffle, then conv"; the official forward computes this
  pixel-wise view, ``qkv.permute(0, 2, 3, 1)``, and leaves it unused). Checked against the official file with that
  view used (golden test ``CAFM__paper``, reference "port").
- ``"official"``: the released forward, which reshapes qkv's (C, H, W) memory directly into (H*W, 3 * heads, d):
  the "pixel" n of the fc is the n-th run of 3C consecutive values of the channel-major buffer, i.e. values of a few
  channels at 3C neighbouring positions, so the local branch mixes positions along rows rather than channels and
  depends on H*W (golden test ``CAFM``, wrapped form).

Departures from the paper and the official code:
- The official 3x3x3 ``Conv3d`` kernels act on a depth-1 volume (``x.unsqueeze(2)``, padding 1): only the middle
  depth slice ever meets data, the other two only zero padding. Here they are 3x3 ``Conv2d`` kernels (that slice):
  the same outputs, 2/3 fewer parameters in those two layers (the official 1x1x1 ``Conv3d`` are 1x1 ``Conv2d``).
- The local branch's fc is a 1x1 ``Conv2d`` over the (3 * heads) axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import check_form, divisor_at_most
from models.registry.protocol import AttentionModule
from models.registry import register_attention

FORMS = ("paper", "official")


@register_attention(
    "CAFM",
    category="conv + channel self-attention",
    paper="Hybrid Convolutional and Attention Network for Hyperspectral Image Denoising",
    arxiv="2403.10067",
    year=2024,
    placement="backbone_end",
    notes="Official code and blog copies reshape qkv's channel-major buffer straight into (pixels, groups, d), so the "
    "'local' branch mixes neighbouring positions of a few channels (form='official'), and place the bare module; "
    "default: the pixel-wise grouping the paper describes, in HCANet's pre-norm residual x + CAFM(LN(x)). "
    "(ODS also has an unrelated CAFM, from DSMT.)",
    renamed={"heads": "num_heads", "head": "num_heads"},
    forms=FORMS,
)
class CAFM(AttentionModule):
    """x + [1x1(softmax(t q^ k^T) v) + GroupedConv3x3(fc(q, k, v))] on LayerNorm(x); global channel attention
    plus a local convolution branch."""

    def __init__(self, c1: int, num_heads: int = 8, bias: bool = False, wrapped: bool = True, form: str = "paper"):
        super().__init__()
        self.form = check_form("CAFM", form, FORMS)
        self.num_heads = nh = self.clamp("num_heads", num_heads, divisor_at_most(c1, num_heads), f"C={c1}")
        self.wrapped = wrapped
        d = c1 // nh
        self.norm = nn.LayerNorm(c1) if wrapped else None
        self.temperature = nn.Parameter(torch.ones(nh, 1, 1))
        self.qkv = nn.Conv2d(c1, 3 * c1, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(3 * c1, 3 * c1, 3, padding=1, groups=3 * c1, bias=bias)
        self.project_out = nn.Conv2d(c1, c1, 1, bias=bias)
        self.fc = nn.Conv2d(3 * nh, 9, 1)
        self.dep_conv = nn.Conv2d(9 * d, c1, 3, padding=1, groups=d)

    def _local(self, qkv: torch.Tensor) -> torch.Tensor:
        b, c3, h, w = qkv.shape
        g, d = 3 * self.num_heads, c3 // (3 * self.num_heads)
        if self.form == "paper":  # (B, 3*heads, d, N): each pixel's own q/k/v channels
            f = self.fc(qkv.reshape(b, g, d, h * w)).transpose(1, 2)  # (B, d, 9, N)
        else:  # the channel-major buffer read as (N, 3*heads, d)
            f = self.fc(qkv.reshape(b, h * w, g, d).transpose(1, 2)).permute(0, 3, 1, 2)  # (B, d, 9, N)
        return self.dep_conv(f.reshape(b, 9 * d, h, w))

    def _global(self, qkv: torch.Tensor) -> torch.Tensor:
        b, c3, h, w = qkv.shape
        q, k, v = qkv.reshape(b, 3, self.num_heads, c3 // (3 * self.num_heads), h * w).unbind(1)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = torch.softmax(q @ k.transpose(-2, -1) * self.temperature, -1)
        return self.project_out((attn @ v).reshape(b, c3 // 3, h, w))

    def cafm(self, x: torch.Tensor) -> torch.Tensor:
        """The bare module: global (channel attention) + local (convolution) branch."""
        qkv = self.qkv_dwconv(self.qkv(x))
        return self._global(qkv) + self._local(qkv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.wrapped:
            return self.cafm(x)
        return x + self.cafm(self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))

    def init_identity(self) -> bool:
        """Zero the last layer of both branches so the residual form computes exactly x (the bare module cannot)."""
        if not self.wrapped:
            return False
        for m in (self.project_out, self.dep_conv):
            nn.init.zeros_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        return True

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, wrapped={self.wrapped}, form={self.form!r}"
