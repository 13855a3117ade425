"""MLCA: Mixed Local Channel Attention.

Wan et al., "Mixed local channel attention for object detection", Engineering Applications of Artificial
Intelligence 123 (2023) 106442 (no arXiv version). Official code: wandahangFY/MLCA (``MLCA.py``).

1. L = adaptive average pool of x to 5 x 5 (local_size); G = GAP(L), (B, C, 1, 1).
2. Local: L flattened position-major to (B, 1, 25 C) (the C channels of position 0, then of position 1, ...), a
   bias-free Conv1d with ECA's kernel k(C), back to (B, C, 5, 5), sigmoid. Neighbouring positions mix at the channel
   boundaries, as in the official code.
3. Global: ECA on G (same k), sigmoid, broadcast to 5 x 5.
4. att = (1 - w) global + w local (w = 0.5), adaptive-average-pooled from 5 x 5 back to H x W; y = x * att.
k = |log2(C)/gamma + b/gamma| rounded up to odd (gamma = 2, b = 1); 2k parameters. Equal to the official code (golden
test ``MLCA``); no forms.

Departures from the paper:
- Both adaptive poolings are exact separable matrix products, out = P_h X P_w^T with P[i, j] = 1 / |window_i| for
  j in [floor(i n / m), ceil((i + 1) n / m)), built from the runtime H, W: PyTorch's adaptive_avg_pool2d for every
  size (non-divisors and H, W < 5 included), deterministic on CUDA and dynamic in ONNX.
- The global path is per sample: the repository's corrected code (its first version mixed the global attention of
  the batch's samples). ``flatten``/``unflatten`` keep the batch size free.
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import eca_kernel_size
from models.registry.protocol import GatedAttention
from models.attention._resize import adaptive_pool_matrix
from models.registry import register_attention


@register_attention(
    "MLCA",
    category="channel",
    paper="Mixed local channel attention for object detection",
    arxiv="",
    year=2023,
    placement="backbone_end",
    notes=(
        "Official code uses AdaptiveAvgPool2d to 5x5 and back (no ONNX export at non-divisor sizes, "
        "non-deterministic CUDA backward); here the same pooling as exact separable matrix products. "
        "Its first version mixed the global attention across the batch."
    ),
)
class MLCA(GatedAttention):
    """x * unpool(0.5 * sigmoid(ECA(GAP L)) + 0.5 * sigmoid(ECA_seq(L))), L = 5x5 adaptive pool of x."""

    gate_name = "mixed local/global gate"

    def __init__(self, c1: int, local_size: int = 5, gamma: float = 2, b: float = 1, local_weight: float = 0.5):
        super().__init__()
        k = eca_kernel_size(c1, gamma, b)
        self.c, self.local_size, self.local_weight = c1, int(local_size), float(local_weight)
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)  # global (over channels)
        self.conv_local = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)  # local (over position-major seq)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The 5x5 mixed attention map before un-pooling, (B, C, s, s)."""
        s = self.local_size
        h, w = x.shape[-2:]
        ph, pw = adaptive_pool_matrix(h, s, x), adaptive_pool_matrix(w, s, x)  # (s, H), (s, W)
        local = torch.matmul(torch.matmul(ph, x), pw.transpose(0, 1))  # (B, C, s, s)
        glob = local.mean((2, 3))  # (B, C)
        seq = local.flatten(2).transpose(1, 2).flatten(1).unsqueeze(1)  # (B, 1, s*s*C), position-major
        y_local = self.conv_local(seq).squeeze(1).unflatten(1, (s * s, self.c)).transpose(1, 2)  # (B, C, s*s)
        att_local = torch.sigmoid(y_local).unflatten(2, (s, s))
        att_global = torch.sigmoid(self.conv(glob.unsqueeze(1))).squeeze(1)[..., None, None]  # (B, C, 1, 1)
        return att_global * (1 - self.local_weight) + att_local * self.local_weight

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map un-pooled to the input's size, (B, C, H, W)."""
        s = self.local_size
        h, w = x.shape[-2:]
        att = self.attention(x)
        uh, uw = adaptive_pool_matrix(s, h, x), adaptive_pool_matrix(s, w, x)  # (H, s), (W, s)
        return torch.matmul(torch.matmul(uh, att), uw.transpose(0, 1))
