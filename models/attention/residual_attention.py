"""Residual Attention Network: the (shape-preserving) attention module.

Wang, Jiang, Qian, Yang, Li, Zhang, Wang, Tang, "Residual Attention Network for Image Classification",
CVPR 2017, arXiv:1704.06904. Official code: fwang91/residual-attention-network (Caffe prototxt).
Not EAP's ``ResidualAttention``, which is CSRA (Zhu & Wu, ICCV 2021, arXiv:2108.02456), a classification head.

Units are pre-activation bottlenecks of width C/4. With p, t, r (paper: 1, 2, 1): p pre-processing units; trunk T =
t units; mask M from the pre-processed features: ``levels`` times [3x3 stride-2 max-pool, r units] (2r at the lowest
level), one skip unit per upper level added after upsampling, bilinear upsampling to the trunk size,
BN-ReLU-1x1-BN-ReLU-1x1 (no biases), sigmoid; H = (1 + M) T, then p units. Attention-56 uses 3/2/1 mask levels at
56/28/14 pixels; ``levels=1`` (the 14x14 stage) is the default, for P4/P5 maps.

Forms (``form=``), which differ only in the mask's max-pool (the paper does not specify it):

- ``"paper"`` (default): padding 1, floor mode: Caffe's sizes at even sides, one more at odd sides (11 -> 6, not 5),
  windows shifted by one pixel.
- ``"official"``: the prototxt's Caffe pooling, unpadded ceil mode (golden tests ``ResidualAttention``,
  ``ResidualAttention__levels2``); on a 1-pixel side, where Caffe cannot run, the window is clipped to the map (ONNX
  export of this form: H, W >= 2).

Departures from the paper:
- The bilinear upsampling (Caffe ``Interp``, align-corners) is two interpolation-matrix products built from the
  run-time sizes: exactly bilinear, deterministic on CUDA, dynamic in ONNX.
- BatchNorms are ``BatchNorm2dSafe``; bottleneck width ``max(C // 4, 1)``. (1 + M) T is never the identity: no
  ``init_identity``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, check_form
from models.registry.protocol import AttentionModule
from models.registry import register_attention


class PreActBottleneck(nn.Module):
    """x + conv1x1(BN-ReLU(conv3x3(BN-ReLU(conv1x1(BN-ReLU(x)))))), bottleneck width C/4, no biases."""

    def __init__(self, c: int):
        super().__init__()
        m = max(c // 4, 1)
        self.bn1 = BatchNorm2dSafe(c)
        self.conv1 = nn.Conv2d(c, m, 1, bias=False)
        self.bn2 = BatchNorm2dSafe(m)
        self.conv2 = nn.Conv2d(m, m, 3, padding=1, bias=False)
        self.bn3 = BatchNorm2dSafe(m)
        self.conv3 = nn.Conv2d(m, c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.relu(self.bn1(x)))
        y = self.conv2(F.relu(self.bn2(y)))
        return x + self.conv3(F.relu(self.bn3(y)))


def _units(c: int, n: int) -> nn.Sequential:
    return nn.Sequential(*(PreActBottleneck(c) for _ in range(n)))


def _bilinear_matrix(n_out: int, n_in: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) align-corners bilinear interpolation weights in ``like``'s dtype/device."""
    dt = torch.promote_types(like.dtype, torch.float32)  # weights in fp32 (fp64 for fp64 input), then cast
    dst = torch.arange(n_out, device=like.device).to(dt)
    src = torch.arange(n_in, device=like.device).to(dt)
    pos = dst * (src.amax() / dst.amax().clamp(min=1))  # (n_in - 1) / (n_out - 1); 0 when n_out == 1
    lo = pos.floor()
    frac = (pos - lo)[:, None]
    m = (src[None] == lo[:, None]).to(dt) * (1 - frac) + (src[None] == lo[:, None] + 1).to(dt) * frac
    return m.to(like.dtype)


