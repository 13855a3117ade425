"""SEAM and MultiSEAM: the occlusion-aware (Separated and Enhancement) attention of YOLO-FaceV2.

Yu, Huang, Chen, Su, Liu, Wang, "YOLO-FaceV2: A Scale and Occlusion Aware Face Detector", Pattern Recognition 2024,
arXiv:2208.02019. Official code: Krasjet-Yu/YOLO-FaceV2 (``models/common.py``, ``SEAM``, ``MultiSEAM``, ``DcovN``).

A channel gate computed from a depthwise-separable "channel and spatial mixing" stack (CSMM):

- mixer layer (``depth`` of them): ``z = z + BN(GELU(DW3x3(z)))``, then ``z = BN(GELU(1x1(z)))``;
- SEAM: ``s = GAP(mixers(x))``;
- MultiSEAM: three branches, each a patch embedding ``BN(GELU(Conv_{p x p, stride p}(x)))`` followed by the mixer
  layers, for patch sizes p = 6, 7, 8; ``s = (GAP(b_6) + GAP(b_7) + GAP(b_8) + GAP(x)) / 4``;
- gate: ``g = exp(sigmoid(FC(ReLU(FC(s)))))`` (C -> C/r -> C, no biases, r = 16), ``y = x * g``; the exponential
  maps the gate into (1, e), so it only ever amplifies.

Both are shape-preserving here: the official constructors take (c1, c2, ...) and set c2 = c1, but YOLO-FaceV2's
parser records the scaled c2 as the layer's output width, which is wrong whenever the row's width differs from the
input's; here the output width is the input's, always. ``depth`` is the official ``n``/``depth``; ``patch_size``
default (6, 7, 8) as in every released YOLO-FaceV2 config (the class signature's (3, 5, 7) is used by none).
Hidden width ``max(C // r, min(min_channels, C))``, ``min_channels`` default 1 (exactly the official C // r wherever
that is not 0).

MultiSEAM forms (``form=``), which differ only in the patch grid:

- ``"official"`` (default): the official unpadded strided conv (floor: the last H mod p rows and W mod p columns are
  left out; golden test ``MultiSEAM``). Where a side is shorter than p the official code raises; here that side is
  zero-padded to one patch.
- ``"full"``: the map is zero-padded at the bottom/right to multiples of p, so every pixel lies in a patch (a partial
  border patch sees zeros beyond the map). Equal to the official code where H and W are multiples of p; more patch
  convolution on other maps (about 1.2x at 40x40).

Departures from the paper and the official code:
- The BatchNorms are ``BatchNorm2dSafe`` (batch 1 in train mode on a 1x1 map, or a 1x1 patch grid, uses running
  statistics where the official code raises) with PyTorch's eps/momentum, as the module code has them (inside
  YOLO-FaceV2's detectors its ``initialize_weights`` sets eps 1e-3, momentum 0.03).
- The depthwise conv's padding is kernel_size // 2 (the official hard-codes 1, so only kernel_size 3 runs there).
- The global average pools are ``x.mean((2, 3))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, check_form, hidden_width
from models.registry.protocol import AttentionModule
from models.registry import register_attention


class MixerLayer(nn.Module):
    """z + BN(GELU(DWkxk(z))), then BN(GELU(1x1(z))): one layer of YOLO-FaceV2's channel and spatial mixing."""

    def __init__(self, c: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"SEAM kernel_size must be odd, got {kernel_size}")
        self.dw = nn.Conv2d(c, c, kernel_size, padding=kernel_size // 2, groups=c)
        self.dw_bn = BatchNorm2dSafe(c)
        self.pw = nn.Conv2d(c, c, 1)
        self.pw_bn = BatchNorm2dSafe(c)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z + self.dw_bn(F.gelu(self.dw(z)))
        return self.pw_bn(F.gelu(self.pw(z)))


class ExpGate(nn.Module):
    """exp(sigmoid(FC(ReLU(FC(s))))) of a pooled (B, C) descriptor, as (B, C, 1, 1)."""

    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, c, bias=False)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.exp(torch.sigmoid(self.fc2(F.relu(self.fc1(s)))))[..., None, None]


