"""Small helpers shared by the attention families."""

from __future__ import annotations

import math

import torch
from torch import nn


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (not below ``min_value``, not below 90% of ``v``)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def reduced_channels(c: int, reduction: float, minimum: int = 8) -> int:
    """Hidden width of a bottleneck MLP: ``c // reduction``, never below ``min(minimum, c)``."""
    return max(int(c // reduction), min(minimum, c))


def divisor_at_most(c: int, groups: int) -> int:
    """Largest divisor of ``c`` that is <= ``groups`` (so grouped layers never fail on odd widths)."""
    groups = max(1, min(int(groups), c))
    while c % groups:
        groups -= 1
    return groups


def eca_kernel_size(c: int, gamma: float = 2, b: float = 1) -> int:
    """ECA-Net's adaptive 1D kernel size: |log2(C)/gamma + b/gamma| rounded up to odd."""
    t = int(abs((math.log2(c) + b) / gamma))
    return t if t % 2 else t + 1


class HSigmoid(nn.Module):
    """relu6(x + 3) / 6, written out-of-place (never applied in-place to a tensor that is reused)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.relu6(x + 3.0) / 6.0


class HSwish(nn.Module):
    """x * relu6(x + 3) / 6 (MobileNetV3), out-of-place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.nn.functional.relu6(x + 3.0) / 6.0


class BatchNorm2dSafe(nn.BatchNorm2d):
    """BatchNorm2d that falls back to running statistics when a batch has one value per channel.

    The YOLO stride probe runs a (1, 3, 256, 256) zero image in train mode; on a 1x1 map a plain
    BatchNorm raises "Expected more than 1 value per channel". Where a statistic cannot be computed
    this normalises with the running estimates instead (and does not update them). Being a subclass,
    it is also left alone by ultralytics' ``initialize_weights`` (which matches ``nn.BatchNorm2d``
    exactly), so a paper's own momentum survives.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.numel() // x.shape[1] <= 1:
            return torch.nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)
