"""Cascaded Group Attention (CGA): EfficientViT's token mixer, in local windows with a residual.

Liu, Peng, Zheng, Yang, Hu, Yuan, "EfficientViT: Memory Efficient Vision Transformer with Cascaded Group
Attention", CVPR 2023, arXiv:2305.07027. Official code: microsoft/Cream (``EfficientViT/classification/model/
efficientvit.py`` and ``EfficientViT/downstream/efficientvit.py``: ``CascadedGroupAttention``,
``LocalWindowAttention``).

The channels are split into h groups x_1 .. x_h (one per head). Head j sees its own split plus the previous head's
output (the cascade), projects it to q, k (``key_dim`` each) and v (C/h) with a 1x1 conv + BN, refines q with a
depthwise k_j x k_j conv + BN, and attends within its window:

    x'_j = x_j + out_{j-1} (x'_1 = x_1),   out_j = softmax(d_k^-1/2 q_j k_j^T + B_j) v_j
    y = x + BN(Conv1x1(ReLU(concat(out_1 .. out_h))))

B_j is a learned bias per head and relative offset (|dy|, |dx|) inside a window (window^2 values per head). As in
EfficientViT, the attention runs in ``window x window`` windows (zero-padded at the bottom/right when H or W is not a
multiple) once the map is larger than one window, and on the whole map otherwise; y = x + CGA(x) is the EfficientViT
block's ``Residual(LocalWindowAttention)`` (the block's depthwise convs and FFNs are not part of this module). The
output BN starts at weight 0 as in the official code, so the module starts as the identity.

Departures from the paper / official code:
- Any H, W: the official classification code asserts the input equals its construction resolution; its detection
  code drops that assert and windows any map larger than 7 x 7 (what this module does), but a map smaller than
  7 x 7 in both directions and not 7 x 7 fails there (its bias index is 49 x 49). Here such a map attends over its
  own h x w tokens with the biases of the offsets it has: the offset table is indexed |dy| * window + |dx|, which is
  the official index order, so a CGA built for a smaller resolution r is ours with its r x r offsets.
- More heads than kernel sizes: the ``kernels`` list repeats. Heads clamp to a divisor of C (noted in
  ``build_notes``). BatchNorms fall back to running statistics where a batch has one value per channel (batch 1 on a
  1 x 1 map in train mode).
- The softmax runs through ``scaled_dot_product_attention`` with the bias as its additive mask (the windows' maps are
  window^2 x window^2). An ONNX graph keeps the branch its export size took: exported on maps larger than the window
  (e.g. P5 of 640 = 20 x 20) it pads maps of at most 7 x 7 to one full window, where eager does not.

Verified against the official detection ``LocalWindowAttention`` on a 9x10 map (tests/fixtures/golden/
CascadedGroupAttention.npz).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, at_least_fp32, autocast_off, divisor_at_most
from models.attention._sdpa import explicit_is_faster
from models.registry.protocol import AttentionModule
from models.registry import register_attention


class ConvBN(nn.Sequential):
    """Bias-free conv then BatchNorm (EfficientViT's Conv2d_BN; the BN weight starts at ``bn_weight``)."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, groups: int = 1, bn_weight: float = 1.0):
        super().__init__()
        self.c = nn.Conv2d(c_in, c_out, k, 1, k // 2, groups=groups, bias=False)
        self.bn = BatchNorm2dSafe(c_out)
        nn.init.constant_(self.bn.weight, bn_weight)
        nn.init.zeros_(self.bn.bias)


@register_attention(
    "CascadedGroupAttention",
    category="self-attention",
    paper="EfficientViT: Memory Efficient Vision Transformer with Cascaded Group Attention",
    arxiv="2305.07027",
    year=2023,
    placement="backbone_end",
    dense=True,
    notes="Official classification code asserts its construction resolution; ports copying CascadedGroupAttention "
    "alone use a bias index sized to one map (error elsewhere) and no windows. Here: EfficientViT's "
    "LocalWindowAttention (7x7 windows, zero padding) + residual, maps below one window attend over themselves; "
    "softmax through SDPA (window^2 maps: linear in N).",
    renamed={"heads": "num_heads", "nh": "num_heads"},
)
class CascadedGroupAttention(AttentionModule):
    """x + CGA(x) in 7 x 7 windows: 4 heads, key_dim 16, value width C/4, depthwise q kernels 7, 5, 3, 3."""

    def __init__(self, c1: int, num_heads: int = 4, key_dim: int = 16, window: int = 7,
                 kernels: tuple[int, ...] = (7, 5, 3, 3)):
        super().__init__()
        self.heads = self.clamp("heads", num_heads, divisor_at_most(c1, num_heads), f"C={c1}")
        kernels = tuple(int(k) for k in kernels)
        if not kernels or any(k < 1 or k % 2 == 0 for k in kernels) or key_dim < 1 or window < 1:
            raise ValueError(f"CascadedGroupAttention: odd kernels, key_dim >= 1 and window >= 1, got "
                             f"kernels={kernels}, key_dim={key_dim}, window={window}")
        self.key_dim, self.window = int(key_dim), int(window)
        self.split = c1 // self.heads
        self.d = c1 // self.heads  # value width: attn_ratio = C / (key_dim * heads) in the official code
        self.qkvs = nn.ModuleList(ConvBN(self.split, 2 * self.key_dim + self.d) for _ in range(self.heads))
        self.dws = nn.ModuleList(ConvBN(self.key_dim, self.key_dim, kernels[i % len(kernels)], groups=self.key_dim)
                                 for i in range(self.heads))
        self.proj = nn.Sequential(nn.ReLU(), ConvBN(self.d * self.heads, c1, bn_weight=0.0))
        self.attention_biases = nn.Parameter(torch.zeros(self.heads, self.window * self.window))

    def _bias(self, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
        """(heads, h*w, h*w) bias of an h x w window: table entry |dy| * window + |dx| for every query/key pair."""
        iy = torch.arange(h, device=self.attention_biases.device)
        ix = torch.arange(w, device=self.attention_biases.device)
        dy = (iy[:, None] - iy[None, :]).abs()
        dx = (ix[:, None] - ix[None, :]).abs()
        idx = (dy[:, None, :, None] * self.window + dx[None, :, None, :]).reshape(h * w, h * w)
        return self.attention_biases.index_select(1, idx.flatten()).reshape(self.heads, h * w, h * w).to(dtype)

    def _windows(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """(B * nH * nW, C, wh, ww) windows of x and what :meth:`_merge` needs to put them back."""
        b, c, h, w = x.shape
        s = self.window
        if h <= s and w <= s:  # one window: the map itself
            return x, (b, c, h, w, 0, 0)
        pad_b, pad_r = (s - h % s) % s, (s - w % s) % s
        xp = F.pad(x, (0, pad_r, 0, pad_b))
        nh, nw = (h + pad_b) // s, (w + pad_r) // s
        win = xp.reshape(b, c, nh, s, nw, s).permute(0, 2, 4, 1, 3, 5).reshape(b * nh * nw, c, s, s)
        return win, (b, c, h, w, nh, nw)

    def _merge(self, y: torch.Tensor, info: tuple) -> torch.Tensor:
        b, c, h, w, nh, nw = info
        if nh == 0:  # one window: the map itself
            return y
        s = self.window
        y = y.reshape(b, nh, nw, c, s, s).permute(0, 3, 1, 4, 2, 5).reshape(b, c, nh * s, nw * s)
        return y[:, :, :h, :w]

    def _heads(self, win: torch.Tensor, keep_maps: bool = False):
        """The cascade over the heads on windows (G, C, wh, ww): concatenated head outputs, and the softmax maps
        (heads x (G, n, n)) when ``keep_maps``."""
        g, _, wh, ww = win.shape
        n = wh * ww
        # CPU: the window maps are small, the explicit form in the conv layout is faster than SDPA's math path
        explicit = explicit_is_faster(win, self.heads * g, n, n, widths_differ=self.key_dim != self.d)
        bias = self._bias(wh, ww, torch.promote_types(win.dtype, torch.float32) if explicit or keep_maps else win.dtype)
        splits = win.chunk(self.heads, 1)
        outs, maps = [], []
        feat = splits[0]
        for j in range(self.heads):
            if j > 0:
                feat = feat + splits[j]
            q, k, v = self.qkvs[j](feat).split((self.key_dim, self.key_dim, self.d), 1)
            q, k, v = self.dws[j](q).flatten(2), k.flatten(2), v.flatten(2)  # (G, E, n)
            if keep_maps or explicit:
                with autocast_off(q):  # logits and softmax in fp32 (fp16/bf16 inputs)
                    logits = torch.matmul(at_least_fp32(q).transpose(1, 2), at_least_fp32(k))
                    attn = (logits * self.key_dim**-0.5 + bias[j]).softmax(-1)
                if keep_maps:
                    maps.append(attn)
                out = torch.matmul(v, attn.to(v.dtype).transpose(1, 2))  # (G, d, n)
            else:
                q, k, v = (t.transpose(1, 2).unsqueeze(1) for t in (q, k, v))  # (G, 1, n, E)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[j].to(q.dtype), scale=self.key_dim**-0.5)
                out = out.squeeze(1).transpose(1, 2)
            feat = out.reshape(g, self.d, wh, ww)
            outs.append(feat)
        return torch.cat(outs, 1), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        win, info = self._windows(x)
        return x + self._merge(self.proj(self._heads(win)[0]), info)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The attention each position receives inside its window, mean over queries and heads: (B, H, W)."""
        win, info = self._windows(x)
        _, maps = self._heads(win, keep_maps=True)
        g, _, wh, ww = win.shape
        received = torch.stack(maps).mean((0, 2)).reshape(g, 1, wh, ww)
        return {"spatial": self._merge(received, (*info[:1], 1, *info[2:])).squeeze(1),
                "spatial_how": "attention each position receives in its window, mean over queries and heads"}

    def init_identity(self) -> bool:
        """Zero the output BatchNorm's weight and bias (the official init already has weight 0): exactly x."""
        nn.init.zeros_(self.proj[1].bn.weight)
        nn.init.zeros_(self.proj[1].bn.bias)
        return True

    def attention_map_elements(self, h: int, w: int) -> int:
        """The window maps of every head for one sample (kept for the backward pass): heads x (padded N) x window^2
        for maps larger than one window, heads x N^2 otherwise. Linear in N."""
        s = self.window
        if h <= s and w <= s:
            return self.heads * (h * w) ** 2
        return self.heads * (-(-h // s) * s) * (-(-w // s) * s) * s * s
