"""ELA: Efficient Local Attention.

Xu, Wan, "ELA: Efficient Local Attention for Deep Convolutional Neural Networks", arXiv:2403.01123 (2024).
No official repository; the paper gives PyTorch pseudo-code.

Coordinate Attention's directional pooling with a 1-D conv and GroupNorm per direction: x_h = mean over W
(B, C, H), x_w = mean over H (B, C, W); one shared bias-free Conv1d (C -> C, kernel k, padding k // 2) and one shared
GroupNorm, applied to each; y = x * sigmoid(GN(conv(x_h)))[..., None] * sigmoid(GN(conv(x_w)))[..., None, :].
Variants (paper): ELA-T k=5, depthwise, GN 32; ELA-B k=7, depthwise, GN 16 (the default, as the pseudo-code); ELA-S
k=5, C/8 conv groups, GN 16; ELA-L k=7, C/8 conv groups, GN 16. ``conv_groups`` (None: depthwise) picks the grouping.
Depthwise: k C + 2C parameters.

Departures from the paper:
- GroupNorm groups (16) and a non-default conv group count clamp to divisors of C (GN(16) is impossible at C=24, 40,
  72); GN groups keep at least two channels each (a 1x1 map at batch 1 would leave GroupNorm one value, which it
  rejects even in eval mode). Noted in ``build_notes`` (C=24: 16 -> 12).
- Pooling is ``mean``.
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import divisor_at_most
from models.registry.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "ELA",
    category="hybrid",
    paper="ELA: Efficient Local Attention for Deep Convolutional Neural Networks",
    arxiv="2403.01123",
    year=2024,
    placement="backbone_end",
    notes=(
        "ODS ELA uses a dense kernel-1 Conv1d (C^2 params, no locality); some ports reshape a_w as (B,C,W,1). "
        "GN(16) fails at C=24: groups clamped to a divisor of C."
    ),
    renamed={"k_size": "kernel_size", "ksize": "kernel_size"},
)
class ELA(AttentionModule):
    """x * sigmoid(GN(conv1d_k(mean_W x))) * sigmoid(GN(conv1d_k(mean_H x))), ELA-B: k=7, depthwise, GN 16."""

    def __init__(self, c1: int, kernel_size: int = 7, num_groups: int = 16, conv_groups: int | None = None):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ELA kernel_size must be odd, got {kernel_size}")
        cg = self.clamp("conv groups", conv_groups, divisor_at_most(c1, conv_groups), f"C={c1}") if conv_groups else c1
        # at least 2 channels per group: a 1-channel group on a length-1 sequence (1x1 map, batch 1) has a single
        # value, which GroupNorm refuses even in eval mode
        ng = self.clamp("GroupNorm groups", num_groups, divisor_at_most(c1, min(num_groups, max(1, c1 // 2))),
                        f"C={c1}")
        self.conv = nn.Conv1d(c1, c1, kernel_size, padding=kernel_size // 2, groups=cg, bias=False)
        self.gn = nn.GroupNorm(ng, c1)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_h (B, C, H, 1), a_w (B, C, 1, W))."""
        a_h = torch.sigmoid(self.gn(self.conv(x.mean(3))))  # (B, C, H)
        a_w = torch.sigmoid(self.gn(self.conv(x.mean(2))))  # (B, C, W)
        return a_h.unsqueeze(3), a_w.unsqueeze(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_h, a_w = self.gates(x)
        return x * a_h * a_w

    def attention_maps(self, x: torch.Tensor) -> dict:
        a_h, a_w = self.gates(x)
        return self.gate_maps(a_h * a_w, "product of the H and W gates")
