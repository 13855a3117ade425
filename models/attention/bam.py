"""BAM: Bottleneck Attention Module.

Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018, arXiv:1807.06514.
Official code: Jongchan/attention-module (MODELS/bam.py).

Two parallel branches, fused and squashed, applied as a residual gate:

- Channel M_c: GAP -> FC(C -> C/r) -> ReLU -> FC(C/r -> C), shape (B, C, 1, 1).
- Spatial M_s: 1x1 (C -> C/r) -> BN -> ReLU -> [3x3 conv, dilation d, padding d -> BN -> ReLU] x 2
  -> 1x1 (C/r -> 1), shape (B, 1, H, W). Padding equals the dilation, so H and W are kept.
- M = sigmoid(M_c + M_s) broadcast to (B, C, H, W); y = x + x * M = x * (1 + M).

Defaults: r = 16, d = 4, two dilated convs, one hidden FC layer (the paper's and the official defaults).

Forms (``form=``):

- ``"paper"`` (default): the paper's sum fusion ``sigmoid(M_c + M_s)`` with a global-mean squeeze. The default
  because it is the paper's design and what earlier versions of this module built (existing configs keep their
  parameter counts); departures below.
- ``"official"``: the official code's forward exactly (golden test ``BAM``, non-square maps): hidden width exactly
  C // r (0 is an error), ``FC -> BatchNorm1d(C/r) -> ReLU -> FC`` in the channel branch (the BN is
  ``BatchNorm2dSafe`` on the (B, C/r, 1, 1) vector: PyTorch's eps/momentum, the same values in every batch of
  two or more, running statistics at batch 1 where the official code raises), product fusion
  ``sigmoid(M_c * M_s)``, and the official squeeze ``avg_pool2d(x, H, stride=H)``: the mean of the left H x H
  square, which is the global mean only on square maps. Where the official code cannot run (H > W, or W >= 2H:
  its pooling or its first Linear layer raises) the first pooling window is kept, the top-left min(H, W) square.
- ``"official_global"``: the official layers and product fusion with a global-mean squeeze: equal to the official
  code on square maps (golden test ``BAM__square``) and the same function on every map (rect validation, tall
  images), for detectors trained on square images and validated on rectangles.

``fusion`` (``"sum"``/``"mul"``) is the paper form's ablation switch; the official forms fix ``"mul"``.
``min_channels`` floors the paper form's hidden width, ``max(C // r, min(min_channels, C))`` (default 8;
``min_channels=1``: exactly C // r); the official forms take no floor.

Departures from the paper (form ``"paper"``):
- The paper puts a BatchNorm at the end of each branch (on M_c, a (B, C) vector, and on the 1-channel M_s map);
  neither is applied. At inference each is an affine map that folds exactly into the layer before it (the second
  FC, the last 1x1 conv); only the batch-statistics normalisation during training is gone. (The official code
  has neither of these; its one extra BatchNorm sits on the hidden (B, C/r) vector, see ``form="official"``.)
- The hidden width floor ``min_channels`` (above); a floor is recorded in ``build_notes``.
- The spatial-branch BatchNorms are ``BatchNorm2dSafe`` (a 1x1 map at batch 1 in train mode falls back to
  running statistics); they keep PyTorch's default eps/momentum as in the official code (and in every form).
- The FC layers are 1x1 convolutions on (B, C, 1, 1); the squeeze is ``x.mean((2, 3))``.
- EAP's BAMBlock uses 3 hidden FCs and 3 dilated convs with dilation 2 but padding 1, which shrinks the map and
  fails on any size but about 7x7; not reproduced.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, check_form, form_hidden_width, form_option
from models.registry.protocol import AttentionModule
from models.registry import register_attention

FORMS = ("paper", "official", "official_global")
_OFFICIAL = ("official", "official_global")


def left_square_mean(x: torch.Tensor) -> torch.Tensor:
    """The official squeeze ``avg_pool2d(x, H, stride=H)``'s first window: the mean of x[..., :s, :s], s = min(H, W),
    shape (B, C, 1, 1). On H <= W < 2H (where the official code runs) this is exactly its pooled vector.

    Written as a mask from the traced sizes (row i < W, column j < H), so it exports with dynamic H, W."""
    rows = torch.arange(x.shape[-2], device=x.device)
    cols = torch.arange(x.shape[-1], device=x.device)
    mask = ((rows <= cols.amax())[:, None] & (cols <= rows.amax())[None, :]).to(x.dtype)  # (H, W), s x s ones
    return (x * mask).sum((2, 3), keepdim=True) / mask.sum()


@register_attention(
    "BAM",
    category="hybrid",
    paper="BAM: Bottleneck Attention Module",
    arxiv="1807.06514",
    year=2018,
    placement="backbone_end",
    notes=(
        "EAP's BAM uses dilation 2 with padding 1 (map shrinks; crashes off 7x7) and BatchNorm1d on the pooled "
        "vector (crashes at batch 1). Official code: BN on the hidden vector, sigmoid(Mc*Ms), left-HxH-square "
        "pooling (form='official'; 'official_global' pools globally); paper (default) sigmoid(Mc+Ms)."
    ),
    forms=FORMS,
)
class BAM(AttentionModule):
    """x * (1 + sigmoid(M_c(x) + M_s(x))), r=16, dilation 4, two dilated convs."""

    def __init__(
        self, c1: int, reduction: int = 16, dilation: int = 4, num_dilated: int = 2, fusion: str | None = None,
        min_channels: int | None = None, form: str = "paper",
    ):
        super().__init__()
        self.form = check_form("BAM", form, FORMS)
        fusion = form_option("BAM", form, "fusion", fusion, {"paper": "sum", "official": "mul",
                                                            "official_global": "mul"}, free=("paper",))
        if fusion not in ("sum", "mul"):
            raise ValueError(f"BAM fusion must be 'sum' (paper) or 'mul' (official code), got {fusion!r}")
        self.fusion = fusion
        hidden = form_hidden_width(self, "BAM", c1, reduction, min_channels, form, 8, exact=_OFFICIAL)
        # channel branch
        self.fc1 = nn.Conv2d(c1, hidden, 1)
        self.fc1_bn = BatchNorm2dSafe(hidden) if form in _OFFICIAL else None  # official BatchNorm1d(C/r)
        self.fc2 = nn.Conv2d(hidden, c1, 1)
        # spatial branch
        self.reduce = nn.Conv2d(c1, hidden, 1)
        self.reduce_bn = BatchNorm2dSafe(hidden)
        self.dilated = nn.ModuleList(
            nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation) for _ in range(num_dilated)
        )
        self.dilated_bn = nn.ModuleList(BatchNorm2dSafe(hidden) for _ in range(num_dilated))
        self.final = nn.Conv2d(hidden, 1, 1)

    def channel_att(self, x: torch.Tensor) -> torch.Tensor:
        """M_c, shape (B, C, 1, 1)."""
        s = left_square_mean(x) if self.form == "official" else x.mean((2, 3), keepdim=True)
        h = self.fc1(s)
        if self.fc1_bn is not None:
            h = self.fc1_bn(h)
        return self.fc2(F.relu(h))

    def spatial_att(self, x: torch.Tensor) -> torch.Tensor:
        """M_s, shape (B, 1, H, W)."""
        s = F.relu(self.reduce_bn(self.reduce(x)))
        for conv, bn in zip(self.dilated, self.dilated_bn):
            s = F.relu(bn(conv(s)))
        return self.final(s)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """M(F) = sigmoid(M_c + M_s), (B, C, H, W) (the product with ``fusion="mul"``)."""
        mc, ms = self.channel_att(x), self.spatial_att(x)
        return torch.sigmoid(mc + ms if self.fusion == "sum" else mc * ms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x * self.gate(x)

    def attention_maps(self, x: torch.Tensor) -> dict:
        return self.gate_maps(self.gate(x), "gate M = sigmoid(M_c + M_s)" if self.fusion == "sum" else
                              "gate M = sigmoid(M_c * M_s)")
