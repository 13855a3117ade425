"""SOCA: Second-Order Channel Attention (from SAN).

Dai, Cai, Zhang, Xia, Zhang, "Second-order Attention Network for Single Image Super-Resolution", CVPR 2019
(CVF open access; no arXiv version). Official code: daitao/SAN (``model/san.py`` class SOCA, and
``model/MPNCOV/python/MPNCOV.py`` Covpool / Sqrtm from iSQRT-COV).

Covariance Sigma = (1/M) Xc Xc^T of x as (B, C, M), M = H*W, Xc centred over M. Its square root by the coupled
Newton-Schulz iteration (T = 5): A = Sigma / tr(Sigma), Y_0 = A, Z_0 = I; P = (3I - Z Y) / 2, Y <- Y P, Z <- P Z (the
last step updates Y only); times sqrt(tr(Sigma)): approximate by design, as in SAN. z = row mean of the root (B, C);
y = x * sigmoid(W_2 ReLU(W_1 z)), biased 1x1 convs C -> C/r -> C.

Forms (``form=``), the same function with different hidden widths:

- ``"paper"`` (default): ``max(C // r, min(min_channels, C))``, ``min_channels`` default 8.
- ``"official"``: SAN's exact C // r (no ``min_channels``; 0 is an error naming the layer); golden test ``SOCA``
  (r = 8), with ``eps`` on the trace kept (``eps=0`` gives the official NaN on a constant map).

Departures from the paper:
- Sigma is Xc Xc^T / M, never SAN's M x M centring matrix (M^2 values per sample: 2.4 GiB in fp32 at 160x160).
- eps (1e-5) is added to the trace (pre-normalisation and post-compensation): a constant map (a blank image, the
  shape probe's zero image) otherwise gives 0/0 = NaN.
- Covariance and iteration in fp32 with autocast off; autograd differentiates the matrix products (ONNX-exportable;
  SAN's hand-written Covpool/Sqrtm Functions, whose ``iterN < 2`` backward references an undefined name, are not
  ported). SAN's centre crop of maps over 1000x1000 is not reproduced.
- Default r = 16, what SAN trains with (``--reduction``); the SOCA class's own default is 8.
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
