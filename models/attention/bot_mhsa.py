"""BoTNet multi-head self-attention (MHSA) with 2-D relative position logits.

Srinivas, Lin, Parmar, Shlens, Abbeel, Vaswani, "Bottleneck Transformers for Visual Recognition",
CVPR 2021, arXiv:2101.11605. Official code: the authors' TensorFlow reference (botnet.py gist).

q, k, v = bias-free 1x1 projections C -> C, 4 heads of d = C/4; q is scaled by d^-0.5 first. logits = q . k +
q . (r_h + r_w), with r_h / r_w learned embeddings of the relative row / column offset between query and key, shared
by the heads; softmax over the N = H*W keys, out = attention . v. In BoTNet MHSA replaces the 3x3 conv of the
last-stage bottlenecks, so the layer has no residual. Equal to a torch port of the gist wherever rel_size >= max(H, W)
(golden tests ``BoTMHSA__11x7``, ``__6x10``), so there is no separate official form.

Departures from the paper:
- Relative embeddings are not sized to one feature map (BoTNet: (2H - 1) x d and (2W - 1) x d for a fixed H, W): each
  axis has 2 rel_size - 1 learned offsets (default rel_size 32), indexed by clamp(key - query, +-(rel_size - 1)).
  Exactly BoTNet's logits up to rel_size x rel_size (P5 of a 1024 input); beyond that offsets share the edge
  embedding (clipped relative positions, Shaw et al. 2018). Any H, W.
- Relative embeddings are initialised N(0, d^-0.5), as the reference intends (its code passes the std as the mean);
  projections keep PyTorch's default init.
- Softmax in fp32. Heads clamp to a divisor of C; ``heads``/``head``/``n_heads`` are old names of ``num_heads``.
- The relative logits are folded into the dot product: [q, l_h, l_w] . [k, onehot(x'), onehot(y')] = q.k +
  q.r_h[x' - x] + q.r_w[y' - y] exactly, and the forward runs ``scaled_dot_product_attention`` on these (width d + H +
  W, scale 1: q is already scaled), so no (N x N) logits are stored. On CPU small maps (up to 2^18 map elements, 22x22)
  keep the explicit form, which is faster there (``_sdpa.py``). Compute stays quadratic: P5 by default.
  ``attention_maps`` (heatmaps) builds the full map.
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import at_least_fp32, divisor_at_most
from models.attention._sdpa import explicit_is_faster, fused_attention
from models.registry.protocol import AttentionModule
from models.registry import register_attention


def _one_hot_rows_cols(h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H) and (N, W) one-hots of the row x' and column y' of every key position (row-major N = H*W), built
    from aranges so that they stay dynamic in ONNX."""
    ih = torch.arange(h, device=like.device)
    iw = torch.arange(w, device=like.device)
    rows = (ih[:, None] == ih[None, :]).to(like.dtype)[:, None, :].expand(h, w, h).reshape(h * w, h)
    cols = (iw[:, None] == iw[None, :]).to(like.dtype)[None, :, :].expand(h, w, w).reshape(h * w, w)
    return rows, cols


