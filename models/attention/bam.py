"""BAM: Bottleneck Attention Module.

Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018, arXiv:1807.06514.
Official code: Jongchan/attention-module (MODELS/bam.py).

Channel M_c = FC(C/r -> C)(ReLU(FC(C -> C/r)(GAP x))), (B, C, 1, 1). Spatial M_s = 1x1 (C/r -> 1) of
[3x3 conv, dilation d, padding d -> BN -> ReLU] x 2 of ReLU(BN(1x1 (C -> C/r) x)), (B, 1, H, W).
y = x * (1 + sigmoid(M_c + M_s)). Defaults r = 16, d = 4, two dilated convs, one hidden FC layer.

Forms (``form=``):

- ``"paper"`` (default): sum fusion ``sigmoid(M_c + M_s)``, global-mean squeeze. ``fusion`` (``"sum"``/``"mul"``) is
  its ablation switch; ``min_channels`` floors its hidden width, ``max(C // r, min(min_channels, C))`` (default 8).
- ``"official"``: the official forward (golden test ``BAM``): hidden width exactly C // r (0 is an error),
  ``FC -> BatchNorm1d(C/r) -> ReLU -> FC`` in the channel branch (a ``BatchNorm2dSafe``: running statistics at batch
  1, where the official code raises), product fusion ``sigmoid(M_c * M_s)``, and the official squeeze
  ``avg_pool2d(x, H, stride=H)``: the mean of the left H x H square, the global mean only on square maps. Where the
  official code raises (H > W, or W >= 2H) the top-left min(H, W) square is pooled.
- ``"official_global"``: the official layers and product fusion with a global-mean squeeze: equal to the official
  code on square maps (golden test ``BAM__square``), the same function on rectangles (rect validation).

Departures from the paper (form ``"paper"``):
- The paper's BatchNorm at the end of each branch (on M_c and on the 1-channel M_s) is not applied: at inference
  each folds into the layer before it; only the training-time batch normalisation is gone. (The official code has
  neither; its one extra BatchNorm is on the hidden vector, ``form="official"``.)
- The hidden width floor ``min_channels`` (noted in ``build_notes`` when it applies).
- Spatial BatchNorms are ``BatchNorm2dSafe`` with PyTorch's eps/momentum (every form). The FCs are 1x1 convs on
  (B, C, 1, 1); the squeeze is ``x.mean((2, 3))``.
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
        "EAP's BAM uses 3 hidden FCs and 3 dilated convs with dilation 2 but padding 1 (map shrinks; crashes off "
        "7x7) and BatchNorm1d on the pooled vector (crashes at batch 1). Official code: BN on the hidden vector, "
        "sigmoid(Mc*Ms), left-HxH-square pooling (form='official'; 'official_global' pools globally); paper (default) "
        "sigmoid(Mc+Ms)."
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
