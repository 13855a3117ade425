"""EPSA: the Pyramid Squeeze Attention (PSA) module of EPSANet.

Zhang, Zu, Lu, Zou, Meng, "EPSANet: An Efficient Pyramid Squeeze Attention Block on Convolutional
Neural Network", ACCV 2022, arXiv:2105.14447. Official code: murufeng/EPSANet (``PSAModule``).

Four bias-free convolutions, each on the *whole* input, produce C/4 channels with kernels 3/5/7/9 and groups
1/4/8/16 (padding k // 2). One SE module (GAP -> 1x1 C/4 -> C/64 -> ReLU -> 1x1 -> sigmoid), shared by the four
scales, gives each scale a (C/4) weight vector; a softmax across the scales recalibrates them, and the re-weighted
scales are concatenated back to C channels.

Forms (``form=``):

- ``"paper"`` (default): the scales concatenated in kernel order 3, 5, 7, 9, as the paper's figure draws them.
- ``"official"``: the official ``PSAModule`` (golden test ``EPSA``): its loop prepends each scale, so the output
  holds them in order 9, 7, 5, 3 (a fixed channel permutation of the paper form), and official weights load 1:1.

Departures from the paper (both forms):
- Conv group counts clamp to the largest divisor of gcd(C, C/4) not above the paper's value (the defaults need
  C % 64 == 0; the official code raises otherwise). SE hidden width ``max(C/4 // r, min(min_channels, C/4))`` with
  ``min_channels=1``: the official C/4 // r, and 1 where that is 0 (where the official code cannot build). Both noted
  in ``build_notes``.
- The squeeze is ``x.mean((2, 3))``; nothing is written in place.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import check_form, divisor_at_most, hidden_width
from models.registry.protocol import AttentionModule
from models.registry import register_attention


class SEWeight(nn.Module):
    """sigmoid(fc2(relu(fc1(GAP(x))))): per-channel weights in (0, 1), shape (B, C, 1, 1)."""

    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(c, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


FORMS = ("paper", "official")


@register_attention(
    "EPSA",
    category="channel",
    paper="EPSANet: An Efficient Pyramid Squeeze Attention Block on Convolutional Neural Network",
    arxiv="2105.14447",
    year=2022,
    placement="backbone_end",
    notes="EAP PSA.py: each conv sees only a C/4 chunk, its convs/SE are unregistered (0 params) and it writes "
    "into a view of its input. Official: every conv sees all C channels, one SE shared by the 4 scales, output in "
    "reverse scale order (form='official').",
    forms=FORMS,
)
class EPSA(AttentionModule):
    """Four multi-scale grouped convs (C -> C/4 each), shared SE weights, softmax over the scales."""

    def __init__(
        self,
        c1: int,
        kernels: tuple[int, ...] = (3, 5, 7, 9),
        groups: tuple[int, ...] = (1, 4, 8, 16),
        reduction: int = 16,
        min_channels: int = 1,
        form: str = "paper",
    ):
        super().__init__()
        self.form = check_form("EPSA", form, FORMS)
        if len(kernels) != len(groups):
            raise ValueError(f"EPSA needs one group count per kernel, got {kernels} and {groups}")
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"EPSA kernels must be odd, got {kernels}")
        s = len(kernels)
        if c1 % s:
            raise ValueError(f"EPSA needs C divisible by the number of scales ({s}), got C={c1}")
        split = c1 // s
        self.convs = nn.ModuleList()
        for k, g in zip(kernels, groups):
            gg = self.clamp(f"groups of the {k}x{k} conv", g, divisor_at_most(math.gcd(c1, split), g), f"C={c1}")
            self.convs.append(nn.Conv2d(c1, split, k, padding=k // 2, groups=gg, bias=False))
        hidden = hidden_width(self, split, reduction, min_channels, "SE hidden width")
        self.se = SEWeight(split, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [conv(x) for conv in self.convs]
        weights = torch.stack([self.se(f) for f in feats], 1).softmax(1)  # (B, S, C/S, 1, 1), softmax over scales
        out = [f * weights[:, i] for i, f in enumerate(feats)]
        return torch.cat(out[::-1] if self.form == "official" else out, 1)
