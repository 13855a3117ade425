"""The checks the cuda-marked tests run (tests/cuda/), on the CPU: real modules pass them, and each one catches what
it is for, so a GPU run that passes means something."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.cuda import matrix
from tests.cuda.test_golden import RTOL, relative_difference
from tests.golden import load

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


def module_and_inputs(cls, c=16, hw=(8, 8)):
    torch.manual_seed(0)
    x, grad = matrix.inputs(c, hw, "cpu")
    return cls(c).train(), x, grad


@pytest.mark.parametrize("name", ["SE", "CBAM"])
def test_real_modules_pass_every_check_on_the_cpu(name):
    from models.registry import LAYERS

    m, x, grad = module_and_inputs(LAYERS.get(name).cls, c=matrix.C, hw=matrix.MAPS["13x31"])
    assert matrix.fp32_problems(m, x, grad) == []
    diffs = {}
    for label in matrix.AMP_DTYPES:
        problems, diffs[label] = matrix.autocast_problems(m, x, grad, label)
        assert problems == [] and 0 < diffs[label]["out"] < matrix.TOLERANCE[label][0], (problems, diffs)
    assert diffs["fp16"]["out"] < diffs["bf16"]["out"]  # 11 bits of mantissa against 8
    assert matrix.half_problems(m, x) == []
    assert matrix.deterministic_problems(m, x, grad) == []


class NotFinite(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return self.conv(x) * (x - x.amax()).log()  # log of non-positive numbers: NaN and -inf


class Cancellation(nn.Module):
    """An output that is a small difference of two large, nearly equal terms: half precision loses it."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(c).view(c, c, 1, 1) * 100 + 1e-3 * torch.randn(c, c, 1, 1))

    def forward(self, x):
        return self.conv(x) - 100 * x


class HotEnergies(nn.Module):
    """Self-attention energies without scaling or an fp32 softmax: q.k of activations ~10 overflows fp16."""

    def __init__(self, c):
        super().__init__()
        self.q = nn.Conv2d(c, c, 1)

    def forward(self, x):
        q = self.q(x).flatten(2)
        energy = q.transpose(1, 2) @ q * 1e3
        return x + (energy.softmax(-1) @ x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(x.shape)


class Float32Constant(nn.Module):
    """Builds a float32 constant in forward (as many ports do): under .half() the output silently becomes fp32."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return x * torch.ones(1, self.c, 1, 1, device=x.device)


class Noisy(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return self.conv(x) + 1e-3 * torch.rand_like(x)


class NoDeterministicKernel(nn.Module):
    """Stands for a CUDA kernel without a deterministic implementation (adaptive max pooling's backward)."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x):
        if torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled():
            raise RuntimeError("adaptive_max_pool2d_backward_cuda does not have a deterministic implementation")
        return self.conv(x)


@pytest.mark.parametrize("cls, check, expected", [
    (NotFinite, "fp32", "fp32: output, input gradient"),
    (Cancellation, "fp16", "fp16 autocast differs from fp32: output"),
    (HotEnergies, "fp16", "fp16 autocast forward on activations of ~10 is not finite"),
    (Float32Constant, "half", ".half() forward returns torch.float32"),
    (Noisy, "deterministic", "deterministic mode: two runs differ: output (max "),
    (NoDeterministicKernel, "deterministic", "deterministic mode: RuntimeError: adaptive_max_pool2d_backward_cuda"),
])
def test_each_check_names_the_fault_it_is_for(cls, check, expected):
    m, x, grad = module_and_inputs(cls)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    switches = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    problems = {"fp32": lambda: matrix.fp32_problems(m, x, grad),
                "fp16": lambda: matrix.autocast_problems(m, x, grad, "fp16")[0],
                "half": lambda: matrix.half_problems(m, x),
                "deterministic": lambda: matrix.deterministic_problems(m, x, grad)}[check]()
    assert any(p.startswith(expected) for p in problems), problems
    # the process-wide switches as they were (an in-process training earlier in this worker may have set them)
    assert (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) == switches
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # each run works on a copy
    assert next(m.parameters(), torch.zeros(1)).dtype == torch.float32


@pytest.mark.parametrize("name", ["SE", "ECA"])
def test_golden_fixtures_in_float32_on_the_cpu_are_far_inside_the_gpu_limit(name):
    worst, rel = relative_difference(load(name), "cpu")
    assert 0 <= rel <= worst and rel < RTOL / 10, (worst, rel)


@pytest.mark.slow
def test_the_scripts_chain_of_the_gpu_run_works_on_the_cpu(tmp_path):
    """tests/cuda/test_scripts.py with --cuda-device cpu (small dataset, 64 px, no AMP) for the anchor-head config:
    train, val, detect and export as the GPU run chains them (about two minutes on two cores)."""
    p = subprocess.run([sys.executable, "-m", "pytest", "tests/cuda/test_scripts.py", "-m", "cuda", "--cuda-device",
                        "cpu", "-k", "anchor", "-o", "addopts=", "-q", "-rs", "-p", "no:cacheprovider", "--basetemp",
                        str(tmp_path / "runs")], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0 and "4 passed, 1 skipped" in p.stdout, p.stdout[-3000:] + p.stderr[-2000:]
    assert "--half needs a GPU" in p.stdout
