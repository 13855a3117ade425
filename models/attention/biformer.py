"""BiFormer: bi-level routing attention (BRA).

Zhu, Wang, Ke, Zhang, Lau, "BiFormer: Vision Transformer with Bi-Level Routing Attention", CVPR 2023,
arXiv:2303.08810. Official code: rayleizhu/BiFormer (``ops/bra_legacy.py``, ``BiLevelRoutingAttention``).

BRA on a channels-last map: pad H and W with zeros up to multiples of S = n_win and split into S x S
regions of (H/S)(W/S) tokens; q, k, v = Linear(C -> qk + qk + C). Region level: mean q and mean k per
region, region affinity (q_r * scale) k_r^T, keep the top-k regions per region (routing is not
differentiated: q_r, k_r are detached). Token level: every query of a region attends (multi-head,
softmax over keys) to all tokens of its top-k regions, gathered from K and V. A depthwise conv on V
(local context enhancement, LCE / LePE) is added, then Linear(C -> C) and the padding is cropped.
scale = qk_dim^-0.5 (the official code uses the full qk_dim, not the head dim).

As a YOLO layer this module is the BiFormer block's attention sub-layer: y = x + BRA(LayerNorm(x))
(pre-norm residual, LayerNorm eps 1e-6 as in the BiFormer blocks).

Departures from the paper:
- The pre-norm and residual of the BiFormer block are part of this module (the BRA operator alone is
  not shape-safe as a drop-in: it would replace the features); the block's MLP and its 3x3 depthwise
  position conv are not included. ``init_identity()`` zeroes the output Linear (exact identity).
- Any H, W: the map is always zero-padded (after the norm, before the q/k/v projection, as the official
  ``auto_pad``) to the next multiples of n_win and the output is cropped back. Padded tokens take part
  in routing and attention as in the official code; on tiny maps (e.g. 1x1 -> 7x7 regions of one token)
  most regions are padding.
- LCE kernel 5 (the paper / official model configs; the class default of the official file is 3).
- top-k is clamped to n_win^2; heads are clamped to a divisor of C (see ``build_notes``).
- The token softmax is evaluated in fp32 and cast back (``model.half()`` safety).
- Plain ``reshape``/``permute``/``index_select`` instead of einops (no extra dependency).

Memory (issue 15): the token-level attention of every region runs through ``scaled_dot_product_attention``
(queries (B*P, heads, n_tok, dq), the routed keys/values (B*P, heads, topk*n_tok, dq/dv), scale qk_dim^-0.5
passed: the official full-width scale, not SDPA's default dq^-0.5), so the (n_tok x topk*n_tok) maps are not
stored; and the routed regions are picked by ``index_select`` instead of a gather over the key/values expanded
P times, whose backward materialised a (B, P, P, n_tok, qk + C) gradient. Measured on CPU (1 thread, batch 1),
before -> now: 80x80, C=128: forward peak 296 -> 58 MiB, forward+backward 740 -> 96 MiB, time 0.31x / 0.29x;
20x20, C=512: 190 -> 29 MiB forward+backward, 0.82x / 0.41x. Verified against the official code
(tests/fixtures/golden/BiLevelRoutingAttention.npz): max |diff| 1.3e-15 in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import divisor_at_most
from models.attention._sdpa import attend
from models.registry.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "BiLevelRoutingAttention",
    category="sparse self-attention",
    paper="BiFormer: Vision Transformer with Bi-Level Routing Attention",
    arxiv="2303.08810",
    year=2023,
    placement="backbone_end",
    dense=False,
    notes="ODS wraps the official op for NCHW without norm/residual and with auto_pad off by default "
    "(asserts H, W divisible by n_win); here: pre-norm residual, always pads and crops. SDPA per region and "
    "indexed routing: P3 80x80 C=128 fwd+bwd 740 -> 96 MiB.",
    renamed={"heads": "num_heads", "head": "num_heads", "n_heads": "num_heads"},
)
class BiLevelRoutingAttention(AttentionModule):
    """x + BRA(LN(x)): n_win 7, 8 heads, top-4 regions, qk_dim = C, LCE 5x5."""

    def __init__(self, c1: int, n_win: int = 7, num_heads: int = 8, topk: int = 4, qk_dim: int | None = None,
                 side_dwconv: int = 5, diff_routing: bool = False):
        super().__init__()
        self.qk_dim = int(qk_dim or c1)
        heads = divisor_at_most(c1, num_heads)
        while self.qk_dim % heads:
            heads -= 1
        self.heads = self.clamp("heads", num_heads, heads, f"C={c1}, qk_dim={self.qk_dim}")
        self.n_win = int(n_win)
        self.topk = self.clamp("topk", topk, min(int(topk), self.n_win**2), f"n_win={n_win}")
        self.diff_routing = bool(diff_routing)
        self.scale = self.qk_dim**-0.5
        self.norm = nn.LayerNorm(c1, eps=1e-6)
        self.qkv = nn.Linear(c1, 2 * self.qk_dim + c1)
        self.lepe = nn.Conv2d(c1, c1, side_dwconv, padding=side_dwconv // 2, groups=c1)
        self.wo = nn.Linear(c1, c1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s, m, qk = self.n_win, self.heads, self.qk_dim
        t = self.norm(x.permute(0, 2, 3, 1))  # (B, H, W, C)
        t = F.pad(t, (0, 0, 0, (s - w % s) % s, 0, (s - h % s) % s))
        hp, wp = t.shape[1], t.shape[2]
        rh, rw = hp // s, wp // s
        q, k, v = self.qkv(t).split([qk, qk, c], -1)
        lepe = self.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, Hp, Wp, C)

        def regions(z: torch.Tensor) -> torch.Tensor:  # (B, Hp, Wp, D) -> (B, S*S, rh*rw, D)
            z = z.reshape(b, s, rh, s, rw, z.shape[-1]).permute(0, 1, 3, 2, 4, 5)
            return z.reshape(b, s * s, rh * rw, z.shape[-1])

        q, k, v = regions(q), regions(k), regions(v)
        n_tok = q.shape[2]
        # region-to-region routing
        q_win, k_win = q.mean(2), k.mean(2)  # (B, P, qk)
        if not self.diff_routing:
            q_win, k_win = q_win.detach(), k_win.detach()
        route = torch.matmul(q_win * self.scale, k_win.transpose(-1, -2))  # (B, P, P)
        idx = route.topk(self.topk, -1).indices  # (B, P, topk)
        # the key/value tokens of the routed regions, picked with index_select over a flat (batch, region) index: the
        # same values as a gather over kv expanded to (B, P, P, n_tok, qk + C), but its backward accumulates into a
        # (B, P, n_tok, qk + C) gradient instead of materialising the P-times expanded one (338 of 740 MiB at P3
        # 80x80, C=128); deterministic under CUDA deterministic mode, a plain Gather in ONNX
        kv = torch.cat((k, v), -1)  # (B, P, n_tok, qk + C)
        p, ckv = kv.shape[1], kv.shape[-1]
        flat = (torch.arange(b, device=x.device)[:, None, None] * p + idx).flatten()  # (B * P * topk,)
        kv = kv.reshape(b * p, n_tok, ckv).index_select(0, flat).reshape(b, p, self.topk, n_tok, ckv)
        k_sel, v_sel = kv.split([qk, c], -1)
        # token-to-token attention inside the routed regions, per head, without storing the maps
        nk = self.topk * n_tok
        qh = q.reshape(b * p, n_tok, m, qk // m).transpose(1, 2)  # (B*P, m, n_tok, dq)
        kh = k_sel.reshape(b * p, nk, m, qk // m).transpose(1, 2)  # (B*P, m, topk*n_tok, dq)
        vh = v_sel.reshape(b * p, nk, m, c // m).transpose(1, 2)  # (B*P, m, topk*n_tok, dv)
        # (B*P, m, n_tok, dv); scale qk_dim^-0.5 (the official full width), not SDPA's default dq^-0.5
        out = attend(qh, kh, vh, self.scale, self.qk_dim != self.wo.in_features)
        out = out.reshape(b, p, m, n_tok, c // m)
        out = out.transpose(2, 3).reshape(b, s, s, rh, rw, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        out = self.wo(out + lepe)[:, :h, :w]
        return x + out.permute(0, 3, 1, 2)

    def init_identity(self) -> bool:
        with torch.no_grad():
            self.wo.weight.zero_()
            self.wo.bias.zero_()
        return True
