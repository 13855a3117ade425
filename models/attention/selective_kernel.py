"""SK: Selective Kernel convolution (SKNet).

Li, Wang, Hu, Yang, "Selective Kernel Networks", CVPR 2019, arXiv:1903.06586.
Official code: implus/SKNet (Caffe prototxts); timm ``SelectiveKernel`` is a PyTorch re-implementation.

The paper's two-branch grouped form (M=2, G=32, r=16, L=32):

- Split: branch m is a 3x3 grouped convolution (G groups) with dilation m+1, followed by BN and ReLU. The
  second branch (dilation 2) has the 5x5 receptive field of the paper's "5x5 kernel replaced by a dilated 3x3".
- Fuse: U = sum of the branches, s = GAP(U) (B, C), z = ReLU(BN(W s)) with W: C -> d, d = max(C / r, L).
- Select: one C x d matrix per branch gives logits; softmax across the branches, separately per channel;
  V = sum_m a_m * U_m.

SK is itself a convolution layer (it replaces the 3x3 conv of a ResNeXt bottleneck): output shape == input
shape because C_out = C_in, but it is neither a gate nor an identity-like residual.

Forms (``form=``):

- ``"no_bn"`` (default): z = ReLU(W s + b): the BatchNorm on the pooled vector z is replaced by a bias on W. At
  inference that BN is a per-feature affine map, which folds exactly into W plus a bias, so the inference-time
  function class is the paper's; only the batch-statistics normalisation of z during training is gone.
  Parameter count C*d + d instead of the paper's C*d + 2d. The default because earlier versions built it
  (existing configs keep their parameter counts and weights).
- ``"official"``: the paper's and the official prototxt's z = ReLU(BN(W s)), W without a bias (golden test
  ``SK``, the Caffe SK unit of ``sknet50.prototxt`` re-implemented). The BN on z is ``BatchNorm2dSafe`` on the
  (B, d, 1, 1) vector: eps 1e-5, the official values in every batch of two or more, running statistics at batch 1
  (where the official code, like any BatchNorm on a pooled vector, cannot run in train mode).

Departures from the paper (form ``"no_bn"``: the BN on z, above; both forms: the rest):
- The group count is clamped to the largest divisor of C that is <= G (``divisor_at_most``), recorded in
  ``build_notes`` (e.g. C=40: 32 -> 20 groups).
- The paper's L is ``min_channels`` (formerly ``min_dim``, still accepted in YAML rows), the name every module
  uses for the floor of its hidden width. Unlike the other modules' floors (departures, recorded in
  ``build_notes``) it is the paper's own d = max(C / r, L), not capped at C: below 32 channels z is wider than C,
  as in the paper, and nothing is noted.
- The branch BatchNorms are ``BatchNorm2dSafe`` (PyTorch default eps/momentum, left alone by YOLO's
  ``initialize_weights``) so a 1x1 map at batch 1 in train mode works.
- Pooling is ``mean`` over H, W (CUDA-deterministic, ONNX-dynamic). ReLU is functional (never in-place).
- EAP/ODS ``SKAttention`` use four dense convs with kernels 1/3/5/7 (84 C^2 parameters, 22.1 M at C=512);
  this is the paper's grouped 2-branch form instead (about 18 C^2/G + 3 C d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, check_form, divisor_at_most
from models.registry.protocol import AttentionModule
from models.registry import register_attention


FORMS = ("no_bn", "official")


@register_attention(
    "SK",
    category="channel",
    paper="Selective Kernel Networks",
    arxiv="1903.06586",
    year=2019,
    placement="backbone_end",
    notes=(
        "EAP/ODS SKAttention use 4 dense branches (kernels 1,3,5,7, groups=1): 84*C^2 params (22.1M at C=512). "
        "Here the paper's 2 grouped 3x3 branches (dilation 1 and 2), G=32, d=max(C/16,32); default form 'no_bn' "
        "replaces the BN on z by a bias, form='official' keeps it."
    ),
    renamed={"min_dim": "min_channels"},
    forms=FORMS,
)
class SK(AttentionModule):
    """Selective Kernel convolution: softmax-weighted sum of M grouped 3x3 branches with growing dilation."""

    def __init__(self, c1: int, groups: int = 32, reduction: int = 16, min_channels: int = 32, branches: int = 2,
                 form: str = "no_bn"):
        super().__init__()
        self.form = check_form("SK", form, FORMS)
        if branches < 1:
            raise ValueError(f"SK needs at least one branch, got {branches}")
        g = self.clamp("groups", groups, divisor_at_most(c1, groups), f"C={c1}")
        d = max(c1 // reduction, min_channels)  # the paper's d = max(C / r, L), L not capped at C: no clamp, no note
        self.m = branches
        self.c = c1
        self.convs = nn.ModuleList(
            nn.Conv2d(c1, c1, 3, padding=i + 1, dilation=i + 1, groups=g, bias=False) for i in range(branches)
        )
        self.bns = nn.ModuleList(BatchNorm2dSafe(c1) for _ in range(branches))
        official = form == "official"
        self.fc = nn.Conv2d(c1, d, 1, bias=not official)  # W (C -> d); no_bn: the bias stands in for the BN's shift
        self.fc_bn = BatchNorm2dSafe(d) if official else None  # the BN on z (official prototxt B_fc1/bn)
        self.select = nn.Conv2d(d, branches * c1, 1, bias=False)  # the M matrices A_m (d -> C), stacked

    def branch_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """U_m = ReLU(BN(GConv_m(x))) for each branch."""
        return [F.relu(bn(conv(x))) for conv, bn in zip(self.convs, self.bns)]

    def weights(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Per-channel branch weights, shape (B, M, C, 1, 1), summing to 1 over M."""
        u = feats[0]
        for f in feats[1:]:
            u = u + f
        z = self.fc(u.mean((2, 3), keepdim=True))
        z = F.relu(self.fc_bn(z) if self.fc_bn is not None else z)
        logits = self.select(z)  # (B, M*C, 1, 1)
        return logits.reshape(logits.shape[0], self.m, self.c, 1, 1).softmax(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.branch_outputs(x)
        a = self.weights(feats)
        out = feats[0] * a[:, 0]
        for i in range(1, self.m):
            out = out + feats[i] * a[:, i]
        return out
