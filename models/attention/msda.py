"""MSDA: multi-scale dilated attention (DilateFormer).

Jiao, Tang, Lin, Gao, Ma, Wang, Zheng, "DilateFormer: Multi-Scale Dilated Transformer for Visual Recognition",
IEEE Transactions on Multimedia 2023, arXiv:2302.01791. Official code: JIAOJIAYUASD/dilateformer
(``models/dilateformer.py``, ``MultiDilatelocalAttention`` and ``DilateAttention``).

q, k, v = 1x1 conv (C -> 3C) of the normalised map; the heads are split into groups, one per dilation rate r_i
(``dilation``). Each head of group i is a sliding-window dilated attention (SWDA): every pixel attends to the
k x k neighbours at spacing r_i around it (zero padded at the borders: padded keys and values are zero, logit 0,
as ``nn.Unfold`` gives them in the official code), softmax over the k^2 neighbours, scale head_dim^-0.5:

    h_i = SWDA(q_i, k_i, v_i, r_i),   MSDA(X) = Linear(concat(h_1, ..., h_n))

As a YOLO layer this module is the DilateFormer block's attention sub-layer: y = x + MSDA(LayerNorm(x)) (pre-norm
residual, LayerNorm eps 1e-6 as in the DilateFormer models).

Defaults: kernel 3, dilation (1, 2, 3) and q/k/v bias, as the DilateFormer models; 8 heads (the official class
default; head width 32 at C = 256, as DilateFormer-B).

Departures from the official code:
- The heads are split over the dilation rates as evenly as possible, the first rates taking one more head where
  the count does not divide (8 heads over (1, 2, 3): 3, 3, 2); the official code asserts num_heads % len(dilation)
  == 0, which no head count dividing a power-of-two width satisfies for three rates. Equal splits are the official
  computation exactly. Heads clamp to a divisor of C, rates to the head count (``build_notes``).
- The neighbourhoods are built from k^2 shifted slices of one zero-padded map (``local_neighbourhood``), not
  ``nn.Unfold``: same values, any H, W (also smaller than the dilated window), dynamic-H/W ONNX export.
- The heads' outputs are concatenated; the official forward writes them in place into the permuted input of its qkv
  conv, which that conv saved for its backward, so training it raises (JIAOJIAYUASD/dilateformer issues #2 and #12;
  also in torch 2.14 on CPU). Forward values are the same.
- The pre-norm and residual of the DilateFormer block are part of the module (its MLP and its per-block 3x3 position
  conv are not); ``init_identity()`` zeroes the output projection. The softmax is evaluated in (at least) fp32.
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import at_least_fp32, divisor_at_most, local_neighbourhood
from models.registry.protocol import AttentionModule
from models.registry import register_attention


def head_split(heads: int, groups: int) -> list[int]:
    """Heads per dilation rate: as even as possible, the first rates taking one more (8 over 3: [3, 3, 2])."""
    return [heads // groups + (i < heads % groups) for i in range(groups)]


@register_attention(
    "MSDA",
    category="local self-attention",
    paper="DilateFormer: Multi-Scale Dilated Transformer for Visual Recognition",
    arxiv="2302.01791",
    year=2023,
    placement="backbone_end",
    notes="Blog ports paste MultiDilatelocalAttention bare (no norm/residual: the output replaces the features; "
    "a clone added against the official in-place write that breaks backward) with num_heads 8, dilation [1, 2, 3, 4], "
    "qkv_bias True; here: pre-norm residual, the paper's (1, 2, 3) with heads split unevenly where the official "
    "assert fails, shifted-slice neighbourhoods.",
    renamed={"heads": "num_heads", "head": "num_heads", "n_heads": "num_heads"},
)
class MSDA(AttentionModule):
    """x + MSDA(LN(x)): 8 heads over dilation rates (1, 2, 3), 3x3 dilated neighbourhoods, q/k/v bias."""

    def __init__(self, c1: int, num_heads: int = 8, kernel_size: int = 3, dilation: tuple[int, ...] | list = (1, 2, 3),
                 qkv_bias: bool = True):
        super().__init__()
        dilation = tuple(int(r) for r in ([dilation] if isinstance(dilation, int) else dilation))
        if kernel_size % 2 == 0 or not dilation or min(dilation) < 1:
            raise ValueError(f"MSDA needs an odd kernel_size and dilation rates >= 1, got kernel_size={kernel_size}, "
                             f"dilation={dilation}")
        heads = self.clamp("heads", num_heads, divisor_at_most(c1, num_heads), f"C={c1}")
        self.dilation = self.clamp("dilation", dilation, dilation[:heads], f"{heads} heads")
        self.heads = head_split(heads, len(self.dilation))
        self.d = c1 // heads
        self.k = int(kernel_size)
        self.scale = self.d**-0.5
        self.norm = nn.LayerNorm(c1, eps=1e-6)
        self.qkv = nn.Conv2d(c1, 3 * c1, 1, bias=qkv_bias)
        self.proj = nn.Linear(c1, c1)

    def _swda(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, rate: int) -> torch.Tensor:
        """Sliding-window dilated attention of (B, heads * d, H, W) maps -> (B, heads * d, H, W)."""
        b, _, h, w = q.shape
        kk, d = self.k * self.k, self.d
        q = (q * self.scale).reshape(b, heads, d, 1, h, w)
        k = local_neighbourhood(k, self.k, rate).reshape(b, heads, d, kk, h, w)
        v = local_neighbourhood(v, self.k, rate).reshape(b, heads, d, kk, h, w)
        attn = at_least_fp32((q * k).sum(2)).softmax(2).to(v.dtype)  # (B, heads, k^2, H, W)
        return (attn.unsqueeze(2) * v).sum(3).reshape(b, heads * d, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.proj.in_features  # a constant of the module (a traced shape would warn in ONNX export)
        q, k, v = self.qkv(self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)).split(c, 1)
        widths = [m * self.d for m in self.heads]
        out = [self._swda(qi, ki, vi, m, r) for qi, ki, vi, m, r in
               zip(q.split(widths, 1), k.split(widths, 1), v.split(widths, 1), self.heads, self.dilation)]
        out = torch.cat(out, 1) if len(out) > 1 else out[0]
        return x + self.proj(out.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def init_identity(self) -> bool:
        """Zero the output projection: y = x exactly."""
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        return True

    def extra_repr(self) -> str:
        return f"heads={self.heads}, dilation={self.dilation}, kernel_size={self.k}"
