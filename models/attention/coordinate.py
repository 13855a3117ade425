"""Coordinate Attention.

Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
arXiv:2103.02907. Official code: Andrew-Qibin/CoordAttention.

Pool along W and along H, concatenate the two directional descriptors, a shared 1x1 conv (C -> mip) + BN + h-swish,
split, one 1x1 conv per direction back to C, sigmoid; y = x * a_h * a_w. mip = max(8, C // 32).

Departures from the paper: the directional pools are ``x.mean(3)`` / ``x.mean(2)`` (no adaptive pools: CUDA
deterministic, ONNX-dynamic); mip follows the one hidden-width rule ``max(C // r, min(min_channels, C))`` (below
8 channels the floor is C, not 8; a floor is recorded in ``build_notes``); the BN is ``BatchNorm2dSafe`` with the
official eps 1e-5 and momentum 0.1, which ultralytics' ``initialize_weights`` leaves alone.

Forms (``form=``; each one's own defaults apply where an argument is left out):
- ``"official"`` (default): the official ``CoordAtt``, r = 32, ``min_channels`` default 8 (golden test ``CoordAtt``).
- ``"bubbliiiing"``: bubbliiiing's ``CA_Block`` (= the seed article's ``CAAttention``): bias-free 1x1 convs, ReLU
  for h-swish, r = 16, mip exactly C // r (golden test ``CoordAtt__bubbliiiing``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, check_form, form_hidden_width
from models.registry.protocol import AttentionModule
from models.registry import register_attention

FORMS = ("official", "bubbliiiing")


@register_attention(
    "CoordAtt",
    category="hybrid",
    paper="Coordinate Attention for Efficient Mobile Network Design",
    arxiv="2103.02907",
    year=2021,
    placement="backbone_end",
    config_name="ca",
    notes="Blog ports match the official layers but use adaptive pools; the bias-free ReLU copy (CA_Block) is form "
    "'bubbliiiing'.",
    forms=FORMS,
)
class CoordAtt(AttentionModule):
    """x * sigmoid(conv_h(f_h)) * sigmoid(conv_w(f_w)), reduction 32, mip >= 8."""

    relu = False  # the port's ReLU for h-swish (class default: modules pickled before the forms existed have none)

    def __init__(self, c1: int, reduction: int | None = None, min_channels: int | None = None,
                 form: str = "official"):
        super().__init__()
        self.form = check_form("CoordAtt", form, FORMS)
        port = form == "bubbliiiing"
        r = (16 if port else 32) if reduction is None else reduction
        mip = form_hidden_width(self, "CoordAtt", c1, r, min_channels, form, 8, "mip", exact=("bubbliiiing",))
        self.conv1 = nn.Conv2d(c1, mip, 1, bias=not port)
        self.bn1 = BatchNorm2dSafe(mip)  # official eps/momentum, kept inside YOLO models
        self.conv_h = nn.Conv2d(mip, c1, 1, bias=not port)
        self.conv_w = nn.Conv2d(mip, c1, 1, bias=not port)
        self.relu = port  # the port's ReLU for the official h-swish

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_h (B, C, H, 1), a_w (B, C, 1, W))."""
        h, w = x.shape[-2:]
        x_h = x.mean(3, keepdim=True)  # (B, C, H, 1)
        x_w = x.mean(2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        f = self.bn1(self.conv1(torch.cat((x_h, x_w), 2)))
        f = F.relu(f) if self.relu else F.hardswish(f)  # functional: never in-place
        f_h, f_w = torch.split(f, [h, w], 2)
        return torch.sigmoid(self.conv_h(f_h)), torch.sigmoid(self.conv_w(f_w.transpose(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_h, a_w = self.gates(x)
        return x * a_h * a_w

    def attention_maps(self, x: torch.Tensor) -> dict:
        a_h, a_w = self.gates(x)
        return self.gate_maps(a_h * a_w, "product of the H and W gates")
