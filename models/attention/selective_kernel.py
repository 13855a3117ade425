"""SK: Selective Kernel convolution (SKNet).

Li, Wang, Hu, Yang, "Selective Kernel Networks", CVPR 2019, arXiv:1903.06586.
Official code: implus/SKNet (Caffe prototxts); timm ``SelectiveKernel`` is a PyTorch re-implementation.

M branches U_m = ReLU(BN(GConv_m(x))) (3x3, G groups, dilation m + 1: the paper's "5x5 as a dilated 3x3");
s = GAP(sum_m U_m); z = ReLU(BN(W s)), W: C -> d, d = max(C / r, L); a = softmax over m of A_m z (per channel);
V = sum_m a_m U_m. M = 2, G = 32, r = 16, L = 32. SK is a convolution layer (it replaces a ResNeXt 3x3), not a gate.

Departures from the paper: the group count is clamped to the largest divisor of C <= G (noted in ``build_notes``);
L is ``min_channels`` (``min_dim`` accepted), not capped at C as the other modules' floors are; the BatchNorms are
``BatchNorm2dSafe`` (batch 1 on a 1x1 map in train mode uses running statistics); pooling is ``mean``.

Forms (``form=``; each one's own defaults apply where an argument is left out):
- ``"no_bn"`` (default): z = ReLU(W s + b), the BN on z replaced by a bias (C*d + d parameters for C*d + 2d): at
  inference the same function class; only batch-statistics normalisation of z is gone.
- ``"official"``: z = ReLU(BN(W s)), W without bias (golden test ``SK``, the Caffe SK unit re-implemented).
- ``"eap"``: External-Attention-pytorch's ``SKAttention`` (copied by YOLOAir, objectdetection_script and YOLOv8
  blogs): dense biased branches with kernels (1, 3, 5, 7) (``kernels=``), ``groups`` default 1, z = W s + b without
  an activation, biased A_m: about 84 C^2 parameters, 22.1 M at C = 512 (golden test ``SK__eap``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, check_form, divisor_at_most
from models.registry.protocol import AttentionModule
from models.registry import register_attention


FORMS = ("no_bn", "official", "eap")


@register_attention(
    "SK",
    category="channel",
    paper="Selective Kernel Networks",
    arxiv="1903.06586",
    year=2019,
    placement="backbone_end",
    notes=(
        "EAP/ODS/YOLOAir SKAttention use 4 dense branches (kernels 1,3,5,7, groups=1): 84*C^2 params (22.1M at "
        "C=512), form 'eap'. Here by default the paper's 2 grouped 3x3 branches (dilation 1 and 2), G=32, "
        "d=max(C/16,32); form 'no_bn' replaces the BN on z by a bias, form='official' keeps it."
    ),
    renamed={"min_dim": "min_channels"},
    forms=FORMS,
)
class SK(AttentionModule):
    """Selective Kernel convolution: softmax-weighted sum of M grouped 3x3 branches with growing dilation."""

    z_relu = True  # ReLU on z (class default: modules pickled before the 'eap' form existed have none)

    def __init__(self, c1: int, groups: int | None = None, reduction: int = 16, min_channels: int = 32,
                 branches: int | None = None, kernels: tuple | list | None = None, form: str = "no_bn"):
        super().__init__()
        self.form = check_form("SK", form, FORMS)
        port = form == "eap"
        if port:
            kernels = tuple(kernels or (1, 3, 5, 7))
            if branches is not None and branches != len(kernels):
                raise ValueError(f"SK form='eap': branches={branches} but {len(kernels)} kernels {kernels}; give "
                                 "kernels only")
            if any(int(k) != k or k < 1 or k % 2 == 0 for k in kernels):
                raise ValueError(f"SK form='eap': kernels must be odd positive integers, got {kernels}")
            branches = len(kernels)
        elif kernels is not None:
            raise ValueError(f"SK form={form!r} has 3x3 branches with growing dilation; kernels= is form 'eap's "
                             "(dense branches of the given kernel sizes)")
        branches = 2 if branches is None else branches
        if branches < 1:
            raise ValueError(f"SK needs at least one branch, got {branches}")
        groups = (1 if port else 32) if groups is None else groups
        g = self.clamp("groups", groups, divisor_at_most(c1, groups), f"C={c1}")
        d = max(c1 // reduction, min_channels)  # the paper's d = max(C / r, L), L not capped at C: no clamp, no note
        self.m = branches
        self.c = c1
        if port:
            self.convs = nn.ModuleList(nn.Conv2d(c1, c1, k, padding=k // 2, groups=g) for k in kernels)
        else:
            self.convs = nn.ModuleList(
                nn.Conv2d(c1, c1, 3, padding=i + 1, dilation=i + 1, groups=g, bias=False) for i in range(branches)
            )
        self.bns = nn.ModuleList(BatchNorm2dSafe(c1) for _ in range(branches))
        official = form == "official"
        self.fc = nn.Conv2d(c1, d, 1, bias=not official)  # W (C -> d); no_bn: the bias stands in for the BN's shift
        self.fc_bn = BatchNorm2dSafe(d) if official else None  # the BN on z (official prototxt B_fc1/bn)
        self.z_relu = not port  # the port feeds W s + b to the selection directly
        self.select = nn.Conv2d(d, branches * c1, 1, bias=port)  # the M matrices A_m (d -> C), stacked

    def branch_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """U_m = ReLU(BN(GConv_m(x))) for each branch."""
        return [F.relu(bn(conv(x))) for conv, bn in zip(self.convs, self.bns)]

    def weights(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Per-channel branch weights, shape (B, M, C, 1, 1), summing to 1 over M."""
        u = feats[0]
        for f in feats[1:]:
            u = u + f
        z = self.fc(u.mean((2, 3), keepdim=True))
        z = self.fc_bn(z) if self.fc_bn is not None else z
        logits = self.select(F.relu(z) if self.z_relu else z)  # (B, M*C, 1, 1)
        return logits.reshape(logits.shape[0], self.m, self.c, 1, 1).softmax(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.branch_outputs(x)
        a = self.weights(feats)
        out = feats[0] * a[:, 0]
        for i in range(1, self.m):
            out = out + feats[i] * a[:, i]
        return out
