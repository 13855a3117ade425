"""The numerical checks of the module matrix on a GPU, as functions of a module, its input and nothing else.

tests/cuda/test_modules.py runs them on CUDA for every registered module in every form; tests/test_cuda_checks.py
shows on the CPU that each one catches what it is for. Every function returns a list of problems (empty: passed)
and leaves the module it is given untouched (each run works on a copy).
"""

from __future__ import annotations

import contextlib
import copy

import torch

# autocast against fp32: relative L2 difference of the module output, of the gradient reaching its input
TOLERANCE = {"fp16": (1e-2, 5e-2), "bf16": (5e-2, 2e-1)}
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
HOT = 10.0  # activations of this size must not overflow fp16 (attention energies, squares, exponentials)
C, BATCH = 64, 2
MAPS = {"20x20": (20, 20), "13x31": (13, 31)}


def inputs(c: int, hw: tuple[int, int], device, batch: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded input and the gradient that flows back into the module's output (same on every device)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, c, *hw, generator=g)
    grad = torch.randn(batch, c, *hw, generator=g)
    return x.to(device), grad.to(device)


def fwd_bwd(m: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, dtype: torch.dtype | None = None):
    """(output, input gradient, parameter gradients) of one forward+backward of a copy of ``m`` in train mode, under
    autocast ``dtype`` when given."""
    m = copy.deepcopy(m).train()
    x = x.detach().clone().requires_grad_(True)
    amp = torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with amp:
        y = m(x)
    y.float().backward(grad)
    return y.detach(), x.grad.detach(), [p.grad.detach() for p in m.parameters() if p.grad is not None]


def relative(a: torch.Tensor, ref: torch.Tensor) -> float:
    """||a - ref|| / ||ref|| in float32; infinite when ``a`` is not finite."""
    a, ref = a.detach().float(), ref.detach().float()
    if not torch.isfinite(a).all():
        return float("inf")
    return float((a - ref).norm() / ref.norm().clamp_min(1e-12))


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def fp32_problems(m, x, grad) -> list[str]:
    """fp32 forward+backward: output, input gradient and every parameter gradient finite."""
    y, gx, gp = fwd_bwd(m, x, grad)
    bad = [what for what, t in (("output", y), ("input gradient", gx)) if not torch.isfinite(t).all()]
    bad += ["a parameter gradient"] if not all(torch.isfinite(g).all() for g in gp) else []
    return [f"fp32: {', '.join(bad)} not finite"] if bad else []


def autocast_problems(m, x, grad, label: str) -> tuple[list[str], dict[str, float]]:
    """Autocast ``label`` (fp16 / bf16) against fp32: output and input gradient within :data:`TOLERANCE`, and a
    forward on activations of ~:data:`HOT` finite. Returns the problems and the measured differences."""
    dtype, (tol_out, tol_grad) = AMP_DTYPES[label], TOLERANCE[label]
    y32, g32, _ = fwd_bwd(m, x, grad)
    y, g, _ = fwd_bwd(m, x, grad, dtype)
    diffs = {"out": relative(y, y32), "grad": relative(g, g32)}
    problems = []
    if not (diffs["out"] <= tol_out and diffs["grad"] <= tol_grad):
        problems.append(f"{label} autocast differs from fp32: output {diffs['out']:.2e} (limit {tol_out:g}), input "
                        f"gradient {diffs['grad']:.2e} (limit {tol_grad:g})")
    with torch.no_grad(), torch.autocast(x.device.type, dtype=dtype):
        hot = copy.deepcopy(m).train()(HOT * x)
    if not torch.isfinite(hot).all():
        problems.append(f"{label} autocast forward on activations of ~{HOT:g} is not finite")
    return problems, diffs


def half_problems(m, x) -> list[str]:
    """``model.half()`` (what ``val.py --half`` runs, no autocast): eval forward on activations of ~:data:`HOT`
    returns float16, finite."""
    with torch.no_grad():
        y = copy.deepcopy(m).eval().half()((HOT * x).half())
    problems = [] if y.dtype == torch.float16 else [f".half() forward returns {y.dtype}"]
    return problems + ([] if torch.isfinite(y).all() else [f".half() forward on activations of ~{HOT:g} not finite"])


def deterministic_problems(m, x, grad) -> list[str]:
    """Two forward+backward runs under ``torch.use_deterministic_algorithms(True)`` (an operation without a
    deterministic kernel raises) are bit-equal: output, input gradient, parameter gradients. Global state restored."""
    was = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    bench = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.benchmark = False
    try:
        runs = [fwd_bwd(m, x, grad) for _ in range(2)]
    except RuntimeError as e:
        return [f"deterministic mode: {_first_line(e)}"]
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
        torch.backends.cudnn.benchmark = bench
    (y0, g0, p0), (y1, g1, p1) = runs
    pairs = [("output", y0, y1), ("input gradient", g0, g1)] + [(f"parameter gradient {i}", a, b)
                                                                for i, (a, b) in enumerate(zip(p0, p1))]
    differ = [f"{what} (max {float((a.float() - b.float()).abs().max()):.2e})" for what, a, b in pairs
              if not torch.equal(a, b)]
    return [f"deterministic mode: two runs differ: {', '.join(differ)}"] if differ else []
