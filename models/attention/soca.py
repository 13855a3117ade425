"""SOCA: Second-Order Channel Attention (from SAN).

Dai, Cai, Zhang, Xia, Zhang, "Second-order Attention Network for Single Image Super-Resolution", CVPR 2019
(CVF open access; no arXiv version). Official code: daitao/SAN (``model/san.py`` class SOCA, and
``model/MPNCOV/python/MPNCOV.py`` Covpool / Sqrtm from iSQRT-COV).

1. Covariance pooling: X = x reshaped to (B, C, M), M = H*W; Sigma = (1/M) Xc Xc^T with Xc = X minus its mean
   over M (identical to SAN's X I_hat X^T with I_hat = (1/M)(I - (1/M) 1 1^T), without building the M x M I_hat).
2. Matrix square root by the coupled Newton-Schulz iteration (T = 5): pre-normalise A = Sigma / tr(Sigma),
   Y_0 = A, Z_0 = I; P = (3I - Z Y) / 2, Y <- Y P, Z <- P Z (the last step updates Y only); post-compensate
   Y * sqrt(tr(Sigma)).
3. z = mean over rows of the (symmetric) square root, (B, C); w = sigmoid(W_2 ReLU(W_1 z)) with biased 1x1
   convs C -> C/r -> C; y = x * w.

Five iterations give an approximate square root by design (as in SAN); autograd differentiates the plain
matrix products, which also export to ONNX. There is no eigendecomposition.

Forms (``form=``): the paper and the official code compute the same function; they differ from this module only in
the hidden width.

- ``"paper"`` (default): hidden width ``max(C // r, min(min_channels, C))``, ``min_channels`` default 8
  (``min_channels=1``: exactly C // r). The default because earlier versions built it (existing configs keep
  their parameter counts).
- ``"official"``: SAN's ``SOCA`` with the exact width C // r (``min_channels`` is not accepted; 0 is an error naming
  the layer); equal to the official code within 1e-10 (golden test ``SOCA``, r = 8): the remaining difference is
  ``eps`` on the trace, kept in this form too (the official code gives NaN on a constant map; ``eps=0`` removes the
  difference and brings the NaN back).

Departures from the paper:
- The covariance is computed as Xc Xc^T / M, never materialising SAN's M x M matrix (164 MB per sample at
  80x80, 2.4 GiB at 160x160); mathematically identical.
- eps (1e-5) is added to the trace before the pre-normalisation: an all-zero or constant map (a blank image, the
  zero image of the shape probe) otherwise gives 0/0 = NaN. The post-compensation uses the same tr + eps.
- Covariance and Newton-Schulz run in fp32 with autocast disabled (fp16 covariances overflow at moderate
  activations), and the pooled vector is cast back to the input dtype before the FC layers.
- SAN's centre crop of maps larger than 1000x1000 is not reproduced (YOLO feature maps are far smaller and the
  crop would make the graph data-dependent).
- SAN's hand-written autograd Functions (Covpool/Sqrtm) are not ported; autograd differentiates the iteration.
  (Their ``iterN < 2`` backward path references an undefined name.)
- Default reduction r = 16: the value SAN trains with (``--reduction`` default 16, passed to SOCA); the SOCA
  class's own keyword default is 8. The hidden width of the paper form is ``max(C // r, min(min_channels, C))``,
  default floor 8 (``min_channels=1``: exactly C // r); a floor is recorded in ``build_notes``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import check_form, form_hidden_width
from models.registry.protocol import AttentionModule
from models.registry import register_attention


def newton_schulz_sqrt(cov: torch.Tensor, iterations: int = 5, eps: float = 1e-5) -> torch.Tensor:
    """Approximate square root of a batch of SPD matrices (B, C, C) by iSQRT-COV's coupled Newton-Schulz."""
    c = cov.shape[-1]
    eye = torch.eye(c, dtype=cov.dtype, device=cov.device)
    trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
    return _ns_from_trace(cov, trace, iterations, eps, eye)


def _ns_from_trace(cov, trace, iterations, eps, eye):
    norm = (trace + eps).reshape(-1, 1, 1)
    a = cov / norm
    eye3 = 3.0 * eye
    y, z = a, eye
    for _ in range(iterations - 1):
        p = 0.5 * (eye3 - torch.matmul(z, y))
        y, z = torch.matmul(y, p), torch.matmul(p, z)
    y = 0.5 * torch.matmul(y, eye3 - torch.matmul(z, y))
    return y * norm.sqrt()


FORMS = ("paper", "official")


@register_attention(
    "SOCA",
    category="channel",
    paper="Second-order Attention Network for Single Image Super-Resolution",
    arxiv="",
    year=2019,
    placement="backbone_end",
    notes=(
        "SAN/blog ports build an M x M centring matrix (2.4 GiB/sample at 160x160), NaN on zero input (trace 0) "
        "and overflow in fp16. Here: Xc Xc^T / M, eps on the trace, fp32 statistics. Builds a C x C covariance "
        "(O(C^2 N + T C^3) per sample)."
    ),
    forms=FORMS,
)
class SOCA(AttentionModule):
    """x * sigmoid(MLP(row-mean(sqrtm_NS(cov(x))))), T=5 Newton-Schulz iterations, r=16."""

    def __init__(self, c1: int, reduction: int = 16, iterations: int = 5, eps: float = 1e-5,
                 min_channels: int | None = None, form: str = "paper"):
        super().__init__()
        if iterations < 1:
            raise ValueError(f"SOCA needs at least one Newton-Schulz iteration, got {iterations}")
        self.form = check_form("SOCA", form, FORMS)
        hidden = form_hidden_width(self, "SOCA", c1, reduction, min_channels, form, 8)
        self.iterations, self.eps = int(iterations), float(eps)
        self.fc1 = nn.Conv2d(c1, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, c1, 1)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Second-order descriptor (B, C) in fp32 (fp64 for fp64 input): row means of the Newton-Schulz square root of cov(x)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.to(torch.promote_types(x.dtype, torch.float32)).flatten(2)  # (B, C, M), fp32 or fp64
            xc = xf - xf.mean(-1, keepdim=True)
            cov = torch.matmul(xc, xc.transpose(1, 2)) / xf.shape[-1]
            trace = xc.square().mean(-1).sum(-1)  # tr(cov) without a diagonal op
            eye = torch.eye(x.shape[1], dtype=xf.dtype, device=xf.device)
            root = _ns_from_trace(cov, trace, self.iterations, self.eps, eye)
            return root.mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.pooled(x).to(x.dtype)[..., None, None]  # (B, C, 1, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(z))))
