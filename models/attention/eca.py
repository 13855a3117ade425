"""ECA: Efficient Channel Attention.

Wang, Wu, Zhu, Li, Zuo, Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural
Networks", CVPR 2020, arXiv:1910.03151. Official code: BangguWu/ECANet.

y = x * sigmoid(conv1d_k(GAP(x))): a bias-free 1D convolution across channels with the adaptive kernel size
k = |log2(C)/gamma + b/gamma|_odd (gamma=2, b=1).

Departures from the paper: none in the maths; the squeeze is ``x.mean((2, 3))``.

Forms (``form=``; ``kernel_size`` fixes k in any form, ``k_size`` is accepted in YAML rows):
- ``"paper"`` (default): the adaptive k (3 for C <= 96, 5 for 128..1280, 7 for 2048); also bubbliiiing's
  ``eca_block`` and objectdetection_script's ``EfficientChannelAttention`` (golden test ``ECA__bubbliiiing``).
- ``"official"``: the official ``eca_layer``, k = 3 whatever C (golden test ``ECA``).
- ``"eap"``: External-Attention-pytorch's ``ECAAttention`` (= the seed article's): k = 3 and a Conv1d bias,
  k + 1 parameters (golden test ``ECA__eap``).
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import check_form, eca_kernel_size
from models.registry.protocol import GatedAttention
from models.registry import register_attention


FORMS = ("paper", "official", "eap")


@register_attention(
    "ECA",
    category="channel",
    paper="ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
    arxiv="1910.03151",
    year=2020,
    placement="backbone_end",
    notes="EAP's ECAAttention fixes k=3 and gives the Conv1d a bias (form 'eap'); the paper adapts k to C.",
    renamed={"k_size": "kernel_size", "ksize": "kernel_size"},
    forms=FORMS,
)
class ECA(GatedAttention):
    """x * sigmoid(conv1d_k(GAP(x))), k adaptive to C (3 for C<=96, 5 for 128..1280, 7 for 2048)."""

    gate_name = "channel gate"

    def __init__(self, c1: int, kernel_size: int | None = None, gamma: float = 2, b: float = 1, form: str = "paper"):
        super().__init__()
        self.form = check_form("ECA", form, FORMS)
        k = int(kernel_size) if kernel_size else eca_kernel_size(c1, gamma, b) if form == "paper" else 3
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=form == "eap")

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3)).unsqueeze(1)  # (B, 1, C)
        return torch.sigmoid(self.conv(y)).transpose(1, 2).unsqueeze(-1)  # (B, C, 1, 1)
