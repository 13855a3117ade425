"""DANet: Dual Attention Network (position attention + channel attention).

Fu, Liu, Tian, Li, Bao, Fang, Lu, "Dual Attention Network for Scene Segmentation", CVPR 2019,
arXiv:1809.02983. Official code: junfu1115/DANet (``PAM_Module``, ``CAM_Module``).

Position attention module (PAM): Q, K = 1x1 convs C -> C/8, V = 1x1 conv C -> C (all with bias);
S = softmax over keys of Q^T K (an N x N map, N = H*W); O = V S^T; y_p = gamma * O + x with gamma = 0 at init.

Channel attention module (CAM): A = x as (B, C, N); E = A A^T (C x C); the official code then takes
softmax(rowmax(E) - E) (the paper prints softmax(E)); O = X A; y_c = beta * O + x with beta = 0 at init.

Composition for a detector: the two branches are applied in parallel on the same input and summed as
in the paper's head, keeping one copy of the identity: y = x + gamma * O_pam + beta * O_cam. Both scales
start at zero, so the module is the identity at init.

Departures from the paper:
- No 3x3 conv + BN + ReLU reduce/expand convs around each branch (those belong to the segmentation
  head); PAM and CAM act directly on the C-channel input, summed as y_p + y_c - x.
- CAM uses the official ``rowmax(E) - E`` form by default (``cam_form="official"``); ``cam_form="paper"``
  gives softmax(E) as printed in the paper. The authors kept the official form (DANet issues #9/#48).
- The PAM logits (unscaled dot products) and the whole CAM energy/softmax are computed in fp32 with
  autocast disabled, then the attention weights are cast back to the input dtype: E = A A^T sums N
  products and overflows fp16 (``model.half()``), unscaled logits can too.
- Q/K width is ``max(C // reduction, min(min_channels, C))`` with ``min_channels=1``: exactly C // 8, never 0 (a
  floor is recorded in ``build_notes``).

Verified against the official ``PAM_Module`` + ``CAM_Module`` composed as above (tests/fixtures/golden/DANet.npz,
junfu1115/DANet@b0a0fa0): max |diff| 8.9e-16 in float64, so there is no separate official form.

Memory (issue 15): PAM runs through ``scaled_dot_product_attention`` (one head, queries/keys (B, 1, N, C/8), values
(B, 1, N, C), scale 1 passed; ``models/attention/_sdpa.py``): its (N x N) map is not stored. On CPU the fused kernel
needs q/k zero-padded to C (8x the q.k FLOPs), so maps of up to 2^22 elements (45x45; 256 MiB in all) keep the
explicit form there, which is then faster. Measured on CPU (1 thread, batch 1), explicit -> now: 80x80, C=128
(fused): forward peak 313 -> 16 MiB, forward+backward 479 -> 34 MiB, time 0.59x / 0.62x; 20x20, C=512 (explicit
kept): unchanged. CAM's (C x C) map is unchanged. Compute stays quadratic (N^2 (C/8 + C) multiply-adds): P5 by
default (``models/engine/checks.py``). ``attention_maps`` (heatmaps) still builds the full map.
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import at_least_fp32, autocast_off, hidden_width
from models.attention._sdpa import explicit_is_faster, fused_attention
from models.registry.protocol import AttentionModule
from models.registry import register_attention


class PositionAttention(nn.Module):
    """PAM without its residual: returns O = V softmax(Q^T K)^T as (B, C, H, W), the (N x N) map never stored."""

    def __init__(self, c1: int, c_qk: int):
        super().__init__()
        self.query = nn.Conv2d(c1, c_qk, 1)
        self.key = nn.Conv2d(c1, c_qk, 1)
        self.value = nn.Conv2d(c1, c1, 1)
        self.widths_differ = c_qk != c1

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """softmax(q^T k), (B, N, N), rows = queries."""
        q = self.query(x).flatten(2)  # (B, c', N)
        k = self.key(x).flatten(2)
        with autocast_off(x):
            return torch.bmm(at_least_fp32(q).transpose(1, 2), at_least_fp32(k)).softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One head: queries, keys (B, 1, N, C/8), values (B, 1, N, C), unscaled logits (scale 1 passed)."""
        b, c, h, w = x.shape
        n = h * w  # a traced value while exporting: only read when not exporting
        if explicit_is_faster(x, b, n, n, self.widths_differ, lean=True):  # small maps on CPU, and export
            v = self.value(x).flatten(2)  # (B, C, N)
            return torch.bmm(v, self.attention(x).to(v.dtype).transpose(1, 2)).reshape(b, c, h, w)
        q, k, v = (t(x).flatten(2).transpose(1, 2).unsqueeze(1) for t in (self.query, self.key, self.value))
        return fused_attention(q, k, v, 1.0)[:, 0].transpose(1, 2).reshape(b, c, h, w)


