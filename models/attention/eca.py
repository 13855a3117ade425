"""ECA: Efficient Channel Attention.

Wang, Wu, Zhu, Li, Zuo, Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural
Networks", CVPR 2020, arXiv:1910.03151. Official code: BangguWu/ECANet.

GAP, then a bias-free 1D convolution across channels with the paper's adaptive kernel size
k = |log2(C)/gamma + b/gamma|_odd (gamma=2, b=1), sigmoid, rescale.

Forms (``form=``):

- ``"paper"`` (default): the paper's adaptive kernel size (3 for C <= 96, 5 for 128..1280, 7 for 2048). The default
  because it is the paper's rule and what earlier versions built.
- ``"official"``: the official ``eca_layer``, whose ``k_size`` defaults to 3 and which ECA-Net's ResNets build with
  3 at every stage: k = 3 whatever C (golden test ``ECA``). ``gamma`` and ``b`` are the paper form's rule only.

``kernel_size`` fixes k in either form (the official ``k_size``; ``k_size`` is accepted in YAML rows).

Departures from the paper: none in the maths. The squeeze is ``x.mean((2, 3))``.
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import check_form, eca_kernel_size
from models.registry.protocol import GatedAttention
from models.registry import register_attention


FORMS = ("paper", "official")


@register_attention(
    "ECA",
    category="channel",
    paper="ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
    arxiv="1910.03151",
    year=2020,
    placement="backbone_end",
    notes="EAP's ECAAttention fixes k=3 and gives the Conv1d a bias; the paper adapts k to C and has no bias.",
    renamed={"k_size": "kernel_size", "ksize": "kernel_size"},
    forms=FORMS,
)
class ECA(GatedAttention):
    """x * sigmoid(conv1d_k(GAP(x))), k adaptive to C (3 for C<=96, 5 for 128..1280, 7 for 2048)."""

    gate_name = "channel gate"

    def __init__(self, c1: int, kernel_size: int | None = None, gamma: float = 2, b: float = 1, form: str = "paper"):
        super().__init__()
        self.form = check_form("ECA", form, FORMS)
        k = int(kernel_size) if kernel_size else 3 if form == "official" else eca_kernel_size(c1, gamma, b)
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3)).unsqueeze(1)  # (B, 1, C)
        return torch.sigmoid(self.conv(y)).transpose(1, 2).unsqueeze(-1)  # (B, C, 1, 1)
