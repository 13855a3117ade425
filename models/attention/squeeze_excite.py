"""SE: Squeeze-and-Excitation.

Hu, Shen, Albanie, Sun, Wu, "Squeeze-and-Excitation Networks", CVPR 2018, arXiv:1709.01507.
Official code: hujie-frank/SENet (Caffe prototxts).

y = x * sigmoid(W2 relu(W1 GAP(x))), W1: C -> C/r, W2: C/r -> C, r = 16.

Departures from the paper: the two FC layers are 1x1 convolutions on the (B, C, 1, 1) descriptor (same maths); the
squeeze is ``x.mean((2, 3))``; in the default form the hidden width is floored (below).

Forms (``form=``):
- ``"paper"`` (default): hidden width ``max(C // r, min(min_channels, C))``, ``min_channels`` default 8 (1: exactly
  C // r); a floor is recorded in ``build_notes``.
- ``"official"``: the official prototxt, hidden exactly C // r (golden test ``SE``).
- ``"eap"``: the port most YOLO forks and blogs copy (External-Attention-pytorch ``SEAttention``, the same class in
  objectdetection_script, YOLOAir, bubbliiiing's ``se_block``, the seed article): bias-free FC layers, hidden
  exactly C // r: 2C(C // r) parameters (golden tests ``SE__eap``, ``SE__yoloair2``).
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import check_form, form_hidden_width
from models.registry.protocol import GatedAttention
from models.registry import register_attention


FORMS = ("paper", "official", "eap")


@register_attention(
    "SE",
    category="channel",
    paper="Squeeze-and-Excitation Networks",
    arxiv="1709.01507",
    year=2018,
    placement="backbone_end",
    notes="Most ports (EAP's SEAttention and its copies) drop the FC biases: form 'eap'.",
    forms=FORMS,
)
class SE(GatedAttention):
    """x * sigmoid(W2 relu(W1 GAP(x))), reduction r=16."""

    gate_name = "channel gate"

    def __init__(self, c1: int, reduction: float = 16, min_channels: int | None = None, form: str = "paper"):
        super().__init__()
        self.form = check_form("SE", form, FORMS)
        hidden = form_hidden_width(self, "SE", c1, reduction, min_channels, form, 8, exact=("official", "eap"))
        bias = form != "eap"
        self.fc1 = nn.Conv2d(c1, hidden, 1, bias=bias)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, c1, 1, bias=bias)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights in (0, 1), shape (B, C, 1, 1)."""
        return torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))