class _SEAMBase(AttentionModule):
    gate: ExpGate

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """The gate (B, C, 1, 1), in (1, e)."""
        return self.gate(self.descriptor(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_gate(x)

    def attention_maps(self, x: torch.Tensor) -> dict:
        return self.gate_maps(self.channel_gate(x), "channel gate exp(sigmoid), in (1, e)")


@register_attention(
    "SEAM",
    category="channel",
    paper="YOLO-FaceV2: A Scale and Occlusion Aware Face Detector",
    arxiv="2208.02019",
    year=2024,
    placement="neck_outputs",
    notes="YOLO-FaceV2 places it on the P3/P4/P5 neck outputs before Detect (rows [c2, n, reduction], e.g. "
    "[256, 1, 8]); its parser records the row's scaled c2 as the output width while the module keeps c1.",
)
class SEAM(_SEAMBase):
    """x * exp(sigmoid(MLP(GAP(mixers(x))))): depthwise-separable mixing, then an SE-style gate in (1, e)."""

    def __init__(self, c1: int, depth: int = 1, reduction: float = 16, min_channels: int = 1, kernel_size: int = 3):
        super().__init__()
        if depth < 1:
            raise ValueError(f"SEAM depth must be >= 1, got {depth}")
        self.mixers = nn.Sequential(*(MixerLayer(c1, kernel_size) for _ in range(depth)))
        self.gate = ExpGate(c1, hidden_width(self, c1, reduction, min_channels))

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixers(x).mean((2, 3))


FORMS = ("official", "full")


class PatchBranch(nn.Module):
    """BN(GELU(Conv_{p x p, stride p}(x))) followed by the mixer layers; x zero-padded at the bottom/right to whole
    patches (``floor=False``) or only where a side is shorter than p (``floor=True``, the official grid)."""

    def __init__(self, c: int, patch: int, depth: int, kernel_size: int):
        super().__init__()
        self.patch = patch
        self.embed = nn.Conv2d(c, c, patch, stride=patch)
        self.embed_bn = BatchNorm2dSafe(c)
        self.mixers = nn.Sequential(*(MixerLayer(c, kernel_size) for _ in range(depth)))

    def forward(self, x: torch.Tensor, floor: bool) -> torch.Tensor:
        p = self.patch
        h, w = x.shape[-2:]
        if floor:  # the official grid (the strided conv drops the remainder); a side shorter than p: one patch
            ph, pw = (p - h) * (h < p), (p - w) * (w < p)
        else:  # whole patches over the map
            ph, pw = (p - h % p) % p, (p - w % p) % p
        if torch.jit.is_tracing() or ph or pw:  # (exported graphs pad for every size)
            x = F.pad(x, (0, pw, 0, ph))
        return self.mixers(self.embed_bn(F.gelu(self.embed(x))))


@register_attention(
    "MultiSEAM",
    category="channel",
    paper="YOLO-FaceV2: A Scale and Occlusion Aware Face Detector",
    arxiv="2208.02019",
    year=2024,
    placement="neck_outputs",
    notes="Official code: unpadded p x p strided patch convs (p = 6, 7, 8 in the released configs) raise on maps "
    "under p pixels and leave the last H mod p rows / W mod p columns out; here the same grid with sides under p "
    "padded to one patch (form='full': zero-padded to whole patches). YOLO-FaceV2 places it on the neck outputs "
    "before Detect.",
    forms=FORMS,
)
class MultiSEAM(_SEAMBase):
    """x * exp(sigmoid(MLP(mean of GAP(x) and GAP of three patch-embedded mixer branches, p = 6, 7, 8)))."""

    def __init__(self, c1: int, depth: int = 1, kernel_size: int = 3, patch_size: tuple[int, ...] = (6, 7, 8),
                 reduction: float = 16, min_channels: int = 1, form: str = "official"):
        super().__init__()
        self.form = check_form("MultiSEAM", form, FORMS)
        if depth < 1 or not patch_size or any(p < 1 for p in patch_size):
            raise ValueError(f"MultiSEAM needs depth >= 1 and patch sizes >= 1, got {depth}, {patch_size}")
        self.patch_size = tuple(patch_size)
        self.branches = nn.ModuleList(PatchBranch(c1, p, depth, kernel_size) for p in self.patch_size)
        self.gate = ExpGate(c1, hidden_width(self, c1, reduction, min_channels))

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        floor = self.form == "official"
        s = x.mean((2, 3))
        for branch in self.branches:
            s = s + branch(x, floor).mean((2, 3))
        return s / (len(self.branches) + 1)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, form={self.form!r}"
