"""CCNet: recurrent criss-cross attention (RCCA).

Huang, Wang, Huang, Huang, Wei, Liu, "CCNet: Criss-Cross Attention for Semantic Segmentation",
ICCV 2019 / TPAMI 2020, arXiv:1811.11721. Official code: speedinghzl/CCNet (CUDA ``ca_weight``/``ca_map``
kernels and a later pure-PyTorch ``CrissCrossAttention``, which the golden tests ``CrissCross``/``__R1`` check).

One pass: Q, K = 1x1 convs C -> C/8, V = 1x1 conv C -> C (biased). Each position attends to the H positions of its
column and the W of its row (the self position once: masked out of the column set); one softmax over the H + W
energies, O_u = sum_v A_uv V_v, y = gamma * O + x, gamma = 0 at init. RCCA applies the same module R = 2 times.

Departures from the paper: none in the computation. The self position is masked with a boolean mask built on the
input's device (ONNX-exportable, any dtype); energies and softmax run in fp32 with autocast off; the CCNet head's
reduce/expand convs are not part of the module; the Q/K width is ``max(C // reduction, min(min_channels, C))``,
``min_channels=1`` (exactly C // 8, never 0). No separate official form: the module is the authors' code.

Not to be confused with the seed article's ``CCN``, whose code is a residual convolution (``ResidualConv``; the
name builds that block, with a warning).
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import at_least_fp32, autocast_off, hidden_width
from models.registry.protocol import AttentionModule
from models.registry import register_attention


class CrissCrossAttention(nn.Module):
    """One criss-cross pass: x + gamma * O."""

    def __init__(self, c1: int, c_qk: int):
        super().__init__()
        self.query = nn.Conv2d(c1, c_qk, 1)
        self.key = nn.Conv2d(c1, c_qk, 1)
        self.value = nn.Conv2d(c1, c1, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Criss-cross weights (B, H, W, H + W): [..., :H] over the column, [..., H:] over the row."""
        h = x.shape[2]
        q, k = self.query(x), self.key(x)
        with autocast_off(x):
            qf, kf = at_least_fp32(q), at_least_fp32(k)
            e_col = torch.einsum("bcij,bckj->bijk", qf, kf)  # query (i, j), key (k, j): (B, H, W, H)
            e_row = torch.einsum("bcij,bcik->bijk", qf, kf)  # query (i, j), key (i, k): (B, H, W, W)
            idx = torch.arange(h, device=x.device)
            self_pos = (idx[:, None] == idx[None, :]).unsqueeze(1)  # (H, 1, H): key row k == query row i
            e_col = e_col.masked_fill(self_pos, float("-inf"))
            return torch.cat((e_col, e_row), -1).softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        v = self.value(x)
        attn = self.attention(x).to(v.dtype)
        a_col, a_row = torch.split(attn, [h, w], -1)
        out = torch.einsum("bijk,bckj->bcij", a_col, v) + torch.einsum("bijk,bcik->bcij", a_row, v)
        return x + self.gamma * out


@register_attention(
    "CrissCross",
    category="self-attention",
    paper="CCNet: Criss-Cross Attention for Semantic Segmentation",
    arxiv="1811.11721",
    year=2019,
    placement="backbone_end",
    dense=False,
    notes="EAP/Serge-weihao build the -inf diagonal with torch.diag on CPU float32 (breaks .half(), CUDA, ONNX) "
    "and call .cuda(); the blog 'CCN' is a plain residual conv. Here: mask-based -inf, fp32 energies, R=2.",
)
class CrissCross(AttentionModule):
    """RCCA: the same criss-cross module applied ``recurrence`` times (R = 2)."""

    def __init__(self, c1: int, reduction: int = 8, recurrence: int = 2, min_channels: int = 1):
        super().__init__()
        if recurrence < 1:
            raise ValueError(f"recurrence must be >= 1, got {recurrence}")
        self.cca = CrissCrossAttention(c1, hidden_width(self, c1, reduction, min_channels, "q/k width"))
        self.recurrence = int(recurrence)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.recurrence):
            x = self.cca(x)
        return x

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The attention each position receives from its row and column, averaged over queries and over the
        R passes: (B, H, W)."""
        h, w = x.shape[-2:]
        received = 0
        for _ in range(self.recurrence):
            a_col, a_row = torch.split(self.cca.attention(x).float(), [h, w], -1)  # query (i, j)
            received = received + a_col.sum(1).transpose(1, 2) + a_row.sum(2)  # key (k, j) / key (i, k)
            x = self.cca(x)
        return {"spatial": received / (h * w * self.recurrence),
                "spatial_how": "attention each position receives, mean over queries and passes"}

    def init_identity(self) -> bool:
        with torch.no_grad():
            self.cca.gamma.zero_()
        return True
