"""Resampling written as small matrices: bilinear resizing of learned tables and adaptive average pooling.

Both are linear maps along one axis, so they are built here as (n_out x n_in) matrices from ``arange`` and applied
with matmul/einsum. Unlike ``F.interpolate`` / ``nn.AdaptiveAvgPool2d`` this is deterministic on CUDA (their
backward passes raise under ``torch.use_deterministic_algorithms``), exports to ONNX with dynamic H, W (the sizes come
from traced ``arange`` tensors, never from Python arithmetic on shapes), and follows the input dtype.
"""

from __future__ import annotations

import torch


def _size_of(positions: torch.Tensor) -> torch.Tensor:
    """``len(positions)`` as a 0-d tensor (traced, so the ONNX graph stays dynamic)."""
    return positions.amax() + 1


def bilinear_matrix(n_out: int, n_in: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) matrix of ``F.interpolate(mode="bilinear", align_corners=False)`` along one axis, in
    ``like``'s dtype and device: source position ``max((i + 0.5) n_in / n_out - 0.5, 0)``, linear weights between
    its two neighbours (the last row repeats past the end). n_out == n_in gives the identity."""
    i = torch.arange(n_out, device=like.device).to(like.dtype)
    src = ((i + 0.5) * (n_in / _size_of(i)) - 0.5).clamp(min=0)
    lo = src.floor().clamp(max=n_in - 1)
    frac = src - lo
    cols = torch.arange(n_in, device=like.device).to(like.dtype)
    hi = (lo + 1).clamp(max=n_in - 1)
    weight_lo = (cols == lo[:, None]).to(like.dtype) * (1 - frac)[:, None]
    return weight_lo + (cols == hi[:, None]).to(like.dtype) * frac[:, None]


def adaptive_pool_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) matrix of ``nn.AdaptiveAvgPool`` along one axis: row i averages the inputs
    ``[floor(i n_in / n_out), ceil((i + 1) n_in / n_out))`` (inputs repeat when n_in < n_out)."""
    pos = torch.arange(n_in, device=like.device)
    size = _size_of(pos)
    i = torch.arange(n_out, device=like.device)
    start = torch.div(i * size, n_out, rounding_mode="floor")
    end = torch.div((i + 1) * size + n_out - 1, n_out, rounding_mode="floor")
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]
