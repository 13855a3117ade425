"""SE: Squeeze-and-Excitation.

SE: Hu, Shen, Albanie, Sun, Wu, "Squeeze-and-Excitation Networks", CVPR 2018, arXiv:1709.01507.
Official code: hujie-frank/SENet (Caffe prototxts).

Forms (``form=``): the paper and the official code compute the same function; they differ from this module only in
the hidden width.

- ``"paper"`` (default): hidden width ``max(C // reduction, min(min_channels, C))``, ``min_channels`` default 8
  (``min_channels=1``: exactly the paper's C // r). The default because earlier versions built it: existing configs
  keep their parameter counts, and narrow layers never get a 1-channel bottleneck.
- ``"official"``: the official prototxt's width, exactly C // r (``min_channels`` is not accepted; C // r = 0 is an
  error naming the layer). Equal to the official graph (golden test ``SE``, C=32: hidden 2).

Departures from the paper:
- The two fully connected layers are 1x1 convolutions on the (B, C, 1, 1) descriptor (same maths).
- The hidden width is ``max(C // reduction, min(min_channels, C))`` (default floor 8) so narrow layers never get a
  zero-width bottleneck; ``min_channels=1`` gives the paper's C // r exactly. A floor is recorded in ``build_notes``.
- The squeeze is ``x.mean((2, 3))`` instead of an adaptive pooling layer (CUDA-deterministic, ONNX-dynamic).
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import check_form, form_hidden_width
from models.registry.protocol import GatedAttention
from models.registry import register_attention


FORMS = ("paper", "official")


@register_attention(
    "SE",
    category="channel",
    paper="Squeeze-and-Excitation Networks",
    arxiv="1709.01507",
    year=2018,
    placement="backbone_end",
    notes="Same maths in most ports; EAP defines an init_weights() it never calls.",
    forms=FORMS,
)
class SE(GatedAttention):
    """x * sigmoid(W2 relu(W1 GAP(x))), reduction r=16."""

    gate_name = "channel gate"

    def __init__(self, c1: int, reduction: float = 16, min_channels: int | None = None, form: str = "paper"):
        super().__init__()
        self.form = check_form("SE", form, FORMS)
        hidden = form_hidden_width(self, "SE", c1, reduction, min_channels, form, 8)
        self.fc1 = nn.Conv2d(c1, hidden, 1, bias=True)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, c1, 1, bias=True)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights in (0, 1), shape (B, C, 1, 1)."""
        return torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))