def bilinear_resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Align-corners bilinear resize of (B, C, h0, w0) to (B, C, h, w) as A_h @ x @ A_w^T."""
    a_h = _bilinear_matrix(h, x.shape[2], x)
    a_w = _bilinear_matrix(w, x.shape[3], x)
    return torch.matmul(torch.matmul(a_h, x), a_w.transpose(0, 1))


def caffe_max_pool(x: torch.Tensor) -> torch.Tensor:
    """Caffe's 3x3 stride-2 unpadded ceil-mode max-pool (the official prototxt's); a 1-pixel side, where it has
    no output, is first padded with -inf to two pixels (the window clipped to the map). That padding is a branch on
    the size, left out of a traced (ONNX) graph, which then takes H, W >= 2 (any such size, dynamically)."""
    h, w = x.shape[-2:]
    if not torch.jit.is_tracing() and (h == 1 or w == 1):
        x = F.pad(x, (0, int(w == 1), 0, int(h == 1)), value=float("-inf"))
    return F.max_pool2d(x, 3, 2, 0, ceil_mode=True)


class _MaskLevel(nn.Module):
    """One down-up level of the mask branch (recursive: inner levels live in ``inner``)."""

    def __init__(self, c: int, r: int, remaining: int, caffe_pool: bool = False):
        super().__init__()
        self.pool = caffe_max_pool if caffe_pool else nn.MaxPool2d(3, 2, 1)
        self.lowest = remaining == 1
        self.down = _units(c, 2 * r if self.lowest else r)
        if not self.lowest:
            self.skip = PreActBottleneck(c)
            self.inner = _MaskLevel(c, r, remaining - 1, caffe_pool)
            self.up = _units(c, r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.down(self.pool(x))
        if self.lowest:
            return d
        u = bilinear_resize(self.inner(d), d.shape[2], d.shape[3]) + self.skip(d)
        return self.up(u)


FORMS = ("paper", "official")


@register_attention(
    "ResidualAttention",
    category="spatial-channel mask",
    paper="Residual Attention Network for Image Classification",
    arxiv="1704.06904",
    year=2017,
    placement="backbone_end",
    dense=False,
    notes="Not EAP's ResidualAttention (that is CSRA, arXiv 2108.02456, a (B, classes) head). "
    "tengshaofeng's port adds the trunk to the upsampled mask; the official prototxt does not. Default mask pool: "
    "padding 1 floor mode; form='official': Caffe's unpadded ceil mode.",
    forms=FORMS,
)
class ResidualAttention(AttentionModule):
    """RAN attention module: p units, (1 + M) * T with t trunk units and an r-unit hourglass mask, p units."""

    def __init__(self, c1: int, p: int = 1, t: int = 2, r: int = 1, levels: int = 1, form: str = "paper"):
        super().__init__()
        self.form = check_form("ResidualAttention", form, FORMS)
        if levels < 1 or r < 1:
            raise ValueError(f"levels and r must be >= 1, got levels={levels}, r={r}")
        self.pre = _units(c1, p)
        self.trunk = _units(c1, t)
        self.mask = _MaskLevel(c1, r, levels, caffe_pool=form == "official")
        self.head_bn1 = BatchNorm2dSafe(c1)
        self.head_conv1 = nn.Conv2d(c1, c1, 1, bias=False)
        self.head_bn2 = BatchNorm2dSafe(c1)
        self.head_conv2 = nn.Conv2d(c1, c1, 1, bias=False)
        self.post = _units(c1, p)
        self.clamp("bottleneck width", c1 // 4, max(c1 // 4, 1), f"C={c1}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        trunk = self.trunk(x)
        m = bilinear_resize(self.mask(x), x.shape[2], x.shape[3])
        m = self.head_conv1(F.relu(self.head_bn1(m)))
        m = torch.sigmoid(self.head_conv2(F.relu(self.head_bn2(m))))
        return self.post((1 + m) * trunk)
