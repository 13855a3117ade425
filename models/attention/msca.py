"""MSCA: Multi-Scale Convolutional Attention from SegNeXt.

Guo, Lu, Hou, Liu, Cheng, Hu, "SegNeXt: Rethinking Convolutional Attention Design for Semantic Segmentation",
NeurIPS 2022, arXiv:2209.08575. Official code: Visual-Attention-Network/SegNeXt (``mmseg/models/backbones/mscan.py``,
``AttentionModule`` inside ``SpatialAttention``).

``a = DW5x5(x)``; ``attn = 1x1(a + sum_k DW(k x 1)(DW(1 x k)(a)))`` over the strip kernels k = 7, 11, 21 (depthwise,
biased); ``MSCA(x) = attn * x`` (no sigmoid: the gate is unbounded), as in VAN's LKA.

In MSCAN the module always sits inside ``x + proj_2(MSCA(GELU(proj_1(x))))`` with 1x1 convs proj_1, proj_2
(``SpatialAttention`` in the official code). ``wrapped=True`` (the default) builds that residual form, which keeps the
unbounded gate on a residual path and supports :meth:`MSCA.init_identity`; ``wrapped=False`` gives the bare
``AttentionModule`` (what the blog/ODS ``SegNext_Attention`` ports place, outputs ``attn * x``).
``kernel_sizes`` sets the strip branches (odd sizes; default (7, 11, 21), the paper's).

Departures from the paper and the official code:
- The residual form omits the BatchNorm in front of it and the layer scale (1e-2) of the MSCAN block, which belong
  to the backbone block around it; the feed-forward sub-block is not included either.
- The official forward copies its input twice (``x.clone()`` for the gate and the shortcut); the values are the same
  without the copies.
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import VANResidual
from models.registry import register_attention


class MultiScaleConvAttention(nn.Module):
    """The bare MSCA: x * 1x1(a + sum_k strip_k(a)), a = DW5x5(x)."""

    def __init__(self, c1: int, kernel_sizes: tuple[int, ...] = (7, 11, 21)):
        super().__init__()
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"MSCA kernel_sizes must be odd sizes >= 1, got {kernel_sizes}")
        self.conv0 = nn.Conv2d(c1, c1, 5, padding=2, groups=c1)
        for i, k in enumerate(kernel_sizes):  # official names: conv{i}_1 (1 x k), conv{i}_2 (k x 1)
            setattr(self, f"conv{i}_1", nn.Conv2d(c1, c1, (1, k), padding=(0, k // 2), groups=c1))
            setattr(self, f"conv{i}_2", nn.Conv2d(c1, c1, (k, 1), padding=(k // 2, 0), groups=c1))
        self.strips = len(kernel_sizes)
        self.conv3 = nn.Conv2d(c1, c1, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv0(x)
        s = a
        for i in range(self.strips):
            s = s + getattr(self, f"conv{i}_2")(getattr(self, f"conv{i}_1")(a))
        return self.conv3(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x) * x


@register_attention(
    "MSCA",
    category="spatial",
    paper="SegNeXt: Rethinking Convolutional Attention Design for Semantic Segmentation",
    arxiv="2209.08575",
    year=2022,
    placement="backbone_end",
    notes="ODS/blog SegNext_Attention ports place the bare module (unbounded attn * x gate, no residual); default here "
    "is MSCAN's residual form x + proj_2(MSCA(GELU(proj_1(x)))) (wrapped=False for the bare module).",
)
class MSCA(VANResidual):
    """MSCA, by default in MSCAN's residual form x + proj_2(MSCA(GELU(proj_1(x)))); strips 7, 11, 21."""

    def __init__(self, c1: int, kernel_sizes: tuple[int, ...] = (7, 11, 21), wrapped: bool = True):
        super().__init__()
        self.kernel_sizes = tuple(kernel_sizes)
        self.msca = MultiScaleConvAttention(c1, self.kernel_sizes)
        self._wrap(c1, wrapped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.msca, x)

    def extra_repr(self) -> str:
        return f"kernel_sizes={self.kernel_sizes}, wrapped={self.wrapped}"
