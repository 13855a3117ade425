"""GE: Gather-Excite.

Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite: Exploiting Feature Context in CNNs", NeurIPS 2018,
arXiv:1810.12348. Official code: hujie-frank/GENet (Torch/Caffe, partial); timm ``GatherExcite`` is the usual
PyTorch reference (ODS ``GE.py`` copies it).

Gather with extent e: parameter-free (GE-theta-minus) global average pooling for e = 0, else average pooling with
kernel 2e - 1, stride e, padding e - 1 (padding excluded); parameterised (GE-theta, ``extra_params=True``, e > 0):
log2(e) depthwise 3x3 stride-2 convs with BN, ReLU between them. Optional excite MLP (GE-theta-plus, ``use_mlp``):
biased 1x1 C -> C/16 -> ReLU -> 1x1 -> C. Excite: y = x * sigmoid(the gathered map resized (nearest) to H x W).

Forms (``form=``):

- ``"paper"`` (default): the operators chosen by ``extent`` / ``extra_params`` / ``use_mlp``; the defaults (global
  gather, MLP: timm's default) compute SE's function. Hidden width ``max(C // r, min(min_channels, C))``, floor 8.
- ``"timm"``: timm's ``GatherExcite`` (v1.0.20) for every configuration, hidden width max(1, round-half-up(C / r))
  (C=40: 3, where C // 16 = 2); no ``min_channels``. Golden tests ``GatherExcite__timm_*``.
- ``"official"``: the authors' operator that runs at any size, GE-theta-minus with a global extent
  (``RN50-GEPF.prototxt``): ``x * sigmoid(GAP(x))``, no parameters (golden test ``GatherExcite__caffe_GEPF``); it fixes
  ``extent=0``, ``extra_params=False``, ``use_mlp=False``. Their GE-theta prototxts need a fixed input size.

Departures from the paper:
- GE-theta(+) with a *global* extent needs a kernel as large as the feature map (timm's ``feat_size``), so
  ``extent=0`` with ``extra_params=True`` raises: use a finite extent with parameters, or the parameter-free gather.
- The paper form's hidden width floor (``build_notes``). Gathers are ``x.mean`` / ``avg_pool2d``, the resize nearest
  ``interpolate`` (deterministic). The parameterised gather's BNs are ``BatchNorm2dSafe`` (PyTorch eps/momentum).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, check_form, form_hidden_width, form_option
from models.registry.protocol import GatedAttention
from models.registry import register_attention


FORMS = ("paper", "timm", "official")


def timm_width(c: int, reduction: float) -> int:
    """timm's ``make_divisible(C / r, divisor=1, round_limit=0)``: C / r rounded half up, at least 1."""
    return max(1, int(c / reduction + 0.5))


@register_attention(
    "GatherExcite",
    category="channel",
    paper="Gather-Excite: Exploiting Feature Context in CNNs",
    arxiv="1810.12348",
    year=2018,
    placement="backbone_end",
    notes=(
        "Default (timm: global extent, no extra params, MLP) equals SE. Global extent with extra params needs a "
        "fixed feat_size and is refused here. ODS GE.py imports timm internals missing from current timm. "
        "form='timm' rounds the width as timm does; form='official' is the authors' parameter-free GE."
    ),
    forms=FORMS,
)
class GatherExcite(GatedAttention):
    """x * sigmoid(resize(MLP(gather_e(x)))), extent 0 (global) by default."""

    gate_name = "excite gate"

    def __init__(
        self, c1: int, extent: int = 0, extra_params: bool = False, use_mlp: bool | None = None,
        reduction: float = 16, min_channels: int | None = None, form: str = "paper",
    ):
        super().__init__()
        self.form = check_form("GatherExcite", form, FORMS)
        free = ("paper", "timm")
        extent = int(form_option("GatherExcite", form, "extent", extent, dict.fromkeys(FORMS, 0), free))
        extra_params = form_option("GatherExcite", form, "extra_params", extra_params, dict.fromkeys(FORMS, False), free)
        use_mlp = form_option("GatherExcite", form, "use_mlp", use_mlp,
                              {"paper": True, "timm": True, "official": False}, free)
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
        if form != "paper" and min_channels is not None:
            raise ValueError(f"GatherExcite form={form!r} has its own hidden width; leave min_channels out "
                             "(it floors the width of form='paper' only)")
        if use_mlp:
            hidden = (timm_width(c1, reduction) if form == "timm" else
                      form_hidden_width(self, "GatherExcite", c1, reduction, min_channels, form, 8))
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
