"""Focused Linear Attention (FLatten Transformer): the attention sub-layer of a FLatten-PVT block.

Han, Pan, Han, Song, Huang, "FLatten Transformer: Vision Transformer using Focused Linear Attention", ICCV 2023,
arXiv:2308.00442. Official code: LeapLabTHU/FLatten-Transformer (``models/flatten_pvt.py``,
``FocusedLinearAttention``).

Tokens t = LN(x); q, k, v = linear projections of t (bias); a learned position encoding P is added to k. The
focused mapping (p = ``focusing_factor``, s = softplus of a learned per-channel scale, powers element-wise):

    phi(u) = ||u'|| * u'^p / ||u'^p||,   u' = (ReLU(u) + 1e-6) / s         (norms over the C channels)
    O_h = phi(q)_h (phi(k)_h^T V_h / N) / (phi(q)_h . mean_n phi(k)_h + 1e-6) + DWC(V_h)     per head h

DWC is a depthwise k x k conv (k = 5) of each head's V, shared by the heads (the "rank restoration" module).
y = x + proj(O): the FLatten-PVT block's attention half (pre-norm LayerNorm, eps 1e-6, and the residual are inside
this module; its MLP is not). Cost O(N d^2) per head: a linear attention, not dense.

Departures from the paper / official code:
- Any H, W: the official P is one vector per token of the map the model was built for (``num_patches``), so the code
  runs at that size only. Here P is a ``pos_size`` x ``pos_size`` grid of vectors resized bilinearly to H x W
  (exact at H = W = pos_size, where it equals the official code; golden fixture). ``pos_size=0`` drops P.
- phi and the normalised sums are computed in float32 for fp16/bf16 inputs (u'^3 and its norm overflow fp16, and
  phi(q) . mean phi(k) underflows to 0, making 1 / (0 + 1e-6) overflow); the output is cast back. The sums are the
  official ones after its 2024 numerical fix (means over N).
- The PVT spatial reduction of k, v (sr_ratio > 1) is not offered: FLatten-PVT uses sr_ratio 1 in its linear
  attention layers. Heads clamp to a divisor of C (noted in ``build_notes``).

Verified against the official class at its own size (tests/fixtures/golden/FocusedLinearAttention.npz).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import at_least_fp32, autocast_off, divisor_at_most
from models.attention._resize import bilinear_matrix
from models.registry.protocol import AttentionModule
from models.registry import register_attention


def focused(u: torch.Tensor, scale: torch.Tensor, p: float) -> torch.Tensor:
    """FLatten's focused feature map over the last axis, in at least float32 (call with autocast off)."""
    u = at_least_fp32(u)
    f = (F.relu(u) + 1e-6) / scale.to(u.dtype)
    fp = f**p
    return fp / fp.norm(dim=-1, keepdim=True) * f.norm(dim=-1, keepdim=True)


