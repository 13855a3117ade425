"""BiFormer: bi-level routing attention (BRA).

Zhu, Wang, Ke, Zhang, Lau, "BiFormer: Vision Transformer with Bi-Level Routing Attention", CVPR 2023,
arXiv:2303.08810. Official code: rayleizhu/BiFormer (``ops/bra_legacy.py``, ``BiLevelRoutingAttention``).

On a channels-last map zero-padded to multiples of S = n_win: S x S regions; q, k, v = Linear(C -> qk + qk + C).
Region level: mean q and mean k per region, affinity (q_r scale) k_r^T, the top-k regions of each region (routing
detached). Token level: every query of a region attends (multi-head softmax) to all tokens of its top-k regions. A
depthwise conv on V (LCE / LePE) is added, then Linear(C -> C), and the padding is cropped. scale = qk_dim^-0.5 (the
full qk_dim, as the official code). As a YOLO layer: y = x + BRA(LayerNorm(x)) (LayerNorm eps 1e-6).
Equal to the official code (golden test ``BiLevelRoutingAttention``); no forms.

Departures from the paper:
- The BiFormer block's pre-norm and residual are part of the module (BRA alone would replace the features); its
  MLP and 3x3 depthwise position conv are not. ``init_identity()`` zeroes the output Linear.
- Any H, W: always zero-padded (after the norm, as the official ``auto_pad``) and cropped back; padded tokens take
  part in routing and attention as in the official code.
- LCE kernel 5 (the official model configs; the official class default is 3). top-k clamps to n_win^2, heads to a
  divisor of C (``build_notes``). Token softmax in fp32.
- The token attention runs through ``scaled_dot_product_attention`` per region (official scale passed), and the
  routed regions are picked with ``index_select``, not a gather over the keys/values expanded P times: no
  (n_tok x topk n_tok) map and no P-times expanded gradient is stored. No einops.
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
    "indexed routing.",
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
        # (B, P, n_tok, qk + C) gradient instead of materialising the P-times expanded one (docs/benchmarks.md);
        # deterministic under CUDA deterministic mode, a plain Gather in ONNX
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
