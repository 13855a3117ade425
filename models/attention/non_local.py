"""Non-local block (embedded Gaussian).

Wang, Girshick, Gupta, He, "Non-local Neural Networks", CVPR 2018, arXiv:1711.07971.
Official code: facebookresearch/video-nonlocal-net (Caffe2, ``lib/models/nonlocal_helper.py``); common PyTorch
reference AlexHex7/Non-local_pytorch.

theta, phi, g = 1x1 convs C -> C/2; with sub-sampling the N = H*W queries attend to N' ~ N/4 keys (2x2 max-pool).
y = softmax_keys(theta^T phi) g^T as (B, C/2, H, W); z = x + BN(W_z y), W_z a 1x1 conv C/2 -> C, the BN's scale and
shift zero at init (an identity start).

Forms (``form=``):

- ``paper`` (default): as the paper and the common PyTorch port: the max-pool follows phi and g, unscaled logits, BN
  eps 1e-5; the pool uses ``ceil_mode=True`` (odd sides keep their last row/column, 1x1 pools to 1x1).
- ``official``: the released Caffe2 code and configs (golden tests ``NonLocal``, ``NonLocal__even``, against a
  re-implementation of its graph): the max-pool on the *input* x, phi and g of the pooled input; logits scaled by
  ci^-0.5 (``NONLOCAL.USE_SCALE``, ci = C/2); BN eps 1.0000001e-5, momentum 0.1. Floor pooling (11x7 -> 5x3 keys);
  a 1-pixel side, where Caffe2 fails, is not pooled (1x7 -> 1x3 keys).

Departures from the paper:
- ``ceil_mode`` pooling (paper form). The BN is ``BatchNorm2dSafe``. Inner width ``max(C // reduction,
  min(min_channels, C))``, ``min_channels=1``: exactly C // 2, never 0.
- Attention through ``scaled_dot_product_attention`` (one head, scale passed): the (N x N') map is never stored
  (``attention_maps`` for heatmaps builds it). The cost is compute, N N' C/2 multiply-adds twice per pass: P5 by
  default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, at_least_fp32, autocast_off, check_form, hidden_width
from models.attention._sdpa import fused_attention
from models.registry.protocol import AttentionModule
from models.registry import register_attention

FORMS = ("paper", "official")
CAFFE2_BN_EPS = 1.0000001e-5  # video-nonlocal-net lib/core/config.py MODEL.BN_EPSILON


def floor_pool_input(x: torch.Tensor) -> torch.Tensor:
    """Caffe2's 2x2 stride-2 max-pool in floor mode (odd sizes drop the last row/column), except that a 1-pixel
    side is kept instead of pooling to nothing. Written as a crop + ceil-mode pool so that it stays dynamic in ONNX
    (the crop sizes are traced from the input shape)."""
    h, w = x.shape[-2:]
    x = x[..., : h - h % 2 + (h == 1), : w - w % 2 + (w == 1)]
    return F.max_pool2d(x, 2, 2, ceil_mode=True)


@register_attention(
    "NonLocal",
    category="self-attention",
    paper="Non-local Neural Networks",
    arxiv="1711.07971",
    year=2018,
    placement="p5",
    dense=True,
    notes="Ports use floor max-pooling (drops a row/column at odd sizes, fails at 1x1) and fp16 logits. "
    "form=official: the Caffe2 code's input max-pool (floor), ci^-0.5 logit scale and BN eps. SDPA: no N x N' map "
    "stored.",
    forms=FORMS,
)
class NonLocal(AttentionModule):
    """z = x + BN(W_z softmax(theta^T phi) g), embedded Gaussian, BN zero-initialised; ``form`` paper | official."""

    def __init__(self, c1: int, reduction: int = 2, sub_sample: bool = True, min_channels: int = 1,
                 form: str = "paper"):
        super().__init__()
        check_form("NonLocal", form, FORMS)
        self.form = form
        ci = hidden_width(self, c1, reduction, min_channels, "inner width")
        self.sub_sample = bool(sub_sample)
        self.scale = ci**-0.5 if form == "official" else 1.0
        self.theta = nn.Conv2d(c1, ci, 1)
        self.phi = nn.Conv2d(c1, ci, 1)
        self.g = nn.Conv2d(c1, ci, 1)
        # paper form: pool after phi and g (ceil mode); official form: floor_pool_input before them
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True) if self.sub_sample and form == "paper" else nn.Identity()
        self.w_z = nn.Conv2d(ci, c1, 1)
        self.bn = BatchNorm2dSafe(c1, eps=CAFFE2_BN_EPS) if form == "official" else BatchNorm2dSafe(c1)
        self.init_identity()

    def _keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """phi and g on the key grid, (B, ci, H', W') each."""
        if self.form == "official" and self.sub_sample:
            x = floor_pool_input(x)
        return self.pool(self.phi(x)), self.pool(self.g(x))

    def affinity(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(softmax(scale theta^T phi) of shape (B, N, N'), rows = queries; the key grid (H', W')). The explicit map,
        for heatmaps: the forward never builds it."""
        theta = self.theta(x).flatten(2)  # (B, ci, N)
        phi, _ = self._keys_values(x)
        with autocast_off(x):
            f = torch.bmm(at_least_fp32(theta).transpose(1, 2), at_least_fp32(phi.flatten(2))) * self.scale
        return f.softmax(-1), tuple(phi.shape[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, N, ci)
        phi, g = self._keys_values(x)
        y = fused_attention(theta, phi.flatten(2).transpose(1, 2).unsqueeze(1),
                            g.flatten(2).transpose(1, 2).unsqueeze(1), self.scale)  # (B, 1, N, ci)
        return x + self.bn(self.w_z(y[:, 0].transpose(1, 2).reshape(b, -1, h, w)))

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The attention each (sub-sampled) key position receives, averaged over all queries: (B, H, W)."""
        f, grid = self.affinity(x)
        received = f.mean(1).reshape(x.shape[0], 1, *grid)  # each key stands for a 2x2 block when sub-sampled
        return {"spatial": F.interpolate(received, size=x.shape[2:], mode="nearest")[:, 0],
                "spatial_how": "attention each key position receives, mean over queries"}

    def init_identity(self) -> bool:
        with torch.no_grad():
            self.bn.weight.zero_()
            self.bn.bias.zero_()
        return True

    def attention_map_elements(self, h: int, w: int) -> int:
        """Elements of the attention working set of one training sample: 8 C N, calibrated in docs/benchmarks.md. The
        (N x N') map is not stored."""
        return 8 * self.w_z.out_channels * h * w
