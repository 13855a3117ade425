"""CoT: the Contextual Transformer block.

Li, Yao, Pan, Mei, "Contextual Transformer Networks for Visual Recognition", TPAMI 2022, arXiv:2107.12292.
Official code: JDAI-CV/CoTNet (``CotLayer``, with a CuPy ``LocalConvolution`` kernel).

Static context K1 = ReLU(BN(bias-free grouped k x k conv of x, groups 4)). Local weights W = GN(1x1(ReLU(BN(1x1([x;
K1]): 2C -> C/2))): C/2 -> k k C/sp), sp = 8 "share planes", GN with one group per weight channel. Values V = BN(1x1
of x). Dynamic context K2 = SiLU(BN(sum over the zero-padded k x k neighbourhood of V weighted by W)), channel c of V
using weight channel c mod (C/sp). Fusion (split attention, radix 2): s = GAP(K1 + K2), a = 1x1(ReLU(norm(1x1(s):
C -> max(C/2, 32)))): -> 2C, softmax over the two contexts per channel; y = a_0 K2 + a_1 K1. No residual (CoT
replaces a 3x3 conv).

Forms (``form=``), which differ in the fusion MLP's norm on the pooled (B, C', 1, 1) vector:

- ``"groupnorm"`` (default): GroupNorm with one group (per sample: batch-1 training works as any batch; the same 2C'
  affine parameters, no running statistics).
- ``"official"``: the official ``BatchNorm2d(C')`` (golden test ``CoT``), as ``BatchNorm2dSafe`` (running statistics
  at batch 1, where the official code raises).

Departures from the paper (both forms):
- The CuPy local convolution is k*k shifted slices of the zero-padded V (identical; ONNX, any device).
- BatchNorms are ``BatchNorm2dSafe`` (PyTorch defaults). Group counts clamp to divisors of C (``build_notes``).
- Names: the embedding ratio (official ``factor``, accepted) is ``embed_reduction``; ``reduction`` is the fusion
  MLP's (official ``reduction_factor``), width max(2C / reduction, min_channels), the official floor 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, check_form, divisor_at_most, local_neighbourhood
from models.registry.protocol import AttentionModule
from models.registry import register_attention


FORMS = ("groupnorm", "official")


@register_attention(
    "CoT",
    category="local self-attention",
    paper="Contextual Transformer Networks for Visual Recognition",
    arxiv="2107.12292",
    year=2022,
    placement="backbone_end",
    dense=False,
    notes="EAP's CoTAttention is a different algorithm (global softmax gate, no local aggregation, no fusion; "
    "fails unless C % 4 == 0); "
    "this follows the official CotLayer (form='official'); the default replaces its pooled-vector BN by GroupNorm(1).",
    renamed={"factor": "embed_reduction", "k_size": "kernel_size", "ksize": "kernel_size"},
    forms=FORMS,
)
class CoT(AttentionModule):
    """Contextual Transformer block (k = 3, share planes 8, key groups 4, radix 2)."""

    def __init__(self, c1: int, kernel_size: int = 3, groups: int = 4, share_planes: int = 8, embed_reduction: int = 2,
                 reduction: int = 4, min_channels: int = 32, form: str = "groupnorm"):
        super().__init__()
        self.form = check_form("CoT", form, FORMS)
        if kernel_size % 2 == 0:
            raise ValueError(f"CoT kernel_size must be odd, got {kernel_size}")
        self.k = kernel_size
        g = self.clamp("key groups", groups, divisor_at_most(c1, groups), f"C={c1}")
        sp = self.clamp("share planes", share_planes, divisor_at_most(c1, share_planes), f"C={c1}")
        self.wc = c1 // sp  # weight channels
        self.sp = sp
        mid = max(c1 // embed_reduction, 1)
        attn_chs = max(c1 * 2 // reduction, min_channels)  # official: max(C * radix // reduction_factor, 32)
        kk = kernel_size * kernel_size

        self.key_conv = nn.Conv2d(c1, c1, kernel_size, padding=kernel_size // 2, groups=g, bias=False)
        self.key_bn = BatchNorm2dSafe(c1)
        self.embed_conv1 = nn.Conv2d(2 * c1, mid, 1, bias=False)
        self.embed_bn = BatchNorm2dSafe(mid)
        self.embed_conv2 = nn.Conv2d(mid, kk * self.wc, 1)
        self.embed_gn = nn.GroupNorm(self.wc, kk * self.wc)
        self.value_conv = nn.Conv2d(c1, c1, 1, bias=False)
        self.value_bn = BatchNorm2dSafe(c1)
        self.bn = BatchNorm2dSafe(c1)
        self.se_conv1 = nn.Conv2d(c1, attn_chs, 1)
        self.se_norm = BatchNorm2dSafe(attn_chs) if form == "official" else nn.GroupNorm(1, attn_chs)
        self.se_conv2 = nn.Conv2d(attn_chs, 2 * c1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        kk = self.k * self.k
        k1 = F.relu(self.key_bn(self.key_conv(x)))  # static context
        wgt = F.relu(self.embed_bn(self.embed_conv1(torch.cat((x, k1), 1))))
        wgt = self.embed_gn(self.embed_conv2(wgt)).reshape(b, 1, self.wc, kk, h, w)
        v = self.value_bn(self.value_conv(x))
        nb = local_neighbourhood(v, self.k).reshape(b, self.sp, self.wc, kk, h, w)  # channel = s * wc + j
        k2 = (nb * wgt).sum(3).reshape(b, c, h, w)
        k2 = F.silu(self.bn(k2))  # dynamic context
        s = (k1 + k2).mean((2, 3), keepdim=True)
        a = self.se_conv2(F.relu(self.se_norm(self.se_conv1(s)))).reshape(b, c, 2).softmax(-1)
        return k2 * a[..., 0, None, None] + k1 * a[..., 1, None, None]
