"""LSKA: Large Separable Kernel Attention.

Lau, Po, Rehman, "Large Separable Kernel Attention: Rethinking the Large Kernel Attention Design in CNN",
Expert Systems with Applications 2024, arXiv:2309.01439. Official code: StevenLauHKHK/Large-Separable-Kernel-Attention.

VAN's large-kernel attention with every 2-D depthwise kernel split into 1xk and kx1 depthwise convs:
``attn = 1x1( DW kx1 dil d( DW 1xk dil d( DW k0x1( DW 1xk0(x) ) ) ) )``, ``y = x * attn`` (an unbounded gate). The
effective kernel size (``kernel_size``; official ``k_size``, an accepted old name) maps to (k0, k, d): 7 -> (3, 3, 2),
11 -> (3, 5, 2), 23 -> (5, 7, 3), 35 -> (5, 11, 3), 41 -> (5, 13, 3), 53 -> (5, 17, 3); default 7 (the official
training script and VAN's constructor). In VAN-LSKA it always sits in ``x + proj_2(LSKA(GELU(proj_1(x))))``:
``wrapped=True`` (default) builds that residual form, which supports ``init_identity``; ``wrapped=False`` the bare
LSKA. Equal to the official code (golden tests ``LSKA__k7``, ``LSKA__k53``).

Departures from the paper:
- The residual form omits the BatchNorm before it, the layer scale (1e-2) and the feed-forward sub-block of the VAN
  Block, which belong to the backbone block around it.
- An unsupported kernel_size raises ValueError at construction (the official code fails later with AttributeError).
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import VANResidual
from models.registry import register_attention

# effective kernel -> (local kernel k0, dilated kernel k, dilation d)
LSKA_KERNELS = {7: (3, 3, 2), 11: (3, 5, 2), 23: (5, 7, 3), 35: (5, 11, 3), 41: (5, 13, 3), 53: (5, 17, 3)}


class SeparableLKA(nn.Module):
    """The bare LSKA: x * 1x1(DW kx1 dil(DW 1xk dil(DW k0x1(DW 1xk0(x)))))."""

    def __init__(self, c1: int, kernel_size: int = 7):
        super().__init__()
        if kernel_size not in LSKA_KERNELS:
            raise ValueError(f"LSKA kernel_size must be one of {sorted(LSKA_KERNELS)}, got {kernel_size}")
        k0, k, d = LSKA_KERNELS[kernel_size]
        p0, p = (k0 - 1) // 2, (k - 1) * d // 2
        self.conv0h = nn.Conv2d(c1, c1, (1, k0), padding=(0, p0), groups=c1)
        self.conv0v = nn.Conv2d(c1, c1, (k0, 1), padding=(p0, 0), groups=c1)
        self.conv_spatial_h = nn.Conv2d(c1, c1, (1, k), padding=(0, p), dilation=d, groups=c1)
        self.conv_spatial_v = nn.Conv2d(c1, c1, (k, 1), padding=(p, 0), dilation=d, groups=c1)
        self.conv1 = nn.Conv2d(c1, c1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.conv_spatial_v(self.conv_spatial_h(self.conv0v(self.conv0h(x))))
        return x * self.conv1(attn)


@register_attention(
    "LSKA",
    category="spatial",
    paper="Large Separable Kernel Attention: Rethinking the Large Kernel Attention Design in CNN",
    arxiv="2309.01439",
    year=2024,
    placement="backbone_end",
    notes="ODS/blog ports use the bare LSKA (unbounded x * attn gate, no residual) and raise AttributeError on an "
    "unsupported k_size; default here is VAN-LSKA's residual form (wrapped=False for the bare module).",
    renamed={"k_size": "kernel_size", "ksize": "kernel_size"},
)
class LSKA(VANResidual):
    """LSKA, by default in VAN's residual form x + proj_2(LSKA(GELU(proj_1(x)))); kernel_size = 7."""

    def __init__(self, c1: int, kernel_size: int = 7, wrapped: bool = True):
        super().__init__()
        self.kernel_size = kernel_size
        self.lska = SeparableLKA(c1, kernel_size)
        self._wrap(c1, wrapped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.lska, x)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, wrapped={self.wrapped}"
