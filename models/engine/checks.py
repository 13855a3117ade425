"""Checks of a model before it trains: memory of dense attention, AMP agreement, the time one step takes.

Dense attention (a map that grows with N = H*W: NonLocal, DANet, BoTMHSA, DAttention, ...):
:func:`dense_attention_check` finds every module registered with ``dense=True``, measures the stride of the map it sees
(the shape probe), scales it to the training size and estimates its working set for the batch,
``module.attention_map_elements(h, w) * batch * dtype_bytes`` (the module protocol; these modules compute attention
through SDPA, so no N x N map is stored). The default budget is 2 GiB for the batch at 2 bytes per element. Why
that size, and the calibration of the estimates: docs/benchmarks.md, "Measurements behind the code".
"""

from __future__ import annotations

import math
import time
from copy import deepcopy

import torch
from torch import nn
from ultralytics.utils import LOGGER

from models.parse.probe import probe_shapes
from models.registry import attention_specs


def _dense_classes() -> dict[type, str]:
    return {s.cls: s.name for s in attention_specs() if s.dense}


def _layer_of(model: nn.Module) -> dict[int, tuple[str, str]]:
    """id(submodule) -> (layer label, layer type) using the ``.i`` / ``.type`` tags of detector layers."""
    seq = getattr(model, "model", None)
    layers = seq if isinstance(seq, nn.Sequential) else model if isinstance(model, nn.Sequential) else None
    out: dict[int, tuple[str, str]] = {}
    if layers is not None:
        for j, layer in enumerate(layers):
            label = str(getattr(layer, "i", j))
            ltype = getattr(layer, "type", None)  # a string tag on detector layers (nn.Module.type is a method)
            ltype = ltype if isinstance(ltype, str) else type(layer).__name__
            for sub in layer.modules():
                out.setdefault(id(sub), (label, ltype))
    return out


def dense_attention_check(
    model: nn.Module,
    imgsz: int | tuple[int, int],
    batch: int = 16,
    budget_gib: float = 2.0,
    dtype_bytes: int = 2,
    probe: int = 64,
) -> list[str]:
    """Messages for every dense attention module whose attention working set exceeds ``budget_gib`` at ``imgsz``.

    Args:
        model: any module tree (detector layers are looked up in ``model.model`` for their ``.i`` / ``.type``).
        imgsz: training/inference image size, an int or (height, width).
        batch: images per batch.
        budget_gib: allowed attention working set of one module for the whole batch, in GiB.
        dtype_bytes: bytes per element (2 for fp16/bf16 AMP, 4 for fp32).
        probe: side of the zero image used to measure strides (must be divisible by the deepest stride
            that should be resolved; 64 covers P5/P6).
    """
    ih, iw = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    classes = _dense_classes()
    dense = [(name, m) for name, m in model.named_modules() if type(m) in classes]
    if not dense:
        return []

    seen = probe_shapes(model, [m for _, m in dense], probe, where="input")

    layer_of = _layer_of(model)
    messages = []
    for qualname, m in dense:
        if id(m) not in seen:
            continue  # not reached by the forward (unused branch): nothing to size
        ph, pw = seen[id(m)]
        sh, sw = probe / ph, probe / pw
        h, w = math.ceil(ih / sh), math.ceil(iw / sw)
        elements = m.attention_map_elements(h, w)
        gib = elements * batch * dtype_bytes / 2**30
        if gib <= budget_gib:
            continue
        label, ltype = layer_of.get(id(m), (qualname or "<root>", type(m).__name__))
        where = f"layer {label} ({ltype})" if id(m) in layer_of else f"module '{label}'"
        stride = f"stride {sh:g}" if sh == sw else f"stride {sh:g}x{sw:g}"
        if min(sh, sw) < 32:
            advice = ("Place it at P5 (stride 32), lower the batch or image size, or use CrissCross / "
                      "BiLevelRoutingAttention instead.")
        else:
            advice = ("It is already at P5 or deeper: lower the batch or image size, or use CrissCross / "
                      "BiLevelRoutingAttention instead.")
        messages.append(
            f"{where}: dense attention {classes[type(m)]} sees a {h}x{w} map (N={h * w}, {stride}) at imgsz "
            f"{ih}x{iw}; its attention working set for batch {batch} is ~{gib:.2f} GiB at {dtype_bytes} "
            f"bytes/element (q, k, v, outputs and what the backward keeps; budget {budget_gib:g} GiB), and its "
            f"compute grows with N^2. {advice}"
        )
    return messages

