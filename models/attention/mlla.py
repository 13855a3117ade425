"""MLLA: the Mamba-like linear attention block's token mixer (linear attention with RoPE and LePE).

Han, Wang, Xia, Han, Pu, Ge, Song, Song, Zheng, Huang, "Demystify Mamba in Vision: A Linear Attention Perspective",
NeurIPS 2024, arXiv:2405.16605. Official code: LeapLabTHU/MLLA (``models/mlla.py`` for classification,
``downstream/detection/mmdet/models/backbones/mlla.py`` for detection; ``MLLABlock``, ``LinearAttention``, ``RoPE``).

The MLLA block arranges linear attention like a Mamba block (an input gate, a depthwise conv before the token mixer,
no scan). With dw3(.) depthwise 3 x 3 convs (bias) and linear layers with bias:

    x = x + CPE_1(x);  t = LN(x)
    a = dw3(W_in t) -> SiLU;   g = SiLU(W_act t)                          (the Mamba-style branch and gate)
    q, k = ELU(W_qk a) + 1;    q~, k~ = RoPE(q), RoPE(k)                  (2-D rotary position, any H, W)
    O_h = q~_h (k~_h^T a_h / N) / (q_h . mean_n k_h + 1e-6) + LePE(a)     per head h (v = a itself)
    x = x + W_out(O * g);  y = x + CPE_2(x)

RoPE rotates channel pairs (2i, 2i+1) by y * theta_i for the first C/4 pairs and x * theta_i for the next C/4
(theta_i = base^(-i / (C/4)), base 10^4), over the whole C before the heads split. This module is the block's first
half (its FFN is not part): the conditional position encodings CPE_1, CPE_2, the pre-norm LayerNorm and the residual
are inside. Linear attention: cost O(N d^2) per head, not dense.

Departures from the paper / official code:
- Any H, W: the classification code's RoPE table is built for one resolution and its attention assumes a square
  map; the rotation here is computed from the map's own size, as the official detection code does (golden fixture).
- RoPE and the normalised sums are computed in float32 for fp16/bf16 inputs and cast back (q . mean k can underflow
  fp16, making 1 / (0 + 1e-6) overflow; the official code casts only the RoPE to float32, which then fails to
  multiply fp16 values).
- C not a multiple of 4 (the official code requires it): the channels past the last full group of 4 are not rotated.
  Heads clamp to a divisor of C (noted in ``build_notes``).
- ``init_identity()`` zeroes both CPE convs and the output projection (the CPEs are residual branches of their own).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import at_least_fp32, autocast_off, divisor_at_most
from models.registry.protocol import AttentionModule
from models.registry import register_attention


def rope_2d(t: torch.Tensor, h: int, w: int, base: float = 10000.0, channels: int | None = None) -> torch.Tensor:
    """2-D rotary position embedding of tokens t (B, H*W, C) on an h x w map (row-major), in t's dtype (the angles
    and their cos/sin in float32).

    Pairs (2i, 2i+1), i < C/4: rotated by row * theta_i; C/4 <= i < C/2: by column * theta_(i - C/4); theta_i =
    base^(-i / (C/4)); channels past 4 * (C // 4) are left as they are. ``channels``: C as a Python int (a module
    passes its own, so that no traced shape decides a branch while exporting).
    """
    c = t.shape[-1] if channels is None else channels
    k_max = c // 4
    if k_max == 0:
        return t
    # angles in float32 whatever t's dtype, as the official code computes them
    theta = 1 / base ** (torch.arange(k_max, device=t.device, dtype=torch.float32) / k_max)
    rows = torch.arange(h, device=t.device, dtype=torch.float32)[:, None, None] * theta  # (H, 1, k)
    cols = torch.arange(w, device=t.device, dtype=torch.float32)[None, :, None] * theta  # (1, W, k)
    angles = torch.cat((rows.expand(h, w, k_max), cols.expand(h, w, k_max)), -1).reshape(h * w, 2 * k_max)
    cos, sin = angles.cos().to(t.dtype), angles.sin().to(t.dtype)
    pairs = t[..., : 4 * k_max].unflatten(-1, (2 * k_max, 2))
    exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    if exporting or t.dtype not in (torch.float32, torch.float64):  # ONNX has no complex numbers
        re, im = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack((re * cos - im * sin, re * sin + im * cos), -1).flatten(-2)
    else:  # one complex product: 3-4x faster forward+backward on CPU than the real form, same values
        rotated = torch.view_as_real(torch.view_as_complex(pairs.contiguous()) * torch.complex(cos, sin)).flatten(-2)
    return rotated if 4 * k_max == c else torch.cat((rotated, t[..., 4 * k_max:]), -1)


@register_attention(
    "MLLA",
    category="linear attention",
    paper="Demystify Mamba in Vision: A Linear Attention Perspective",
    arxiv="2405.16605",
    year=2024,
    placement="backbone_end",
    notes="Ports ('MLLAttention') paste the classification LinearAttention alone (RoPE table for one input_resolution, "
    "square maps only, no input gate, CPEs or residual). Here: the MLLA block's mixer half with RoPE for any H, W "
    "as in the official detection code; sums in fp32.",
    renamed={"heads": "num_heads"},
)
class MLLA(AttentionModule):
    """x + CPE; x + W_out(LinearAttention_RoPE_LePE(SiLU(dw3(W_in LN(x)))) * SiLU(W_act LN(x))); + CPE: 8 heads."""

    def __init__(self, c1: int, num_heads: int = 8, qkv_bias: bool = True, rope_base: float = 10000.0):
        super().__init__()
        self.heads = self.clamp("heads", num_heads, divisor_at_most(c1, num_heads), f"C={c1}")
        self.d = c1 // self.heads
        self.channels = int(c1)
        self.rope_base = float(rope_base)
        self.cpe1 = nn.Conv2d(c1, c1, 3, padding=1, groups=c1)
        self.norm1 = nn.LayerNorm(c1)
        self.in_proj = nn.Linear(c1, c1)
        self.act_proj = nn.Linear(c1, c1)
        self.dwc = nn.Conv2d(c1, c1, 3, padding=1, groups=c1)
        self.qk = nn.Linear(c1, 2 * c1, bias=qkv_bias)
        self.lepe = nn.Conv2d(c1, c1, 3, padding=1, groups=c1)
        self.out_proj = nn.Linear(c1, c1)
        self.cpe2 = nn.Conv2d(c1, c1, 3, padding=1, groups=c1)

    def _mixer_inputs(self, x: torch.Tensor):
        """(gate g (B, N, C), attention input a as tokens (B, N, C) and as a map (B, C, H, W), x after CPE_1)."""
        b, c, h, w = x.shape
        x = x + self.cpe1(x)
        t = self.norm1(x.permute(0, 2, 3, 1))  # (B, H, W, C)
        gate = F.silu(self.act_proj(t)).reshape(b, h * w, c)
        a_map = F.silu(self.dwc(self.in_proj(t).permute(0, 3, 1, 2)))  # (B, C, H, W)
        return gate, a_map.flatten(2).transpose(1, 2), a_map, x

    def _qk(self, qk: torch.Tensor, h: int, w: int):
        """q, k (ELU + 1) and their rotated versions as float32 heads (B, m, N, d), from the projection W_qk a."""
        b, n, _ = qk.shape
        q, k = (F.elu(at_least_fp32(u)) + 1.0 for u in qk.chunk(2, -1))

        def heads(u: torch.Tensor) -> torch.Tensor:
            return u.reshape(b, n, self.heads, self.d).transpose(1, 2)

        q_rope = rope_2d(q, h, w, self.rope_base, self.channels)
        k_rope = rope_2d(k, h, w, self.rope_base, self.channels)
        return heads(q), heads(k), heads(q_rope), heads(k_rope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h * w
        gate, a, a_map, x = self._mixer_inputs(x)
        qk = self.qk(a)
        with autocast_off(x):  # RoPE and the normalised sums in float32 (fp16 underflows q . mean k)
            q, k, q_rope, k_rope = self._qk(qk, h, w)
            v = at_least_fp32(a).reshape(b, n, self.heads, self.d).transpose(1, 2)
            z = 1 / (torch.matmul(q, k.mean(2, keepdim=True).transpose(-1, -2)) + 1e-6)  # (B, m, N, 1)
            kv = torch.matmul(k_rope.transpose(-1, -2) * n**-0.5, v * n**-0.5)  # (B, m, d, d)
            out = (torch.matmul(q_rope, kv) * z).to(a.dtype).transpose(1, 2).reshape(b, n, c)
        out = out + self.lepe(a_map).flatten(2).transpose(1, 2)
        x = x + self.out_proj(out * gate).transpose(1, 2).reshape(b, c, h, w)
        return x + self.cpe2(x)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The attention each position receives, (q~_i . k~_j) z_i / N averaged over queries and heads (from the
        mean normalised query; no N x N map). RoPE terms can make single weights negative."""
        b, _, h, w = x.shape
        _, a, _, _ = self._mixer_inputs(x)
        qk = self.qk(a)
        with autocast_off(x):
            q, k, q_rope, k_rope = self._qk(qk, h, w)
            z = 1 / (torch.matmul(q, k.mean(2, keepdim=True).transpose(-1, -2)) + 1e-6) / (h * w)
            received = torch.matmul((q_rope * z).mean(2, keepdim=True), k_rope.transpose(-1, -2)).squeeze(2)
        return {"spatial": received.mean(1).reshape(b, h, w),
                "spatial_how": "linear attention each position receives (RoPE), mean over queries and heads"}

    def init_identity(self) -> bool:
        """Zero CPE_1, CPE_2 and the output projection: the module then computes exactly x."""
        for layer in (self.cpe1, self.cpe2, self.out_proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        return True

    def attention_map_elements(self, h: int, w: int) -> int:
        """The per-head d x d key-value summaries of one sample (no N x N map)."""
        return self.heads * self.d * self.d
