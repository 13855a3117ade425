"""No module dispatches an operation whose CUDA kernel raises under ``torch.use_deterministic_algorithms(True)``.

Read on the CPU (no GPU needed): the aten operations one train-mode forward+backward dispatches, against torch's
documented list of operations that raise in deterministic mode on CUDA. ultralytics trains with
``deterministic=True`` (``warn_only=True``: such an operation only warns there, and the run is not reproducible);
tests/cuda/test_modules.py runs the real thing on a GPU. CUDA may pick other kernels than the CPU, so this is a
prediction of that test, cheap enough for every run.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from tests.test_attention_matrix import CASE_IDS, CASES, build

pytestmark = pytest.mark.usefixtures("one_thread")

# aten operations whose CUDA kernels raise in deterministic mode (torch.use_deterministic_algorithms' documentation)
CUDA_NONDETERMINISTIC_OPS = {
    "avg_pool3d_backward", "_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward",
    "adaptive_max_pool2d_backward", "adaptive_max_pool3d_backward", "fractional_max_pool2d_backward",
    "fractional_max_pool3d_backward", "max_unpool2d", "max_unpool3d", "upsample_linear1d_backward",
    "upsample_bilinear2d_backward", "upsample_bicubic2d_backward", "upsample_trilinear3d_backward",
    "_upsample_bilinear2d_aa_backward", "_upsample_bicubic2d_aa_backward", "reflection_pad1d_backward",
    "reflection_pad2d_backward", "reflection_pad3d_backward", "grid_sampler_2d_backward",
    "grid_sampler_3d_backward", "histc", "bincount", "median", "nanmedian", "put_", "put", "embedding_bag",
    "_embedding_bag_backward", "_ctc_loss_backward", "nll_loss2d_forward",
}


class Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func._schema.name.split("::")[-1])
        return func(*args, **(kwargs or {}))


def dispatched_ops(m: nn.Module, x: torch.Tensor) -> set[str]:
    """aten operation names of one train-mode forward+backward of ``m`` (the backward's included)."""
    x = x.clone().requires_grad_(True)
    with Recorder() as rec:
        m.train()(x).float().square().mean().backward()
    return rec.ops


def test_the_audit_sees_backward_operations_that_raise_on_cuda():
    m = nn.Sequential(nn.AdaptiveMaxPool2d(3), nn.Upsample(size=(12, 20), mode="bilinear"))
    assert dispatched_ops(m, torch.randn(2, 4, 12, 20)) & CUDA_NONDETERMINISTIC_OPS == {
        "adaptive_max_pool2d_backward", "upsample_bilinear2d_backward"}
    assert not dispatched_ops(nn.Upsample(scale_factor=2), torch.randn(2, 4, 6, 10)) & CUDA_NONDETERMINISTIC_OPS


@pytest.mark.parametrize("name, form", CASES, ids=CASE_IDS)
def test_no_module_dispatches_an_operation_that_raises_in_cuda_deterministic_mode(name, form):
    m = build(name, 32, form=form)
    flagged = dispatched_ops(m, torch.randn(2, 32, 12, 20)) & CUDA_NONDETERMINISTIC_OPS
    assert not flagged, f"{name}: {sorted(flagged)} raise under torch.use_deterministic_algorithms(True) on CUDA"
