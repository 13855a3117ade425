"""Memory check for dense attention modules (quadratic in N = H*W: NonLocal, DANet, BoTMHSA, DAttention).

``dense_attention_check(model, imgsz)`` finds every module registered with ``dense=True`` inside any
``nn.Module`` tree, measures the stride of the feature map each one sees (the shape probe,
:func:`models.parse.probe.probe_shapes`), scales that to ``imgsz`` and estimates the module's attention working set for
the whole batch: ``module.attention_map_elements(h, w) * batch * dtype_bytes`` (the module protocol; default 2
bytes: fp16/bf16 AMP). It returns one message per module over ``budget_gib``.

Since these modules compute their attention with ``scaled_dot_product_attention`` (``models/attention/_sdpa.py``),
no (N x N) map is stored in training or inference, and ``attention_map_elements`` is the module's working set
per training sample, O(N C): its q, k, v, outputs and what the backward keeps, calibrated against the measured
forward+backward peak of the module (``tools/measure.py:peak_memory_mb``, CPU fp32; NonLocal 8 C N, DANet 11 C N
+ 2 C^2, BoTMHSA 9 heads N (d + H + W), DAttention 21 C N). On CPU, maps small enough for the explicit form to be
faster (DANet, BoTMHSA) are stored explicitly, at most 256 MiB (fp32) per call.

Measured (CPU, fp32, tensor memory of one training step, batch 2 scaled linearly to 16): yolov5s at 640 needs
685 MiB per 2 images (5.4 GiB at batch 16). NonLocal after the P3 backbone stage (80x80, C=128) added 108 MiB per
2 images with the stored (N x N/4) map, 30 MiB with SDPA. The default budget, 2 GiB for the batch at 2 bytes per
element, is about the whole yolov5s training step at batch 16 in AMP: a module over it at least doubles the memory
of training. At 640 px and batch 16 no dense module reaches it at P5 or P4, and at P3 only BoTMHSA comes near it
(folded relative logits, 1.3 GiB); what still keeps these modules at P5 by default is compute, which stays
quadratic: N times N' multiply-adds, 256 times those at P5 when placed at P3.
"""

from __future__ import annotations

import math

from torch import nn

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