@register_attention(
    "BoTMHSA",
    category="self-attention",
    paper="Bottleneck Transformers for Visual Recognition",
    arxiv="2101.11605",
    year=2021,
    placement="p5",
    dense=True,
    notes="ODS/leaderj1001 MHSA use absolute position tables fixed to one H, W (misaligned or AssertionError "
    "elsewhere), biases and no d^-0.5 scaling; timm scales only the content logits. Here relative offsets clipped at "
    "rel_size, any H, W. Relative logits folded into q/k for SDPA: no N x N map.",
    renamed={"heads": "num_heads", "head": "num_heads", "n_heads": "num_heads"},
)
class BoTMHSA(AttentionModule):
    """softmax((q/sqrt(d)) . (k + r_rel)) v with 4 heads and clipped 2-D relative offsets."""

    def __init__(self, c1: int, num_heads: int = 4, rel_size: int = 32):
        super().__init__()
        self.heads = self.clamp("heads", num_heads, divisor_at_most(c1, num_heads), f"C={c1}")
        self.d = c1 // self.heads
        self.rel_size = int(rel_size)
        if self.rel_size < 1:
            raise ValueError(f"rel_size must be >= 1, got {rel_size}")
        self.qkv = nn.Conv2d(c1, 3 * c1, 1, bias=False)
        self.rel_h = nn.Parameter(torch.randn(2 * self.rel_size - 1, self.d) * self.d**-0.5)
        self.rel_w = nn.Parameter(torch.randn(2 * self.rel_size - 1, self.d) * self.d**-0.5)

    def _rel_table(self, table: torch.Tensor, n: int) -> torch.Tensor:
        """(n, n, d) embeddings of the offset key - query for one axis, clipped to the table."""
        i = torch.arange(n, device=table.device)
        off = (i[None, :] - i[:, None]).clamp(-(self.rel_size - 1), self.rel_size - 1) + (self.rel_size - 1)
        return table.index_select(0, off.flatten()).reshape(n, n, -1)  # index_select: deterministic backward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n, m = h * w, self.heads
        q, k, v = self._qkv(x)
        if explicit_is_faster(x, b * m, n, n, widths_differ=True):  # small maps on CPU, and export: the explicit map
            out = torch.matmul(self._softmax(q, k, h, w).to(v.dtype), v.transpose(2, 3))
        else:  # relative logits folded into q and k: no (N x N) logits, bias or softmax stored
            l_h, l_w = self._relative_logits(q, h, w)
            rows, cols = _one_hot_rows_cols(h, w, q)
            q_aug = torch.cat((q, l_h.reshape(b, m, n, h), l_w.reshape(b, m, n, w)), -1)  # (B, m, N, d + H + W)
            k_aug = torch.cat((k.transpose(2, 3), rows.expand(b, m, n, h), cols.expand(b, m, n, w)), -1)
            out = fused_attention(q_aug, k_aug, v.transpose(2, 3), 1.0)  # q is already scaled by d^-0.5
        return out.transpose(2, 3).reshape(b, c, h, w)  # (B, m, N, d) -> (B, C, H, W)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The attention each position receives, averaged over queries and heads: (B, H, W)."""
        b, _, h, w = x.shape
        return {"spatial": self._attention(x)[0].float().mean((1, 2)).reshape(b, h, w),
                "spatial_how": "attention each position receives, mean over queries and heads"}

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q scaled by d^-0.5 as (B, m, N, d); k and v as (B, m, d, N)."""
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(b, 3, self.heads, self.d, h * w).unbind(1)
        return q.transpose(2, 3) * self.d**-0.5, k, v

    def _relative_logits(self, q: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """q . r_h[x' - x] as (B, m, H, W, H') and q . r_w[y' - y] as (B, m, H, W, W')."""
        b, m, _, d = q.shape
        q5 = q.reshape(b, m, h, w, d)
        r_h = self._rel_table(self.rel_h, h).to(q.dtype)  # (H, H', d)
        r_w = self._rel_table(self.rel_w, w).to(q.dtype)  # (W, W', d)
        return torch.einsum("bmxyd,xkd->bmxyk", q5, r_h), torch.einsum("bmxyd,ykd->bmxyk", q5, r_w)

    def _softmax(self, q: torch.Tensor, k: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The explicit (B, m, N, N) softmax of q . k + relative logits, rows = queries."""
        b, m, n, _ = q.shape
        l_h, l_w = self._relative_logits(q, h, w)
        logits = torch.matmul(q, k) + (l_h[..., :, None] + l_w[..., None, :]).reshape(b, m, n, n)
        return at_least_fp32(logits).softmax(-1)

    def _attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(softmax attention (B, m, N, N), rows = queries; values (B, m, d, N)): the explicit map, for heatmaps."""
        q, k, v = self._qkv(x)
        return self._softmax(q, k, *x.shape[2:]).to(v.dtype), v

    def attention_map_elements(self, h: int, w: int) -> int:
        """Elements of the attention working set of one training sample: 9 heads N (d + H + W), the folded q and k
        (and, on CPU, v zero-padded to their width) with gradients; calibrated in docs/benchmarks.md. The (heads, N,
        N) map is not stored."""
        return 9 * self.heads * h * w * (self.d + h + w)