@register_attention(
    "FocusedLinearAttention",
    category="linear attention",
    paper="FLatten Transformer: Vision Transformer using Focused Linear Attention",
    arxiv="2308.00442",
    year=2023,
    placement="backbone_end",
    notes="Official/ports add a position encoding sized to one map (num_patches or window^2 tokens: fails on any "
    "other H, W); older copies use the pre-2024 einops sums. Here: the encoding is a 7x7 grid resized bilinearly "
    "to H x W (exact at its own size), focused map in fp32, pre-norm residual.",
    renamed={"heads": "num_heads", "n_heads": "num_heads"},
)
class FocusedLinearAttention(AttentionModule):
    """x + proj(FocusedLinearAttention(LN(x))): 8 heads, focusing factor 3, 5 x 5 DWC, 7 x 7 position grid."""

    def __init__(self, c1: int, num_heads: int = 8, focusing_factor: float = 3, kernel_size: int = 5,
                 pos_size: int = 7, qkv_bias: bool = True):
        super().__init__()
        self.heads = self.clamp("heads", num_heads, divisor_at_most(c1, num_heads), f"C={c1}")
        self.d = c1 // self.heads
        if kernel_size % 2 == 0 or pos_size < 0:
            raise ValueError(f"FocusedLinearAttention: odd kernel_size and pos_size >= 0, got {kernel_size}, "
                             f"{pos_size}")
        self.focusing_factor = focusing_factor
        self.norm = nn.LayerNorm(c1, eps=1e-6)
        self.q = nn.Linear(c1, c1, bias=qkv_bias)
        self.kv = nn.Linear(c1, 2 * c1, bias=qkv_bias)
        self.proj = nn.Linear(c1, c1)
        self.dwc = nn.Conv2d(self.d, self.d, kernel_size, padding=kernel_size // 2, groups=self.d)
        self.scale = nn.Parameter(torch.zeros(1, 1, c1))
        self.pos_size = int(pos_size)
        self.positional_encoding = nn.Parameter(torch.zeros(1, self.pos_size**2, c1)) if self.pos_size else None

    def _position(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """(1, H * W, C) position encoding: the pos_size^2 grid resized bilinearly to H x W."""
        s = self.pos_size
        f = torch.empty((), dtype=torch.promote_types(like.dtype, torch.float32), device=like.device)
        grid = self.positional_encoding.to(f.dtype).reshape(s, s, -1)
        out = torch.einsum("ys,xt,stc->yxc", bilinear_matrix(h, s, f), bilinear_matrix(w, s, f), grid)
        return out.reshape(1, h * w, -1).to(like.dtype)

    def _features(self, x: torch.Tensor):
        """Focused q, k as heads (B, m, N, d) in at least float32, and v as heads (input dtype)."""
        b, c, h, w = x.shape
        t = self.norm(x.permute(0, 2, 3, 1)).reshape(b, h * w, c)
        q = self.q(t)
        k, v = self.kv(t).chunk(2, -1)
        if self.positional_encoding is not None:
            k = k + self._position(h, w, k)
        with autocast_off(x):  # phi and everything normalised by it in float32 (fp16 overflows/underflows there)
            scale = F.softplus(at_least_fp32(self.scale))
            q, k = focused(q, scale, self.focusing_factor), focused(k, scale, self.focusing_factor)

        def heads(u: torch.Tensor) -> torch.Tensor:
            return u.reshape(b, h * w, self.heads, self.d).transpose(1, 2)

        return heads(q), heads(k), heads(v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h * w
        q, k, v = self._features(x)
        with autocast_off(x):  # q . mean(k) underflows fp16 where phi(q), phi(k) barely overlap: 1 / 1e-6 = inf
            z = 1 / (torch.matmul(q, k.mean(2, keepdim=True).transpose(-1, -2)) + 1e-6)  # (B, m, N, 1)
            kv = torch.matmul(k.transpose(-1, -2) * n**-0.5, at_least_fp32(v) * n**-0.5)  # (B, m, d, d)
            out = (torch.matmul(q, kv) * z).to(v.dtype)
        out = out.transpose(1, 2).reshape(b, n, c)
        rank = self.dwc(v.reshape(b * self.heads, h, w, self.d).permute(0, 3, 1, 2))  # (B*m, d, H, W)
        out = out + rank.reshape(b, c, n).transpose(1, 2)
        return x + self.proj(out).transpose(1, 2).reshape(b, c, h, w)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The attention each position receives, phi(q) phi(k)^T normalised per query, mean over queries and heads
        (computed as phi(k) . mean of the normalised queries, never as an N x N map)."""
        b, _, h, w = x.shape
        q, k, _ = self._features(x)
        z = 1 / (torch.matmul(q, k.mean(2, keepdim=True).transpose(-1, -2)) + 1e-6) / (h * w)
        q_mean = (q * z).mean(2, keepdim=True)  # (B, m, 1, d)
        received = torch.matmul(q_mean, k.transpose(-1, -2)).squeeze(2)  # (B, m, N)
        return {"spatial": received.mean(1).reshape(b, h, w),
                "spatial_how": "focused linear attention each position receives, mean over queries and heads"}

    def init_identity(self) -> bool:
        """Zero the output projection: the module then computes exactly x."""
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        return True

    def attention_map_elements(self, h: int, w: int) -> int:
        """The per-head d x d key-value summaries of one sample (no N x N map)."""
        return self.heads * self.d * self.d