def warn_dense_attention(model, imgsz, batch) -> list[str]:
    """Warn, naming the layer, when a dense attention module's working set (q, k, v, outputs and what the backward
    keeps; SDPA stores no N x N map) would exceed the memory budget at this image size and batch."""
    msgs = dense_attention_check(model, imgsz, batch=max(int(batch), 1))
    for msg in msgs:
        LOGGER.warning(msg)
    return msgs


AMP_TOLERANCE = 0.1  # relative L2 difference (what fp16 gives: docs/benchmarks.md, "The AMP check")


def amp_disagreement(model: torch.nn.Module, imgsz: int, dtype: torch.dtype = torch.float16) -> tuple[float, str]:
    """How far autocast (``dtype``) moves the training-mode outputs of ``model`` from fp32.

    A copy of the model (so BatchNorm statistics stay untouched) runs in training mode, as AMP training does;
    batch statistics keep the activations of an untrained model O(1), where eval mode would let them underflow
    fp16. Returns the largest relative L2 difference over the head's output tensors (inf where the AMP output is
    not finite) and the name of that output.
    """
    device = next(model.parameters()).device
    x = torch.rand(2, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0)).to(device)
    copy = deepcopy(model).train()
    with torch.no_grad():
        ref = copy(x)
        with torch.autocast(device.type, dtype=dtype):
            amp = copy(x)
    worst, where = 0.0, ""
    for i, (a, r) in enumerate(zip(torch.utils._pytree.tree_leaves(amp), torch.utils._pytree.tree_leaves(ref))):
        a, r = a.float(), r.float()
        d = float("inf") if not torch.isfinite(a).all() else float((a - r).norm() / r.norm().clamp_min(1e-12))
        if d >= worst:
            worst, where = d, f"output {i} {tuple(r.shape)}"
    return worst, where


def amp_verdict(model: torch.nn.Module, imgsz: int, dtype: torch.dtype = torch.float16) -> bool:
    """Whether to train ``model`` with AMP: the outputs agree within :data:`AMP_TOLERANCE` (logged either way)."""
    try:
        worst, where = amp_disagreement(model, imgsz, dtype)
    except Exception as e:  # the check could not run (out of memory, say): keep AMP, as ultralytics does then
        LOGGER.warning(f"AMP: check skipped ({type(e).__name__}: {e}); training with AMP as asked. "
                       "If losses turn NaN, train with --no-amp.")
        return True
    if worst <= AMP_TOLERANCE:
        LOGGER.info(f"AMP: checks passed on this model (autocast vs fp32 relative difference {worst:.1e}) ✅")
        return True
    LOGGER.warning(f"AMP: checks failed: autocast changes this model's {where} by {worst:.3g} (relative, limit "
                   f"{AMP_TOLERANCE}); AMP is disabled for this run")
    return False


def duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def time_training_step(model: torch.nn.Module, batch: int, imgsz: int, device) -> float:
    """Seconds of one forward + backward pass of a copy of ``model`` on a zero batch (nothing of the run changes:
    the copy keeps BatchNorm statistics and gradients to itself, the random number generators are restored)."""
    copy = deepcopy(model).train()
    for p in copy.parameters():
        p.requires_grad_(True)
    x = torch.zeros(batch, 3, imgsz, imgsz, device=device)
    steps = 2 if device.type == "cuda" else 1  # the first CUDA step pays for kernel selection
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # dropout draws stay private
        for _ in range(steps):
            t = time.perf_counter()
            out = copy(x)
            sum(o.float().sum() for o in torch.utils._pytree.tree_leaves(out) if isinstance(o, torch.Tensor)).backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t
    del copy, x, out
    return dt
