"""Every registered attention module, in every form, on the GPU (C=64, batch 2, maps 20x20 and 13x31, train mode).

fp32 forward+backward finite; fp16 and bf16 autocast forward+backward close to fp32 and finite on activations of ~10;
``model.half()`` forward finite in float16; two forward+backward runs under ``torch.use_deterministic_algorithms(True)``
bit-equal (``CUBLAS_WORKSPACE_CONFIG`` is set by tests/conftest.py before CUDA starts). The checks themselves are in
tests/cuda/matrix.py; each test records what it measured (``record_property``) for the GPU report.
"""

from __future__ import annotations

import pytest

from tests.cuda import matrix
from tests.test_attention_matrix import CASE_IDS, CASES, build, randomise_zero_init

pytestmark = pytest.mark.cuda

cases = pytest.mark.parametrize("name, form", CASES, ids=CASE_IDS)
maps = pytest.mark.parametrize("hw", list(matrix.MAPS))


def prepare(name, form, hw, device, record_property, check):
    """The seeded module (zero-initialised layers perturbed so the attention path counts) and its input, on device."""
    record_property("case", name if form is None else f"{name}-{form}")
    record_property("hw", hw)
    record_property("check", check)
    m = build(name, matrix.C, form=form)
    randomise_zero_init(m)
    x, grad = matrix.inputs(matrix.C, matrix.MAPS[hw], device)
    return m.to(device).train(), x, grad


@cases
@maps
def test_fp32(name, form, hw, device, record_property):
    m, x, grad = prepare(name, form, hw, device, record_property, "fp32")
    problems = matrix.fp32_problems(m, x, grad)
    assert not problems, "; ".join(problems)


@cases
@maps
@pytest.mark.parametrize("label", list(matrix.AMP_DTYPES))
def test_autocast(name, form, hw, label, device, record_property):
    m, x, grad = prepare(name, form, hw, device, record_property, label)
    problems, diffs = matrix.autocast_problems(m, x, grad, label)
    record_property("out", diffs["out"])
    record_property("grad", diffs["grad"])
    assert not problems, "; ".join(problems)


@cases
@maps
def test_half(name, form, hw, device, record_property):
    m, x, _ = prepare(name, form, hw, device, record_property, "half")
    problems = matrix.half_problems(m, x)
    assert not problems, "; ".join(problems)


@cases
@maps
def test_deterministic(name, form, hw, device, record_property):
    m, x, grad = prepare(name, form, hw, device, record_property, "deterministic")
    problems = matrix.deterministic_problems(m, x, grad)
    assert not problems, "; ".join(problems)