class ChannelAttention(nn.Module):
    """CAM without its residual: returns O = softmax(f(A A^T)) A as (B, C, H, W). Parameter-free."""

    def __init__(self, form: str = "official"):
        super().__init__()
        if form not in ("official", "paper"):
            raise ValueError(f"cam_form must be 'official' or 'paper', got {form!r}")
        self.form = form

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The channel affinity softmax, (B, C, C), rows = output channels."""
        with autocast_off(x):
            af = at_least_fp32(x.flatten(2))
            energy = torch.bmm(af, af.transpose(1, 2))  # (B, C, C), fp32: sums N products
            if self.form == "official":
                energy = energy.amax(-1, keepdim=True) - energy
            return energy.softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.flatten(2)  # (B, C, N)
        return torch.bmm(self.attention(x).to(a.dtype), a).reshape(x.shape)


@register_attention(
    "DANet",
    category="self-attention",
    paper="Dual Attention Network for Scene Segmentation",
    arxiv="1809.02983",
    year=2019,
    placement="p5",
    dense=True,
    notes="EAP's DAModule hard-codes d_model=512 and 7x7 (Linear over H*W), has no gamma residual; "
    "here PAM+CAM act on any C, H, W with zero-initialised gammas. CAM follows the official rowmax(E)-E. "
    "PAM via SDPA: no N x N map stored (P3 80x80 C=128 fwd+bwd 479 -> 34 MiB).",
)
class DANet(AttentionModule):
    """x + gamma * PAM(x) + beta * CAM(x) (q/k reduction 8, gammas zero at init)."""

    def __init__(self, c1: int, reduction: int = 8, cam_form: str = "official", min_channels: int = 1):
        super().__init__()
        self.c = c1
        self.pam = PositionAttention(c1, hidden_width(self, c1, reduction, min_channels, "PAM q/k width"))
        self.cam = ChannelAttention(cam_form)
        self.gamma_pam = nn.Parameter(torch.zeros(1))
        self.gamma_cam = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma_pam * self.pam(x) + self.gamma_cam * self.cam(x)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The attention each position receives in PAM (B, H, W) and each channel receives in CAM (B, C), averaged
        over queries."""
        b, c, h, w = x.shape
        return {"spatial": self.pam.attention(x).mean(1).reshape(b, h, w), "channel": self.cam.attention(x).mean(1),
                "spatial_how": "PAM: attention each position receives, mean over queries",
                "channel_how": "CAM: attention each channel receives, mean over channels"}

    def init_identity(self) -> bool:
        with torch.no_grad():
            self.gamma_pam.zero_()
            self.gamma_cam.zero_()
        return True

    def attention_map_elements(self, h: int, w: int) -> int:
        """Elements of the attention working set of one training sample: 11 C N + 2 C^2 (PAM's q, k, v, output and
        gradients, q/k zero-padded to C on CPU; CAM's C x C energy and softmax). Measured forward+backward peak at
        80x80, C=128 (CPU fp32): 11.0 C N. The PAM (N x N) map is not stored."""
        return 11 * self.c * h * w + 2 * self.c * self.c
