"""Non-local block (embedded Gaussian).

Wang, Girshick, Gupta, He, "Non-local Neural Networks", CVPR 2018, arXiv:1711.07971.
Official code: facebookresearch/video-nonlocal-net (Caffe2, ``lib/models/nonlocal_helper.py``); common PyTorch
reference AlexHex7/Non-local_pytorch.

theta, phi, g = 1x1 convs C -> C/2. With the sub-sampling trick the N = H*W queries attend to N' ~ N/4 keys
(2x2 max-pool). f = softmax over keys of theta^T phi (B, N, N'), y = f g^T reshaped to (B, C/2, H, W),
z = x + BN(W_z y) with W_z a 1x1 conv C/2 -> C and the BN scale (and shift) initialised to zero, so the block
starts as the identity.

Two forms (``form``, settable from a YAML row: ``[-1, 1, NonLocal, [{form: official}]]``):

- ``paper`` (default): as the paper writes it and as the common PyTorch port computes it: the max-pool follows
  phi and g ("a max pooling layer after phi and g"), the logits theta^T phi are unscaled (f = exp(theta^T phi)),
  BN eps 1e-5. Kept as the default because it is the formula of the paper and of the port most YOLO users
  compare against, and because it keeps every existing checkpoint's outputs.
- ``official``: what the released Caffe2 code computes with its released configs (verified against a
  re-implementation of the Caffe2 graph, tests/fixtures/golden/NonLocal*.npz, max |diff| 1e-12 in float64):
  the 2x2 stride-2 max-pool is applied to the *input* x, and phi, g are the 1x1 convs of the pooled input; the
  logits are scaled by ci^-0.5 (``NONLOCAL.USE_SCALE``, on in the released configs; ci = C/2 the inner width);
  BN eps 1.0000001e-5 (``MODEL.BN_EPSILON``; 1e-5 changes float64 outputs by 3e-10), momentum 0.1 in PyTorch's
  convention (Caffe2 0.9). Caffe2 pools in floor mode: an odd H or W drops the last row/column from the keys
  (11x7 -> 5x3 keys). Where Caffe2 fails, a 1-pixel side (floor gives 0 keys), this form does not pool along
  that side (1x7 -> 1x3 keys, 1x1 -> 1x1): the only departure from the official output, at sizes where the
  official code raises. Batch-1 training on a 1x1 map uses the BN's running statistics (``BatchNorm2dSafe``).

Departures from the paper (``paper`` form):
- The sub-sampling max-pool uses ``ceil_mode=True``: odd H or W keep their last row/column instead of
  dropping it, and a 1x1 map pools to 1x1 instead of failing.
- The output BN is ``BatchNorm2dSafe`` (PyTorch defaults eps 1e-5, momentum 0.1; ultralytics'
  ``initialize_weights`` leaves it alone; a single-value batch in train mode uses running statistics).
- Inner width is ``max(C // reduction, min(min_channels, C))`` with ``min_channels=1``: exactly C // 2, never 0 (a
  floor is recorded in ``build_notes``).

Memory (issue 15): the forward uses ``scaled_dot_product_attention`` (one head, queries (B, 1, N, C/2), keys and
values (B, 1, N', C/2), scale 1 or ci^-0.5 passed explicitly; see ``models/attention/_sdpa.py``): the (N x N')
map is never stored, in either form. Measured on CPU (1 thread, batch 1), explicit map -> now: 80x80 = P3 of a 640
input, C=128: forward peak 80 -> 10 MiB, forward+backward 131 -> 23 MiB, time fwd 0.47x, fwd+bwd 0.53x; 20x20,
C=512: memory unchanged (3 / 6 MiB), time 0.89x / 0.92x.
``attention_maps`` (heatmaps) still builds the full map. The cost is now compute, N * N' * C/2 multiply-adds
twice per pass (2.6 GFLOPs per 640 image at P3 of yolov5s), not memory; see ``models/engine/checks.py``.
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
    "stored (P3 80x80 C=128 fwd+bwd 131 -> 23 MiB).",
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
        """Elements of the attention working set of one training sample: 8 C N (the measured forward+backward peak is
        7.5 C N at 80x80 and 20x20, CPU fp32). The (N x N') map is not stored."""
        return 8 * self.w_z.out_channels * h * w
