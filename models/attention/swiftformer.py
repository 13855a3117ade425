"""SwiftFormer's efficient additive attention, with the SwiftFormer encoder's layer-scaled residual.

Shaker, Maaz, Rasheed, Khan, Yang, Khan, "SwiftFormer: Efficient Additive Attention for Transformer-based Real-time
Mobile Vision Applications", ICCV 2023, arXiv:2303.15446. Official code: Amshaker/SwiftFormer
(``models/swiftformer.py``: ``EfficientAdditiveAttnetion`` [sic], ``SwiftFormerEncoder``).

Tokens x (N x C). Q = l2norm(x W_q + b_q), K = l2norm(x W_k + b_k) (each token normalised over its D = C channels).
A learned vector w_a scores every query, the scores are l2-normalised over the N tokens, and the global query is
their weighted sum; it interacts with every key by an element-wise product:

    alpha = l2norm_N(Q w_a / sqrt(D)),   q_g = sum_n alpha_n Q_n,   y = x + gamma * final(proj(q_g * K) + Q)

No key-value matrix product and no softmax: cost O(N D). gamma is the encoder's per-channel layer scale
(``layer_scale_1``, 1e-5 at init); the residual and gamma are part of this module (the encoder's local
representation conv block and MLP are not).

Departures from the paper / official code:
- ``num_heads`` widens the inner width to C * num_heads as the official class does (its default 2 with
  ``token_dim`` != ``in_dims`` changes the channel count; SwiftFormer itself builds it with token_dim = C and one
  head, the default here): the output projection always maps back to C.
- The SwiftFormer encoder has no norm before the attention (its local-representation block ends in a residual), so
  neither has this module. ``init_identity()`` zeroes gamma.
- Nothing depends on H, W; no forms.

Verified against the official class (tests/fixtures/golden/EfficientAdditiveAttention.npz).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.registry.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "EfficientAdditiveAttention",
    category="linear attention",
    paper="SwiftFormer: Efficient Additive Attention for Transformer-based Real-time Mobile Vision Applications",
    arxiv="2303.15446",
    year=2023,
    placement="backbone_end",
    notes="Ports paste EfficientAdditiveAttnetion [sic] with its class defaults (in_dims 512, token_dim 256, "
    "2 heads: output width 256, not C) and (B, N, C) tokens, without the encoder's layer-scaled residual. Here: "
    "token_dim = C, one head, y = x + gamma * attn(x).",
    renamed={"heads": "num_heads"},
)
class EfficientAdditiveAttention(AttentionModule):
    """x + gamma * AdditiveAttention(x): one head of width C, layer scale gamma = 1e-5 at init."""

    def __init__(self, c1: int, num_heads: int = 1, layer_scale: float = 1e-5):
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"EfficientAdditiveAttention: num_heads must be >= 1, got {num_heads}")
        self.heads = int(num_heads)
        inner = c1 * self.heads
        self.to_query = nn.Linear(c1, inner)
        self.to_key = nn.Linear(c1, inner)
        self.w_g = nn.Parameter(torch.randn(inner, 1))
        self.scale = c1**-0.5  # token_dim ** -0.5 in the official code (token_dim = C)
        self.proj = nn.Linear(inner, inner)
        self.final = nn.Linear(inner, c1)
        self.layer_scale_1 = nn.Parameter(torch.full((c1, 1, 1), float(layer_scale)))

    def _query_key(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised Q, K (B, N, D) of tokens t, and the token weights alpha (B, N, 1)."""
        q = F.normalize(self.to_query(t), dim=-1)
        k = F.normalize(self.to_key(t), dim=-1)
        alpha = F.normalize(torch.matmul(q, self.w_g.to(q.dtype)) * self.scale, dim=1)
        return q, k, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, N, C)
        q, k, alpha = self._query_key(t)
        g = (alpha * q).sum(1, keepdim=True)  # (B, 1, D): the global query
        out = self.final(self.proj(g * k) + q)  # (B, N, C)
        return x + self.layer_scale_1 * out.transpose(1, 2).reshape(b, c, h, w)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """|alpha|: each position's weight in the global query (B, H, W)."""
        b, _, h, w = x.shape
        _, _, alpha = self._query_key(x.flatten(2).transpose(1, 2))
        return {"spatial": alpha.abs().reshape(b, h, w), "spatial_how": "|query weight| in the global query"}

    def init_identity(self) -> bool:
        """Zero the layer scale: the module then computes exactly x."""
        nn.init.zeros_(self.layer_scale_1)
        return True

    def attention_map_elements(self, h: int, w: int) -> int:
        """The token weights alpha: N per sample (no attention map)."""
        return h * w
