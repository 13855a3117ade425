"""CBAM: Convolutional Block Attention Module.

Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018, arXiv:1807.06521.
Official code: Jongchan/attention-module.

Channel gate M_c = sigmoid(MLP(AvgPool(x)) + MLP(MaxPool(x))), MLP C -> C/r -> C (r = 16); spatial gate
M_s = sigmoid(BN(conv_kxk([mean_c; max_c]))) of the refined map (k = 7); y = (x * M_c) * M_s. No residual inside
the block (the paper's residual belongs to the host ResBlock).

Departures from the paper: the MLP is 1x1 convolutions; pooling is ``mean``/``amax`` (CUDA-deterministic,
ONNX-dynamic); the spatial BatchNorm (official momentum 0.01) uses its running statistics on a single-value batch;
in the default form the hidden width is floored (below).

Forms (``form=``; each port's own defaults apply where an argument is left out):
- ``"paper"`` (default): ``[mean_c; max_c]`` as the paper writes it; hidden ``max(C // r, min(min_channels, C))``,
  ``min_channels`` default 8; a floor is recorded in ``build_notes``.
- ``"official"``: the official code (golden test ``CBAM``): ``[max_c; mean_c]``, hidden exactly C // r.
- ``"ods"``: objectdetection_script's ``CBAMBlock`` (= the seed article's ``CBAMAttention``): bias-free MLP, a biased
  spatial conv on ``[max_c; mean_c]``, no BN.
- ``"eap"``: External-Attention-pytorch's ``CBAMBlock``: as ``ods``, kernel 49 by default, and y = x + CBAM(x).
- ``"ultralytics"``: ultralytics' ``CBAM(c1, kernel_size)``: the channel gate is one biased C x C 1x1 conv on the mean
  (no reduction, no max pool), a bias-free spatial conv on ``[mean_c; max_c]``, no BN.
- ``"bubbliiiing"``: bubbliiiing's ``cbam_block`` and the YOLOv5 forks' ``CBAM``: bias-free MLP and spatial conv on
  ``[mean_c; max_c]``, no BN.
- ``"yoloair"``: YOLOAir's ``CBAM``: biased MLP with LeakyReLU(0.1), a biased spatial conv on ``[mean_c; max_c]``,
  no BN.
Port forms use exactly C // r (golden tests ``CBAM__<form>``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.attention._common import BatchNorm2dSafe, check_form, form_hidden_width
from models.registry.protocol import AttentionModule
from models.registry import register_attention


@dataclass(frozen=True)
class _Form:
    mlp_bias: bool = True
    leaky: bool = False  # LeakyReLU(0.1) in the MLP instead of ReLU
    mean_gate: bool = False  # one C x C conv on the mean instead of the MLP on mean and max
    max_first: bool = False  # spatial descriptor [max_c; mean_c]
    conv_bias: bool = False
    bn: bool = True
    residual: bool = False
    kernel_size: int = 7


_FORMS = {
    "paper": _Form(),
    "official": _Form(max_first=True),
    "ods": _Form(mlp_bias=False, max_first=True, conv_bias=True, bn=False),
    "eap": _Form(mlp_bias=False, max_first=True, conv_bias=True, bn=False, residual=True, kernel_size=49),
    "ultralytics": _Form(mean_gate=True, bn=False),
    "bubbliiiing": _Form(mlp_bias=False, bn=False),
    "yoloair": _Form(leaky=True, conv_bias=True, bn=False),
}
FORMS = tuple(_FORMS)


class ChannelGate(nn.Module):
    """sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))), shape (B, C, 1, 1)."""

    def __init__(self, c1: int, hidden: int, bias: bool = True, leaky: bool = False):
        super().__init__()
        act = nn.LeakyReLU(0.1) if leaky else nn.ReLU()
        self.mlp = nn.Sequential(nn.Conv2d(c1, hidden, 1, bias=bias), act, nn.Conv2d(hidden, c1, 1, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))


class MeanChannelGate(nn.Module):
    """sigmoid(fc(avgpool(x))), fc a biased C x C 1x1 conv (ultralytics' ChannelAttention), shape (B, C, 1, 1)."""

    def __init__(self, c1: int):
        super().__init__()
        self.fc = nn.Conv2d(c1, c1, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class SpatialGate(nn.Module):
    """sigmoid(BN(conv_kxk([mean_c(x); max_c(x)]))), shape (B, 1, H, W); ``max_first``: [max_c; mean_c] (official)."""

    def __init__(self, kernel_size: int = 7, max_first: bool = False, bias: bool = False, bn: bool = True):
        super().__init__()
        self.max_first = max_first
        if kernel_size % 2 == 0:
            raise ValueError(f"CBAM kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=bias)
        self.bn = BatchNorm2dSafe(1, momentum=0.01) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = (x.mean(1, keepdim=True), x.amax(1, keepdim=True))
        s = self.conv(torch.cat(pooled[::-1] if self.max_first else pooled, 1))
        return torch.sigmoid(self.bn(s) if self.bn is not None else s)


@register_attention(
    "CBAM",
    category="hybrid",
    paper="CBAM: Convolutional Block Attention Module",
    arxiv="1807.06521",
    year=2018,
    placement="backbone_end",
    notes="Ports differ in biases, BN, pooled order and residual: forms 'ods', 'eap', 'ultralytics', 'bubbliiiing', "
    "'yoloair'.",
    renamed={"k_size": "kernel_size", "ksize": "kernel_size"},
    forms=FORMS,
)
class CBAM(AttentionModule):
    """Channel gate, then spatial gate, applied sequentially (r=16, 7x7)."""

    residual = False  # EAP's x + CBAM(x) (class default: modules pickled before the forms existed have none)

    def __init__(self, c1: int, reduction: float | None = None, kernel_size: int | None = None,
                 min_channels: int | None = None, form: str = "paper"):
        super().__init__()
        self.form = check_form("CBAM", form, FORMS)
        f = _FORMS[form]
        if f.mean_gate:
            if reduction is not None or min_channels is not None:
                raise ValueError("CBAM form='ultralytics' has no reduction (its channel gate is one C x C conv); "
                                 "leave reduction and min_channels out")
            self.channel = MeanChannelGate(c1)
        else:
            r = 16 if reduction is None else reduction
            exact = tuple(k for k in FORMS if k != "paper")
            hidden = form_hidden_width(self, "CBAM", c1, r, min_channels, form, 8, exact=exact)
            self.channel = ChannelGate(c1, hidden, f.mlp_bias, f.leaky)
        k = f.kernel_size if kernel_size is None else kernel_size
        self.spatial = SpatialGate(k, f.max_first, f.conv_bias, f.bn)
        self.residual = f.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.channel(x)
        y = y * self.spatial(y)
        return x + y if self.residual else y

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The two gates the forward applies: channel (B, C) and spatial (B, H, W)."""
        mc = self.channel(x)
        return {"channel": mc.flatten(1), "spatial": self.spatial(x * mc)[:, 0],
                "channel_how": "channel gate", "spatial_how": "spatial gate (of the channel-refined map)"}
