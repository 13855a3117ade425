"""SCSA: Spatial and Channel Synergistic Attention.

Si, Xu, Zhu, Zhang, Dong, Chen, Li, "SCSA: Exploring the Synergistic Effects Between Spatial and Channel
Attention", Neurocomputing 2025, arXiv:2407.05128. Official code: HZAI-ZJNU/SCSA
(``mmpretrain/models/attentions/SCSA.py``).

Two stages in series:

- SMSA (shareable multi-semantic spatial attention): x_h = mean_W(x) (B, C, H) and x_w = mean_H(x) (B, C, W); the
  channels are split into 4 equal sub-features, each filtered by its own depthwise 1-D conv (kernels 3, 5, 7, 9),
  the same four convs for both directions; GroupNorm(4 groups, C) per direction, sigmoid:
  ``x_s = x * a_h(H) * a_w(W)``.
- PCSA (progressive channel-wise self-attention): y = GroupNorm(1, C)(AvgPool_{7x7, stride 7}(x_s)); per-channel
  q, k, v = depthwise 1x1 convs of y (no bias); single-head (default) attention between channels, tokens = the
  pooled pixels: ``A = softmax(q k^T / sqrt(C/heads))`` (C/heads x C/heads per head), ``a_c = sigmoid(mean_N(A v))``;
  ``y = x_s * a_c``.

Defaults as in the official ImageNet configs: 1 head, window 7, kernels (3, 5, 7, 9), no q/k/v bias.
``window_size=-1`` pools globally (the official option). C must be divisible by 4; ``num_heads`` is clamped to a
divisor of C (a build note).

Forms (``form=``), which differ only in the 7x7 pooling of PCSA:

- ``"full"`` (default): windows of 7 with stride 7 over the whole map; the last row/column of windows is partial
  where H or W is not a multiple of 7 (the mean of the pixels it holds). Equal to the official code where H and W are
  multiples of 7; every pixel counts in the channel attention. The default because a detector's
  maps are rarely multiples of 7: the official pooling reads 14 x 14 of a 20 x 20 P5 map and 14 x 7 of a 20 x 12 one.
- ``"official"``: the official code's ``AvgPool2d(7, 7)`` (floor mode: the remainder rows/columns are left out of
  the channel attention; golden test ``SCSA``, 11 x 7 maps). Where a side is shorter than 7 the official code raises;
  here that side is one window of its whole length (as in ``"full"``).

Departures from the paper and the official code:
- The official gate options ``gate_layer='softmax'``, ``down_sample_mode`` ``'max_pool'``/``'recombination'`` and
  attention dropout are not offered (the released configs use sigmoid, avg_pool and no dropout).
- The mean over the pooled tokens is taken before multiplying by A (``A mean_N(v)``; the same value by linearity).
  The channel attention is computed in at least fp32 (it is (C/heads)^2 per head and sample).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import at_least_fp32, check_form, divisor_at_most
from models.registry.protocol import AttentionModule
from models.registry import register_attention

FORMS = ("full", "official")


@register_attention(
    "SCSA",
    category="hybrid",
    paper="SCSA: Exploring the Synergistic Effects Between Spatial and Channel Attention",
    arxiv="2407.05128",
    year=2025,
    placement="backbone_end",
    notes="Official/blog ports pool with AvgPool2d(7, 7): maps under 7 pixels raise and the remainder rows/columns "
    "are left out of the channel attention; default here: partial border windows, every pixel counted "
    "(form='official': the floor pooling).",
    renamed={"head_num": "num_heads"},
    forms=FORMS,
)
class SCSA(AttentionModule):
    """x * a_h * a_w (multi-kernel 1-D spatial gates) * a_c (channel self-attention on 7x7-pooled tokens)."""

    def __init__(self, c1: int, num_heads: int = 1, window_size: int = 7,
                 group_kernel_sizes: tuple[int, ...] = (3, 5, 7, 9), qkv_bias: bool = False, form: str = "full"):
        super().__init__()
        self.form = check_form("SCSA", form, FORMS)
        if c1 % 4:
            raise ValueError(f"SCSA splits the channels into 4 sub-features: C={c1} is not divisible by 4")
        if len(group_kernel_sizes) != 4 or any(k % 2 == 0 for k in group_kernel_sizes):
            raise ValueError(f"SCSA group_kernel_sizes must be 4 odd kernel sizes, got {group_kernel_sizes}")
        if window_size != -1 and window_size < 1:
            raise ValueError(f"SCSA window_size must be >= 1 (or -1: global pooling), got {window_size}")
        self.num_heads = self.clamp("num_heads", num_heads, divisor_at_most(c1, num_heads), f"C={c1}")
        self.window_size = window_size
        self.group_kernel_sizes = tuple(group_kernel_sizes)
        g = c1 // 4
        self.local_dwc, self.global_dwc_s, self.global_dwc_m, self.global_dwc_l = (
            nn.Conv1d(g, g, k, padding=k // 2, groups=g) for k in group_kernel_sizes)
        self.norm_h = nn.GroupNorm(4, c1)
        self.norm_w = nn.GroupNorm(4, c1)
        self.norm = nn.GroupNorm(1, c1)
        self.q = nn.Conv2d(c1, c1, 1, groups=c1, bias=qkv_bias)
        self.k = nn.Conv2d(c1, c1, 1, groups=c1, bias=qkv_bias)
        self.v = nn.Conv2d(c1, c1, 1, groups=c1, bias=qkv_bias)
        self.scale = (c1 // self.num_heads) ** -0.5

    def _multi_kernel(self, t: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
        """(B, C, L) -> sigmoid(GN(the four depthwise 1-D convs on the four channel quarters))."""
        parts = t.chunk(4, 1)
        convs = (self.local_dwc, self.global_dwc_s, self.global_dwc_m, self.global_dwc_l)
        return torch.sigmoid(norm(torch.cat([conv(p) for conv, p in zip(convs, parts)], 1)))

    def spatial_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a_h (B, C, H, 1) and a_w (B, C, 1, W)."""
        return (self._multi_kernel(x.mean(3), self.norm_h).unsqueeze(3),
                self._multi_kernel(x.mean(2), self.norm_w).unsqueeze(2))

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        s = self.window_size
        if s == -1:
            return x.mean((2, 3), keepdim=True)
        if self.form == "official":  # floor mode: drop the remainder, except on sides shorter than one window
            h, w = x.shape[-2:]
            x = x[..., : h - (h % s) * (h >= s), : w - (w % s) * (w >= s)]
        return F.avg_pool2d(x, s, s, ceil_mode=True, count_include_pad=False)

    def channel_gate(self, xs: torch.Tensor) -> torch.Tensor:
        """a_c (B, C, 1, 1) from the spatially gated map."""
        y = self.norm(self._pool(xs))
        b, c = y.shape[:2]
        heads = self.num_heads
        q, k, v = (at_least_fp32(m(y)).reshape(b, heads, c // heads, -1) for m in (self.q, self.k, self.v))
        attn = torch.softmax(q @ k.transpose(-2, -1) * self.scale, -1)
        a = attn @ v.mean(-1, keepdim=True)  # = mean over the pooled tokens of attn @ v
        return torch.sigmoid(a).reshape(b, c, 1, 1).to(xs.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_h, a_w = self.spatial_gates(x)
        xs = x * a_h * a_w
        return xs * self.channel_gate(xs)

    def attention_maps(self, x: torch.Tensor) -> dict:
        a_h, a_w = self.spatial_gates(x)
        return {"spatial": (a_h * a_w).mean(1), "spatial_how": "a_h * a_w, mean over channels",
                "channel": self.channel_gate(x * a_h * a_w).flatten(1), "channel_how": "channel self-attention gate"}

    def extra_repr(self) -> str:
        return (f"num_heads={self.num_heads}, window_size={self.window_size}, "
                f"group_kernel_sizes={self.group_kernel_sizes}, form={self.form!r}")
