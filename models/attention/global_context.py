"""GCNet: Global Context block.

Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond", ICCV Workshops 2019
(TPAMI 2020), arXiv:1904.11492. Official code: xvjiarui/GCNet (``ContextBlock``, also in mmcv).

Context (``pooling="att"``): a biased 1x1 conv C -> 1 gives one logit per position, softmax over the N = H*W
positions, the context is the weighted sum of the features, (B, C, 1, 1); ``pooling="avg"`` is global average pooling
(the paper's ablation). Transform: 1x1 (C -> C/r) -> LayerNorm over (C/r, 1, 1) -> ReLU -> 1x1 (C/r -> C). Fusion:
``"add"`` (paper default) y = x + t; ``"mul"`` y = x * sigmoid(t_mul); ``"both"`` mul then add. As the official code,
the mask conv is Kaiming-normal (fan_in) with zero bias and each transform's last conv is zero-initialised: with
additive fusion the block starts as the identity (``init_identity`` re-applies that).

Forms (``form=``): the paper and the official code compute the same function; the forms differ in the hidden width.

- ``"paper"`` (default): ``max(C // r, min(min_channels, C))``, ``min_channels`` default 8 (``min_channels=1``:
  exactly C // r).
- ``"official"``: the official ``int(C * ratio)`` = C // r (``min_channels`` is not accepted; 0 is an error naming the
  layer). Golden tests ``GCBlock__r16``, ``__mul_avg``, ``__both``.

Departures from the paper:
- The softmax over positions runs in at least fp32 (exact in fp32; no fp16 rounding of the N-way normalisation).
- The paper form's hidden width floor (noted in ``build_notes``; the official width is 1 at C=24, r=16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import check_form, form_hidden_width
from models.registry.protocol import AttentionModule
from models.registry import register_attention


class _Transform(nn.Module):
    """1x1 (C -> h) -> LayerNorm([h, 1, 1]) -> ReLU -> 1x1 (h -> C)."""

    def __init__(self, c1: int, hidden: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c1, hidden, 1)
        self.norm = nn.LayerNorm([hidden, 1, 1])
        self.conv2 = nn.Conv2d(hidden, c1, 1)

    def zero_last(self) -> None:
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.norm(self.conv1(ctx))))


FORMS = ("paper", "official")


@register_attention(
    "GCBlock",
    category="channel",
    paper="GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
    arxiv="1904.11492",
    year=2019,
    placement="backbone_end",
    notes=(
        "ODS GC.py is timm GlobalContext (multiplicative fusion, ratio 1/8, no zero-init add branch) and imports "
        "a timm path that no longer exists; this is the paper's additive block, identity at init."
    ),
    forms=FORMS,
)
class GCBlock(AttentionModule):
    """x + T(softmax-attention-pooled context), r=16, zero-initialised last conv."""

    def __init__(self, c1: int, reduction: int = 16, pooling: str = "att", fusion: str = "add",
                 min_channels: int | None = None, form: str = "paper"):
        super().__init__()
        self.form = check_form("GCBlock", form, FORMS)
        if pooling not in ("att", "avg"):
            raise ValueError(f"GCBlock pooling must be 'att' or 'avg', got {pooling!r}")
        if fusion not in ("add", "mul", "both"):
            raise ValueError(f"GCBlock fusion must be 'add', 'mul' or 'both', got {fusion!r}")
        hidden = form_hidden_width(self, "GCBlock", c1, reduction, min_channels, form, 8)
        self.pooling, self.fusion = pooling, fusion
        if pooling == "att":
            self.conv_mask = nn.Conv2d(c1, 1, 1)
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.conv_mask.bias)
        self.add_transform = _Transform(c1, hidden) if fusion in ("add", "both") else None
        self.mul_transform = _Transform(c1, hidden) if fusion in ("mul", "both") else None
        for t in (self.add_transform, self.mul_transform):
            if t is not None:
                t.zero_last()

    def init_identity(self) -> bool:
        """Zero the last conv of the add transform; exact identity only for additive-only fusion."""
        if self.mul_transform is not None:
            return False
        self.add_transform.zero_last()
        return True

    def context_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention pooling weights over positions (softmax of the 1x1 mask conv), shape (B, 1, N)."""
        logits = self.conv_mask(x).flatten(2)  # (B, 1, N)
        return logits.softmax(-1, dtype=torch.promote_types(logits.dtype, torch.float32)).to(x.dtype)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """Global context vector, shape (B, C, 1, 1)."""
        if self.pooling == "avg":
            return x.mean((2, 3), keepdim=True)
        ctx = torch.matmul(x.flatten(2), self.context_weights(x).transpose(1, 2))  # (B, C, 1)
        return ctx.unsqueeze(-1)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The context-pooling weights over positions (B, H, W) (none with pooling="avg")."""
        if self.pooling == "avg":
            return {}
        return {"spatial": self.context_weights(x).reshape(x.shape[0], *x.shape[2:]),
                "spatial_how": "context pooling weights (softmax over positions)"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.context(x)
        out = x
        if self.mul_transform is not None:
            out = out * torch.sigmoid(self.mul_transform(ctx))
        if self.add_transform is not None:
            out = out + self.add_transform(ctx)
        return out
