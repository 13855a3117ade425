"""One test matrix for every registered attention module.

A module is covered by registering it: every test here is parametrised over the registry, so adding a
module to ``models/attention/`` (plus its formula line in ``tests/formulas/``) is all it takes.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from models.registry import attention_specs
from tests.formulas import PARAMS, REFERENCE_C

SPECS = attention_specs()
NAMES = [s.name for s in SPECS]
BY_NAME = {s.name: s for s in SPECS}

# (B, C, H, W): batch 1 in train mode, tiny, odd and non-square maps; C multiple of 8 but not of 16/64
SHAPES = [(1, 24, 1, 1), (2, 40, 3, 3), (1, 72, 20, 12), (2, 24, 13, 31)]


def build(name: str, c: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return BY_NAME[name].cls(c)


def randomise_zero_init(m: torch.nn.Module) -> None:
    """Perturb parameters so identity-at-init modules exercise their attention path in comparisons."""
    with torch.no_grad():
        for p in m.parameters():
            if p.dtype.is_floating_point and torch.count_nonzero(p) == 0:
                p.add_(0.1 * torch.randn_like(p))


def test_registry_has_modules():
    assert len(NAMES) >= 4, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_docstring_cites_paper(name):
    spec = BY_NAME[name]
    import inspect

    doc = inspect.getmodule(spec.cls).__doc__ or ""
    assert spec.paper and spec.year, f"{name}: register it with paper= and year="
    assert spec.arxiv in doc or spec.paper.split(":")[0] in doc, f"{name}: module docstring must cite the paper"
    assert "depart" in doc.lower(), f"{name}: module docstring must say where it departs from the paper"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_shape_preserved_train_and_eval(name, shape):
    m = build(name, shape[1])
    x = torch.randn(shape)
    m.train()
    assert m(x).shape == x.shape
    m.eval()
    with torch.no_grad():
        assert m(x).shape == x.shape


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["random", "zeros"])
def test_forward_backward_finite(name, kind):
    m = build(name, 40).train()
    randomise_zero_init(m)
    x = (torch.randn if kind == "random" else torch.zeros)(2, 40, 10, 14, requires_grad=True)
    y = m(x)
    assert torch.isfinite(y).all(), f"{name}: non-finite output on {kind} input"
    (y.float() ** 2).mean().backward()
    assert torch.isfinite(x.grad).all(), f"{name}: non-finite input gradient on {kind} input"
    for n, p in m.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), f"{name}.{n}: non-finite gradient on {kind} input"


def _skip_if_no_cpu_kernel(err: RuntimeError, dtype: str):
    msg = str(err)
    if "not implemented for" in msg and ("Half" in msg or "BFloat16" in msg):
        pytest.skip(f"torch lacks a CPU {dtype} kernel: {msg.splitlines()[0]}")
    raise err


@pytest.mark.parametrize("name", NAMES)
def test_half_forward_finite(name):
    """``val.py --half`` runs the whole model in fp16 with no autocast; activations of ~10 must not overflow."""
    m = build(name, 40).eval()
    randomise_zero_init(m)
    m.half()
    x = (10 * torch.randn(2, 40, 20, 20)).half()
    try:
        with torch.no_grad():
            y = m(x)
    except RuntimeError as e:
        _skip_if_no_cpu_kernel(e, "fp16")
    assert y.dtype == torch.float16
    assert torch.isfinite(y).all(), f"{name}: fp16 forward overflowed"


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_forward_backward(name):
    m = build(name, 40).train()
    randomise_zero_init(m)
    x = torch.randn(2, 40, 12, 20, requires_grad=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
        y.float().square().mean().backward()
    except RuntimeError as e:
        _skip_if_no_cpu_kernel(e, "bf16")
    assert torch.isfinite(y.float()).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_mode(name):
    m = build(name, 40).train()
    x = torch.randn(2, 40, 12, 20, requires_grad=True)
    torch.use_deterministic_algorithms(True)
    try:
        m(x).square().mean().backward()
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("name", NAMES)
def test_param_count_matches_paper_formula(name):
    assert name in PARAMS, f"{name}: add its parameter formula to tests/formulas/"
    m = build(name, REFERENCE_C)
    got = sum(p.numel() for p in m.parameters())
    assert got == PARAMS[name](REFERENCE_C), f"{name}: {got} params at C={REFERENCE_C}, formula says {PARAMS[name](REFERENCE_C)}"


@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_matches_torch(name):
    """Exports (dynamic H, W unless the registry marks the module static) and runs in onnxruntime.

    Tolerance: max abs diff <= 1e-4 + 1e-4 * max|y| (fp32).
    """
    ort = pytest.importorskip("onnxruntime")
    spec = BY_NAME[name]
    m = build(name, 32).eval()
    randomise_zero_init(m)
    x = torch.randn(1, 32, 16, 16)
    f = io.BytesIO()
    dynamic = {"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}} if spec.onnx_dynamic else None
    torch.onnx.export(m, (x,), f, input_names=["x"], output_names=["y"], dynamic_axes=dynamic, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    sizes = [(16, 16), (20, 12), (13, 31)] if spec.onnx_dynamic else [(16, 16)]
    for h, w in sizes:
        xi = torch.randn(1, 32, h, w)
        with torch.no_grad():
            ref = m(xi).numpy()
        out = sess.run(None, {"x": xi.numpy()})[0]
        tol = 1e-4 + 1e-4 * float(np.abs(ref).max())
        assert np.abs(out - ref).max() <= tol, f"{name} at {h}x{w}: onnx differs by {np.abs(out - ref).max():.2e}"
