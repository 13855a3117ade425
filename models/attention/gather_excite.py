"""GE: Gather-Excite.

Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite: Exploiting Feature Context in CNNs", NeurIPS 2018,
arXiv:1810.12348. Official code: hujie-frank/GENet (Torch/Caffe, partial); timm ``GatherExcite`` is the usual
PyTorch reference (and ODS ``GE.py`` copies it).

- Gather xi_G with extent e:
  - parameter-free (GE-theta-minus): global average pooling for e = 0, otherwise average pooling with kernel
    2e - 1, stride e, padding e - 1 (padding excluded from the averages);
  - parameterised (GE-theta, ``extra_params=True``, e > 0): log2(e) depthwise 3x3 stride-2 convs, each followed
    by BN, with ReLU between them.
- Optional excite MLP (GE-theta-plus, ``use_mlp=True``): 1x1 C -> C/16 -> ReLU -> 1x1 C/16 -> C, with biases.
- Excite: y = x * sigmoid(nearest-neighbour resize of the gathered map to (H, W)).

Defaults are timm's (extent 0 = global, use_mlp=True, no extra params, r = 16): the parameter-free global
gather followed by the excite MLP. With these defaults GE computes the same function as SE; the local extents
(``extent=2, 4, 8``) and ``extra_params=True`` give the paper's other operators.

Departures from the paper:
- The paper's best operator, GE-theta(+) with a *global* extent, gathers with a depthwise conv whose kernel is the
  whole feature map, i.e. it needs a fixed input size (timm's ``feat_size``). The fork must run on any H, W
  (stride probe, multi-scale, rect validation), so ``extent=0`` with ``extra_params=True`` raises; use a finite
  extent with parameters, or the parameter-free global gather.
- The hidden width is ``max(C // r, min(min_channels, C))``, default floor 8 (timm rounds C/16 and allows 1;
  ``min_channels=1`` gives exactly C // r); a floor is recorded in ``build_notes``.
- Global gathering is ``x.mean((2, 3))``; the local gather uses ``avg_pool2d`` (deterministic) and the resize is
  nearest ``interpolate`` (deterministic; the CUDA restriction covers only the linear/cubic modes).
- The BNs of the parameterised gather are ``BatchNorm2dSafe`` (the stride-2 convs reach 1x1 on small maps).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, hidden_width
from models.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "GatherExcite",
    category="channel",
    paper="Gather-Excite: Exploiting Feature Context in CNNs",
    arxiv="1810.12348",
    year=2018,
    placement="backbone_end",
    notes=(
        "Default (timm: global extent, no extra params, MLP) equals SE. Global extent with extra params needs a "
        "fixed feat_size and is refused here. ODS GE.py imports timm internals missing from current timm."
    ),
)
class GatherExcite(AttentionModule):
    """x * sigmoid(resize(MLP(gather_e(x)))), extent 0 (global) by default."""

    def __init__(
        self, c1: int, extent: int = 0, extra_params: bool = False, use_mlp: bool = True, reduction: float = 16,
        min_channels: int = 8,
    ):
        super().__init__()
        extent = int(extent)
        if extent < 0 or (extent > 1 and extent % 2):
            raise ValueError(f"GatherExcite extent must be 0 (global) or even, got {extent}")
        if extra_params and extent == 0:
            raise ValueError(
                "GatherExcite with a global extent and extra_params needs a depthwise conv as large as the feature "
                "map (a fixed input size); use extent=2/4/8 with extra_params, or extra_params=False"
            )
        if extra_params and extent & (extent - 1):
            raise ValueError(f"GatherExcite with extra_params needs a power-of-two extent, got {extent}")
        self.extent = extent
        self.gather = None
        if extra_params:
            layers: list[nn.Module] = []
            n = int(math.log2(extent))
            for i in range(n):
                layers += [nn.Conv2d(c1, c1, 3, stride=2, padding=1, groups=c1, bias=False), BatchNorm2dSafe(c1)]
                if i != n - 1:
                    layers.append(nn.ReLU())
            self.gather = nn.Sequential(*layers)
        self.mlp = None
        if use_mlp:
            hidden = hidden_width(self, c1, reduction, min_channels)
            self.mlp = nn.Sequential(nn.Conv2d(c1, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, c1, 1))

    def gathered(self, x: torch.Tensor) -> torch.Tensor:
        """xi_G(x): (B, C, 1, 1) for the global extent, else about (B, C, H/e, W/e)."""
        if self.gather is not None:
            return self.gather(x)
        if self.extent == 0:
            return x.mean((2, 3), keepdim=True)
        e = self.extent
        return F.avg_pool2d(x, 2 * e - 1, stride=e, padding=e - 1, count_include_pad=False)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """sigmoid(xi_E(xi_G(x))): (B, C, 1, 1) for the global extent, else (B, C, H, W)."""
        g = self.gathered(x)
        if self.mlp is not None:
            g = self.mlp(g)
        if self.extent > 0:
            g = F.interpolate(g, size=x.shape[-2:], mode="nearest")
        return torch.sigmoid(g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)

    def attention_maps(self, x: torch.Tensor) -> dict:
        return self.gate_maps(self.gate(x), "excite gate")
