"""GAM: Global Attention Mechanism.

Liu, Shao, Hoffmann, "Global Attention Mechanism: Retain Information to Enhance Channel-Spatial
Interactions", arXiv:2112.05561 (2021). No official code was released.

F2 = x * sigmoid(MLP_c(x)), the MLP (C -> C/r, ReLU, C/r -> C) applied to every pixel's channel vector (the
paper's permute + MLP, written as two 1x1 convs); y = F2 * sigmoid(BN(conv7x7(ReLU(BN(conv7x7(F2)))))), the 7x7
convs C -> C/r -> C. r = 4. ``groups > 1``: the paper's lighter variant, grouped 7x7 convs with a channel shuffle.

Departures from the paper: its layer details (conv biases, BN after each 7x7 conv) follow the widely used port
(objectdetection_script's ``GAM_Attention``); the grouped variant shuffles between the two grouped convs (the paper
says only "group convolution with channel shuffle") and clamps its group count to a divisor of C and C/r (noted in
``build_notes``); the BatchNorms are ``BatchNorm2dSafe``; the hidden width is ``max(C // r, min(min_channels, C))``,
``min_channels=1`` (exactly C // r); the paper's ``rate`` is ``reduction`` (``rate`` accepted in YAML rows).

Forms (``form=``):
- ``"paper"`` (default): as above.
- ``"yoloair"``: YOLOAir's ``GAMAttention`` (also yoloair2's): no sigmoid on the channel MLP (F2 = x * MLP_c(x)), no
  shuffle between the convs, the spatial gate shuffled in 4 groups after its sigmoid; ``groups`` defaults to r
  (its ``group=True``). Same parameters as ``paper``; golden test ``GAM__yoloair``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.attention._common import BatchNorm2dSafe, channel_shuffle, check_form, divisor_at_most, hidden_width
from models.registry.protocol import AttentionModule
from models.registry import register_attention


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


FORMS = ("paper", "yoloair")


@register_attention(
    "GAM",
    category="hybrid",
    paper="Global Attention Mechanism: Retain Information to Enhance Channel-Spatial Interactions",
    arxiv="2112.05561",
    year=2021,
    placement="p5",
    notes="ODS's GAM_Attention has both sigmoids (as here); YOLOAir's GAMAttention skips the channel sigmoid and "
    "shuffles after the spatial one (form 'yoloair'). ~100C^2/r parameters: place at small C or use groups > 1.",
    renamed={"rate": "reduction"},
    forms=FORMS,
)
class GAM(AttentionModule):
    """x * M_c(x) then * M_s(.), both full-resolution sigmoid maps; reduction (the paper's rate) r = 4."""

    gate_shuffle = 0  # YOLOAir's shuffle after the sigmoid (class default: modules pickled before the form have none)

    def __init__(self, c1: int, reduction: int = 4, groups: int | None = None, min_channels: int = 1,
                 form: str = "paper"):
        super().__init__()
        self.form = check_form("GAM", form, FORMS)
        port = form == "yoloair"
        if port and c1 % 4:
            raise ValueError(f"GAM form='yoloair' shuffles its spatial gate in 4 groups: C={c1} is not divisible by 4")
        groups = (int(reduction) if port else 1) if groups is None else groups
        hidden = hidden_width(self, c1, reduction, min_channels)
        g = self.clamp("groups", groups, divisor_at_most(math.gcd(c1, hidden), groups), f"C={c1}, C/r={hidden}")
        self.channel_mlp = nn.Sequential(nn.Conv2d(c1, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, c1, 1))
        self.spatial = nn.Sequential(
            nn.Conv2d(c1, hidden, 7, padding=3, groups=g),
            BatchNorm2dSafe(hidden),
            nn.ReLU(),
            *([ChannelShuffle(g)] if g > 1 and not port else []),
            nn.Conv2d(hidden, c1, 7, padding=3, groups=g),
            BatchNorm2dSafe(c1),
        )
        self.gate_shuffle = 4 if port else 0  # YOLOAir shuffles the spatial gate after its sigmoid

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the channel factor per pixel, the channel-refined map F2, the spatial gate of F2), each (B, C, H, W)."""
        mlp = self.channel_mlp(x)
        mc = mlp if self.gate_shuffle else torch.sigmoid(mlp)
        f2 = x * mc
        ms = torch.sigmoid(self.spatial(f2))
        return mc, f2, channel_shuffle(ms, self.gate_shuffle) if self.gate_shuffle else ms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, f2, ms = self.gates(x)
        return f2 * ms

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The two gates the forward applies; both are (B, C, H, W) maps here (the channel gate is per pixel):
        channel = the channel gate's mean over pixels, spatial = the spatial gate's mean over channels."""
        mc, _, ms = self.gates(x)
        return {"channel": mc.mean((2, 3)), "spatial": ms.mean(1),
                "channel_how": "channel gate, mean over pixels", "spatial_how": "spatial gate, mean over channels"}
