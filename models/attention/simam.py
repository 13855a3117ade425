"""SimAM: a parameter-free 3-D attention derived from an energy function.

Yang, Zhang, Li, Xie, "SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural
Networks", ICML 2021 (PMLR 139). No arXiv version. Official code: ZjjConan/SimAM.

Every neuron t gets the inverse of its minimal energy, ``1/e_t = (t - mu)^2 / (4 (var + lambda)) + 1/2``, with mu
and var the mean and the (n = H*W - 1) variance of its channel; ``y = x * sigmoid(1/e)`` (paper Eq. 5, Algorithm 1).
Equal to the official ``simam_module`` (golden test ``SimAM``); no forms.

Departures from the paper:
- For fp16/bf16 inputs mu, (t - mu)^2 and the variance run in fp32 and the gate is cast back (under ``model.half()``
  the sum of squares overflows fp16 for activations of about 30); fp32 and fp64 inputs keep their dtype.
- n = max(H*W - 1, 1): on a 1x1 map the paper's n = 0 gives NaN; here the variance is 0 and the gate sigmoid(1/2).
"""

from __future__ import annotations

import torch

from models.attention._common import at_least_fp32, spatial_dof
from models.registry.protocol import GatedAttention
from models.registry import register_attention


@register_attention(
    "SimAM",
    category="hybrid",
    paper="SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks",
    arxiv="",
    year=2021,
    placement="backbone_end",
    notes="EAP/ODS match the official code (fp16 overflow of the variance and NaN on 1x1 maps included).",
)
class SimAM(GatedAttention):
    """x * sigmoid((x - mu)^2 / (4 (var + lambda)) + 0.5), per channel; no parameters."""

    gate_name = "energy gate"

    def __init__(self, c1: int, e_lambda: float = 1e-4):
        super().__init__()
        self.e_lambda = e_lambda

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """sigmoid(1 / E) per element, (B, C, H, W)."""
        xf = at_least_fp32(x)  # fp32 statistics for fp16/bf16: sums of squares over H*W overflow fp16
        d = (xf - xf.mean((2, 3), keepdim=True)).square()
        var = d.sum((2, 3), keepdim=True) / spatial_dof(xf)
        inv_energy = d / (4 * (var + self.e_lambda)) + 0.5
        return torch.sigmoid(inv_energy).to(x.dtype)

    def extra_repr(self) -> str:
        return f"e_lambda={self.e_lambda}"
