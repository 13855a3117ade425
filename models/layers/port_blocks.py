"""Blocks that forks and blog posts place under attention names, built as their code builds them.

- :class:`ConvCBAM`: a convolution block followed by CBAM, ``CBAM(bubbliiiing form)(Hardswish(BN(conv(x))))``: the
  ``Conv_CBAM`` of several YOLOv5/YOLOv7 forks, and the ``CBAM(c1, c2, k, s)`` of forks that list their CBAM with the
  convolutions (``[-1, 1, CBAM, [1024, 3]]`` there is a 3x3 convolution to 1024 x width channels, then CBAM).
  Keys ``conv``, ``bn``, ``cbam.*`` (golden test ``ConvCBAM__ktwu77``).
- :class:`ResidualConv`: ``x + LeakyReLU(0.1)(BN(conv_kxk(x)))`` (with ``e``: ``x + conv1x1(that)``; stride 1,
  c2 = c1), the code a seed article publishes as ``CCN`` (its text: criss-cross attention); it is a residual
  convolution, not attention (golden test ``ResidualConv__ccn_article``). Criss-cross attention here is ``CrissCross``.

Both take YOLOv5's convolution arguments ``(c1, c2, k, s, ...)``: a row writes the output width first (scaled by
``width_multiple``), as for ``Conv``.
"""

from __future__ import annotations

import torch
from torch import nn
from ultralytics.nn.modules.conv import autopad

from models.attention.cbam import CBAM
from models.registry import LAYERS


def _activation(act) -> nn.Module:
    if act is True:
        return nn.Hardswish()
    return act if isinstance(act, nn.Module) else nn.Identity()


class ConvCBAM(nn.Module):
    """Conv2d(c1, c2, k, s, groups=g, no bias) -> BN -> Hardswish -> CBAM (bias-free MLP and spatial conv, no BN)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, act=True,
                 reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = _activation(act)
        self.cbam = CBAM(c2, reduction, kernel_size, form="bubbliiiing")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cbam(self.act(self.bn(self.conv(x))))


class ResidualConv(nn.Module):
    """x + LeakyReLU(0.1)(BN(Conv2d(c1, c2, k, s, k // 2, groups=g, no bias)(x))); ``e``: x + Conv1x1(c2, c1)(that)."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, g: int = 1, e: bool = False):
        super().__init__()
        if s != 1 or c1 != c2:
            raise ValueError(f"ResidualConv adds its input back: it needs stride 1 and as many output channels as "
                             f"input channels, got c1={c1}, c2={c2}, s={s}")
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.LeakyReLU(0.1)
        self.e = nn.Conv2d(c2, c1, 1) if e else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x)))
        return x + (self.e(y) if self.e is not None else y)


LAYERS.add(ConvCBAM, kind="conv")
LAYERS.add(ResidualConv, kind="conv")
