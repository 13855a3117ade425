"""NAM: Normalization-based Attention Module (channel part).

Liu, Shao, Teng, Hoffmann, "NAM: Normalization-based Attention Module", NeurIPS 2021 Workshop (ImageNet PPF),
arXiv:2111.12419. Official code: Christian-lyc/NAM (MODELS/attention.py, ``Channel_Att``).

x_hat = BN(x) (affine gamma, beta); w_c = |gamma_c| / sum_j |gamma_j| (from the detached gamma, as the official
``.data``); y = x * sigmoid(w_c x_hat_c). 2C parameters. The paper also adds an L1 penalty p sum |gamma| (p ~ 1e-4)
to the loss; the YOLO loss does not know it, so it is ``NAM.sparsity_penalty()`` for a trainer that wants it. Equal to
the official ``Channel_Att`` (golden test ``NAM``); no forms.

Departures from the paper:
- Channel part only (the official default ``no_spatial=True``): the pixel part normalises H*W "pixel channels" with a
  BatchNorm sized for a fixed H*W.
- The penalty is not added to the loss automatically.
- The BN is ``BatchNorm2dSafe``: batch 1 on a 1x1 map uses running statistics; its PyTorch eps/momentum (the
  official values) are left alone by ultralytics' ``initialize_weights``, and no Conv+BN fuser folds it.
- The sum of |gamma| is clamped at 1e-12: all-zero gammas give a 0.5 gate, not NaN.
"""

from __future__ import annotations

import torch

from models.attention._common import BatchNorm2dSafe
from models.registry.protocol import GatedAttention
from models.registry import register_attention


@register_attention(
    "NAM",
    category="channel",
    paper="NAM: Normalization-based Attention Module",
    arxiv="2111.12419",
    year=2021,
    placement="backbone_end",
    notes=(
        "Channel part only (the pixel part needs a fixed H*W). Ports rarely add the paper's L1 penalty on gamma; "
        "call NAM.sparsity_penalty() from the trainer to add it."
    ),
)
class NAM(GatedAttention):
    """x * sigmoid(BN(x) * |gamma| / sum|gamma|), gamma detached in the weights."""

    gate_name = "normalisation gate"

    def __init__(self, c1: int):
        super().__init__()
        self.bn = BatchNorm2dSafe(c1, affine=True)

    def channel_weights(self) -> torch.Tensor:
        g = self.bn.weight.detach().abs()
        return g / g.sum().clamp_min(1e-12)

    def sparsity_penalty(self, p: float = 1e-4) -> torch.Tensor:
        """The paper's L1 term p * sum |gamma| (differentiable), to be added to the training loss."""
        return p * self.bn.weight.abs().sum()

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """sigmoid(w_gamma * BN(x)), (B, C, H, W)."""
        w = self.channel_weights().to(x.dtype).reshape(1, -1, 1, 1)
        return torch.sigmoid(self.bn(x) * w)
