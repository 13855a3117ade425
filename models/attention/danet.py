"""DANet: Dual Attention Network (position attention + channel attention).

Fu, Liu, Tian, Li, Bao, Fang, Lu, "Dual Attention Network for Scene Segmentation", CVPR 2019,
arXiv:1809.02983. Official code: junfu1115/DANet (``PAM_Module``, ``CAM_Module``).

Position attention (PAM): Q, K = biased 1x1 convs C -> C/8, V = biased 1x1 conv C -> C; S = softmax over keys of
Q^T K (N x N, N = H*W); O_pam = V S^T. Channel attention (CAM): A = x as (B, C, N), E = A A^T (C x C), attention
softmax(rowmax(E) - E) in the official code (the paper prints softmax(E)), O_cam = attention A. The branches run in
parallel on the same input and are summed as in the paper's head, with one identity:
y = x + gamma O_pam + beta O_cam, gamma = beta = 0 at init (an identity). Equal to the official modules composed so
(golden test ``DANet``); no forms.

Departures from the paper:
- No 3x3 conv + BN + ReLU around each branch (they belong to the segmentation head).
- CAM uses the official ``rowmax(E) - E`` by default (``cam_form="official"``; the authors kept it, DANet issues
  #9/#48); ``cam_form="paper"`` gives softmax(E).
- PAM logits and the whole CAM energy/softmax are computed in fp32 with autocast off (E sums N products and overflows
  fp16), then cast back.
- Q/K width ``max(C // reduction, min(min_channels, C))``, ``min_channels=1``: exactly C // 8, never 0.
- PAM runs through ``scaled_dot_product_attention`` (one head, scale 1), so its N x N map is not stored; on CPU maps
  of up to 2^22 elements (45x45) keep the explicit form, which is faster there (``_sdpa.py``). Compute stays
  quadratic (N^2 (C/8 + C) multiply-adds): P5 by default. ``attention_maps`` (heatmaps) builds the full map.
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
    "PAM via SDPA: no N x N map stored.",
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
        gradients, q/k zero-padded to C on CPU; CAM's C x C energy and softmax), calibrated in docs/benchmarks.md. The
        PAM (N x N) map is not stored."""
        return 11 * self.c * h * w + 2 * self.c * self.c
