"""eSE: Effective Squeeze-Excitation (VoVNetV2).

Lee, Park, "CenterMask: Real-Time Anchor-Free Instance Segmentation", CVPR 2020, arXiv:1911.06667 (eSE is
introduced there for VoVNetV2). Official code: youngwanLEE/CenterMask, youngwanLEE/vovnet-detectron2;
timm ``EffectiveSEModule``.

y = x * hsigmoid(W GAP(x) + b), one C -> C fully connected layer (a biased 1x1 conv), hsigmoid(t) = relu6(t + 3) / 6.
No reduction; C^2 + C parameters. Equal to the official code (golden test ``EffectiveSE``); no forms.

Departures from the paper: none in the maths. The squeeze is ``x.mean((2, 3))``. ``add_maxpool=True`` is timm's
optional variant (0.5 avg + 0.5 max), off by default (not in the paper).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.registry.protocol import GatedAttention
from models.registry import register_attention


@register_attention(
    "EffectiveSE",
    category="channel",
    paper="CenterMask: Real-Time Anchor-Free Instance Segmentation",
    arxiv="1911.06667",
    year=2020,
    placement="backbone_end",
    notes="ODS EffectiveSE.py imports timm.models.layers.create_act, which current timm lacks; same maths otherwise.",
)
class EffectiveSE(GatedAttention):
    """x * hsigmoid(FC_CxC(GAP(x)))."""

    gate_name = "channel gate"

    def __init__(self, c1: int, add_maxpool: bool = False):
        super().__init__()
        self.add_maxpool = bool(add_maxpool)
        self.fc = nn.Conv2d(c1, c1, 1, bias=True)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """hsigmoid(W s), (B, C, 1, 1); s the mean (or mean/max blend) over positions."""
        s = x.mean((2, 3), keepdim=True)
        if self.add_maxpool:
            s = 0.5 * s + 0.5 * x.amax((2, 3), keepdim=True)
        return F.hardsigmoid(self.fc(s))  # relu6(t + 3) / 6 in one kernel (one ONNX HardSigmoid node)
