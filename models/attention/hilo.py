"""HiLo attention (LITv2).

Pan, Cai, Zhuang, "Fast Vision Transformers with HiLo Attention", NeurIPS 2022, arXiv:2205.13213.
Official code: ziplab/LITv2 (``detection/mmdet/models/backbones/litv2.py``, ``HiLo``; the same class without padding
in ``hilo.py`` and ``classification/models/attentions.py``).

The heads are split in two groups: (1 - alpha) of them, Hi-Fi, attend inside each non-overlapping s x s window
(s = ``window_size``; local, high frequencies); alpha of them, Lo-Fi, attend from every pixel to the s x s
average-pooled map (global, low frequencies):

    Hi-Fi = proj_h(softmax(q_h k_h^T / sqrt(d)) v_h)   inside each window; q_h, k_h, v_h = Linear(C -> 3 C_h)(X)
    Lo-Fi = proj_l(softmax(q_l k_l^T / sqrt(d)) v_l)   q_l = Linear(C -> C_l)(X), k_l, v_l = Linear(C -> 2 C_l)(P)
    P = AvgPool_s(X)
    HiLo(X) = concat(Hi-Fi, Lo-Fi)                      (C_h = heads_h d, C_l = heads_l d, d = C / heads)

s = 1 is plain multi-head self-attention (all heads Lo-Fi, no pooling), as in the official code. As a YOLO layer
this module is the LITv2 block's attention sub-layer: y = x + HiLo(LayerNorm(x)) (pre-norm residual).

Defaults are the paper's LITv2 models: alpha 0.9, s = 2, q/k/v bias; 8 heads (head width 32 at C = 256, as LITv2).

Departures from the official code:
- The pre-norm and residual of the LITv2 block are part of this module (its ConvFFN is not); ``init_identity()``
  zeroes both output projections (exact identity).
- Any H, W: the normalised map is zero-padded at the bottom/right to multiples of s and the output cropped, as the
  official detection backbone does (padded pixels enter the pooled keys and the windows, as there).
- Heads clamp to a divisor of C (``build_notes``); heads_l = int(heads * alpha) as in the official code.
- Both attentions run through ``scaled_dot_product_attention`` (``models/attention/_sdpa.py``): the Lo-Fi
  (N x N / s^2) map is never stored. The pooling is a reshape-mean (deterministic, exportable).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import divisor_at_most
from models.attention._sdpa import fused_attention
from models.registry.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "HiLo",
    category="self-attention",
    paper="Fast Vision Transformers with HiLo Attention",
    arxiv="2205.13213",
    year=2022,
    placement="p5",
    dense=True,
    notes="Blog/plug-and-play ports copy hilo.py ((B, N, C) tokens, alpha 0.5, no qkv bias, no padding: H, W must be "
    "multiples of the window) without the block's norm and residual; here: the detection code's padding, pre-norm "
    "residual, the paper's alpha 0.9 and qkv bias. Lo-Fi (N x N/s^2) through SDPA, never stored.",
    renamed={"heads": "num_heads", "head": "num_heads", "n_heads": "num_heads"},
)
class HiLo(AttentionModule):
    """x + HiLo(LN(x)): 8 heads, alpha 0.9 of them Lo-Fi (global, pooled keys), the rest Hi-Fi in 2x2 windows."""

    def __init__(self, c1: int, num_heads: int = 8, window_size: int = 2, alpha: float = 0.9, qkv_bias: bool = True):
        super().__init__()
        if window_size < 1 or not 0 <= alpha <= 1:
            raise ValueError(f"HiLo needs window_size >= 1 and 0 <= alpha <= 1, got {window_size}, {alpha}")
        heads = self.clamp("heads", num_heads, divisor_at_most(c1, num_heads), f"C={c1}")
        self.d = c1 // heads
        self.ws = int(window_size)
        self.l_heads = heads if self.ws == 1 else int(heads * alpha)
        self.h_heads = heads - self.l_heads
        self.scale = self.d**-0.5
        self.norm = nn.LayerNorm(c1)
        l_dim, h_dim = self.l_heads * self.d, self.h_heads * self.d
        if self.l_heads:
            self.l_q = nn.Linear(c1, l_dim, bias=qkv_bias)
            self.l_kv = nn.Linear(c1, 2 * l_dim, bias=qkv_bias)
            self.l_proj = nn.Linear(l_dim, l_dim)
        if self.h_heads:
            self.h_qkv = nn.Linear(c1, 3 * h_dim, bias=qkv_bias)
            self.h_proj = nn.Linear(h_dim, h_dim)

    def _hifi(self, t: torch.Tensor) -> torch.Tensor:
        """Attention inside each s x s window of t (B, Hp, Wp, C) -> (B, Hp, Wp, C_h)."""
        b, hp, wp, _ = t.shape
        s, m, d = self.ws, self.h_heads, self.d
        nh, nw = hp // s, wp // s
        qkv = self.h_qkv(t).reshape(b, nh, s, nw, s, 3, m, d).permute(5, 0, 1, 3, 6, 2, 4, 7)
        q, k, v = qkv.reshape(3, b * nh * nw, m, s * s, d).unbind(0)
        out = fused_attention(q, k, v, self.scale)  # (B * windows, m, s * s, d)
        out = out.reshape(b, nh, nw, m, s, s, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, hp, wp, m * d)
        return self.h_proj(out)

    def _lofi(self, t: torch.Tensor) -> torch.Tensor:
        """Every pixel of t (B, Hp, Wp, C) attends to the s x s average-pooled map -> (B, Hp, Wp, C_l)."""
        b, hp, wp, c = t.shape
        s, m, d = self.ws, self.l_heads, self.d
        q = self.l_q(t).reshape(b, hp * wp, m, d).transpose(1, 2)
        if s > 1:
            t = t.reshape(b, hp // s, s, wp // s, s, c).mean((2, 4))
        k, v = self.l_kv(t).reshape(b, -1, 2, m, d).permute(2, 0, 3, 1, 4).unbind(0)
        out = fused_attention(q, k, v, self.scale)  # (B, m, Hp * Wp, d): the (N x N / s^2) map is not stored
        return self.l_proj(out.transpose(1, 2).reshape(b, hp, wp, m * d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        s = self.ws
        t = self.norm(x.permute(0, 2, 3, 1))
        t = F.pad(t, (0, 0, 0, (s - w % s) % s, 0, (s - h % s) % s))
        parts = ([self._hifi(t)] if self.h_heads else []) + ([self._lofi(t)] if self.l_heads else [])
        out = torch.cat(parts, -1) if len(parts) > 1 else parts[0]
        return x + out[:, :h, :w].permute(0, 3, 1, 2)

    def init_identity(self) -> bool:
        """Zero both output projections: y = x exactly."""
        with torch.no_grad():
            for proj in (getattr(self, "h_proj", None), getattr(self, "l_proj", None)):
                if proj is not None:
                    proj.weight.zero_()
                    proj.bias.zero_()
        return True

    def attention_map_elements(self, h: int, w: int) -> int:
        """Elements of the attention working set of one training sample: 11 C N (norm, padded map, q/k/v of both
        groups, outputs and gradients), calibrated in docs/benchmarks.md. The (heads_l, N, N / s^2) map is not
        stored."""
        return 11 * self.norm.normalized_shape[0] * h * w
