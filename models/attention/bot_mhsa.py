"""BoTNet multi-head self-attention (MHSA) with 2-D relative position logits.

Srinivas, Lin, Parmar, Shlens, Abbeel, Vaswani, "Bottleneck Transformers for Visual Recognition",
CVPR 2021, arXiv:2101.11605. Official code: the authors' TensorFlow reference (botnet.py gist).

q, k, v = bias-free 1x1 projections C -> C split into 4 heads of d = C/4. q is scaled by d^-0.5 first, then
logits = q . k (content-content) + q . (r_h + r_w) (content-position), where r_h / r_w are learned
embeddings of the *relative* row / column offset between query and key, shared by the heads. Softmax over
the N = H*W keys, out = attention . v, heads folded back to C channels. In BoTNet, MHSA replaces the 3x3
conv of the last-stage bottlenecks, so the layer itself has no residual.

Departures from the paper:
- Relative embeddings without a table sized to the feature map: BoTNet allocates (2H - 1) x d and
  (2W - 1) x d embeddings for one fixed H, W. Here each axis has one table of 2 * rel_size - 1 learned
  offsets (default rel_size 32), indexed at run time by clamp(key - query, +-(rel_size - 1)): exactly the
  BoTNet relative logits for maps up to rel_size x rel_size (P5 of a 1024 input), and offsets beyond that
  share the edge embedding (clipped relative positions, Shaw et al. 2018). Works for any H, W
  (stride probe 8x8, rect 20x12) without slicing or interpolation.
- Relative embeddings are initialised N(0, d^-0.5) as the reference intends (its code passes the std as
  the mean); projections use PyTorch's default init.
- The softmax is evaluated in fp32 and cast back (``model.half()`` safety). Heads clamp to a divisor of C (noted
  in ``build_notes``); the count is ``num_heads`` as in every module with heads (``heads``, ``head``, ``n_heads`` are
  accepted in YAML rows).

Where popular ports differ: ODS / leaderj1001 use *absolute* learned tables fixed to the constructor's
H, W (silently misaligned on smaller maps, AssertionError on larger ones), add biases and omit the
d^-0.5 scaling; timm scales only the content logits.

Dense: builds a (B, heads, N, N) map: place it at P5 (see ``models/dense_memory.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import at_least_fp32, divisor_at_most
from models.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "BoTMHSA",
    category="self-attention",
    paper="Bottleneck Transformers for Visual Recognition",
    arxiv="2101.11605",
    year=2021,
    placement="p5",
    dense=True,
    notes="ODS MHSA uses absolute position tables fixed to one H, W (misaligned or AssertionError elsewhere), "
    "biases and no d^-0.5 scaling; here relative offsets clipped at rel_size, any H, W.",
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
        attn, v = self._attention(x)
        out = torch.matmul(attn, v.transpose(2, 3))  # (B, m, N, d)
        return out.transpose(2, 3).reshape(b, c, h, w)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The attention each position receives, averaged over queries and heads: (B, H, W)."""
        b, _, h, w = x.shape
        return {"spatial": self._attention(x)[0].float().mean((1, 2)).reshape(b, h, w),
                "spatial_how": "attention each position receives, mean over queries and heads"}

    def _attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(softmax attention (B, m, N, N), rows = queries; values (B, m, d, N))."""
        b, c, h, w = x.shape
        m, d = self.heads, self.d
        q, k, v = self.qkv(x).reshape(b, 3, m, d, h * w).unbind(1)  # (B, m, d, N) each
        q = q.transpose(2, 3) * d**-0.5  # (B, m, N, d)
        logits = torch.matmul(q, k)  # (B, m, N, N)
        q5 = q.reshape(b, m, h, w, d)
        r_h = self._rel_table(self.rel_h, h).to(q.dtype)  # (H, H', d)
        r_w = self._rel_table(self.rel_w, w).to(q.dtype)  # (W, W', d)
        l_h = torch.einsum("bmxyd,xkd->bmxyk", q5, r_h)  # (B, m, H, W, H')
        l_w = torch.einsum("bmxyd,ykd->bmxyk", q5, r_w)  # (B, m, H, W, W')
        logits = logits + (l_h[..., :, None] + l_w[..., None, :]).reshape(b, m, h * w, h * w)
        return at_least_fp32(logits).softmax(-1).to(v.dtype), v

    def attention_map_elements(self, h: int, w: int) -> int:
        """Elements of the (heads, N, N) attention map of one sample."""
        n = h * w
        return self.heads * n * n
