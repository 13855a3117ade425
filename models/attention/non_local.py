"""Non-local block (embedded Gaussian).

Wang, Girshick, Gupta, He, "Non-local Neural Networks", CVPR 2018, arXiv:1711.07971.
Official code: facebookresearch/video-nonlocal-net (Caffe2); common PyTorch reference AlexHex7/Non-local_pytorch.

theta, phi, g = 1x1 convs C -> C/2. With the sub-sampling trick, phi and g are followed by a 2x2 max-pool,
so the N = H*W queries attend to N' ~ N/4 keys. f = softmax over keys of theta^T phi (B, N, N'),
y = f g^T reshaped to (B, C/2, H, W), z = x + BN(W_z y) with W_z a 1x1 conv C/2 -> C and the BN scale
(and shift) initialised to zero, so the block starts as the identity.

Departures from the paper:
- The sub-sampling max-pool uses ``ceil_mode=True``: odd H or W keep their last row/column instead of
  dropping it, and a 1x1 map pools to 1x1 instead of failing.
- The logits theta^T phi are unscaled dot products: they and their softmax are computed in fp32 with
  autocast off, and the weights are cast back to the input dtype.
- The output BN is ``BatchNorm2dSafe`` (PyTorch defaults eps 1e-5, momentum 0.1; ultralytics'
  ``initialize_weights`` leaves it alone; a single-value batch in train mode uses running statistics).
- Inner width is ``max(C // reduction, min(min_channels, C))`` with ``min_channels=1``: exactly C // 2, never 0 (a
  floor is recorded in ``build_notes``).

Dense: the (B, N, N') map makes this a P5 module (see ``models/dense_memory.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, at_least_fp32, autocast_off, hidden_width
from models.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "NonLocal",
    category="self-attention",
    paper="Non-local Neural Networks",
    arxiv="1711.07971",
    year=2018,
    placement="p5",
    dense=True,
    notes="Ports use floor max-pooling (drops a row/column at odd sizes, fails at 1x1) and fp16 logits.",
)
class NonLocal(AttentionModule):
    """z = x + BN(W_z softmax(theta^T phi) g), embedded Gaussian, BN zero-initialised."""

    def __init__(self, c1: int, reduction: int = 2, sub_sample: bool = True, min_channels: int = 1):
        super().__init__()
        ci = hidden_width(self, c1, reduction, min_channels, "inner width")
        self.sub_sample = bool(sub_sample)
        self.theta = nn.Conv2d(c1, ci, 1)
        self.phi = nn.Conv2d(c1, ci, 1)
        self.g = nn.Conv2d(c1, ci, 1)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True) if self.sub_sample else nn.Identity()
        self.w_z = nn.Conv2d(ci, c1, 1)
        self.bn = BatchNorm2dSafe(c1)
        self.init_identity()

    def affinity(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(softmax(theta^T phi) of shape (B, N, N'), rows = queries; the key grid (H', W'))."""
        theta = self.theta(x).flatten(2)  # (B, ci, N)
        phi = self.pool(self.phi(x))
        with autocast_off(x):
            f = torch.bmm(at_least_fp32(theta).transpose(1, 2), at_least_fp32(phi.flatten(2))).softmax(-1)
        return f, tuple(phi.shape[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        f, _ = self.affinity(x)  # (B, N, N')
        g = self.pool(self.g(x)).flatten(2)  # (B, ci, N')
        y = torch.bmm(g, f.to(g.dtype).transpose(1, 2))  # (B, ci, N)
        return x + self.bn(self.w_z(y.reshape(b, -1, h, w)))

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The attention each (sub-sampled) key position receives, averaged over all queries: (B, H', W')."""
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
        """Elements of the (N, N') attention map of one sample."""
        keys = ((h + 1) // 2) * ((w + 1) // 2) if self.sub_sample else h * w
        return h * w * keys
