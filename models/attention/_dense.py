"""Memory check for dense attention modules (those that build an N x N-like map, N = H*W).

``dense_attention_check(model, imgsz)`` finds every module registered with ``dense=True`` inside any
``nn.Module`` tree, measures the stride of the feature map each one sees (forward pre-hooks during one
eval-mode forward of a small zero image), scales that to ``imgsz`` and estimates the bytes of one attention
map for a whole batch: ``module.attention_map_elements(h, w) * batch * dtype_bytes`` (default 2 bytes:
fp16/bf16 AMP; the fp32 logits some modules keep for overflow safety, the softmax output and the
gradients add a few times more). It returns one message per module over ``budget_gib``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

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


def _input_channels(model: nn.Module) -> int:
    yaml = getattr(model, "yaml", None)
    if isinstance(yaml, dict) and isinstance(yaml.get("ch"), int):
        return yaml["ch"]
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3


def dense_attention_check(
    model: nn.Module,
    imgsz: int | tuple[int, int],
    batch: int = 16,
    budget_gib: float = 2.0,
    dtype_bytes: int = 2,
    probe: int = 64,
) -> list[str]:
    """Messages for every dense attention module whose attention map exceeds ``budget_gib`` at ``imgsz``.

    Args:
        model: any module tree (detector layers are looked up in ``model.model`` for their ``.i`` / ``.type``).
        imgsz: training/inference image size, an int or (height, width).
        batch: images per batch.
        budget_gib: allowed size of one attention map for the whole batch, in GiB.
        dtype_bytes: bytes per element (2 for fp16/bf16 AMP, 4 for fp32).
        probe: side of the zero image used to measure strides (must be divisible by the deepest stride
            that should be resolved; 64 covers P5/P6).
    """
    ih, iw = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    classes = _dense_classes()
    dense = [(name, m) for name, m in model.named_modules() if type(m) in classes]
    if not dense:
        return []

    seen: dict[int, tuple[int, int]] = {}
    hooks = []
    for _, m in dense:
        def pre_hook(mod, args, _id=id(m)):
            x = args[0] if args else None
            if isinstance(x, torch.Tensor) and x.dim() == 4:
                seen.setdefault(_id, (int(x.shape[2]), int(x.shape[3])))
        hooks.append(m.register_forward_pre_hook(pre_hook))

    modes = {m: m.training for m in model.modules()}
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.dtype.is_floating_point else torch.float32
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, _input_channels(model), probe, probe, device=device, dtype=dtype))
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode

    layer_of = _layer_of(model)
    messages = []
    for qualname, m in dense:
        if id(m) not in seen:
            continue  # not reached by the forward (unused branch): nothing to size
        ph, pw = seen[id(m)]
        sh, sw = probe / ph, probe / pw
        h, w = math.ceil(ih / sh), math.ceil(iw / sw)
        elements = m.attention_map_elements(h, w) if hasattr(m, "attention_map_elements") else (h * w) ** 2
        gib = elements * batch * dtype_bytes / 2**30
        if gib <= budget_gib:
            continue
        label, ltype = layer_of.get(id(m), (qualname or "<root>", type(m).__name__))
        where = f"layer {label} ({ltype})" if id(m) in layer_of else f"module '{label}'"
        stride = f"stride {sh:g}" if sh == sw else f"stride {sh:g}x{sw:g}"
        if min(sh, sw) < 32:
            advice = "Place it at P5 (stride 32) or use CrissCross / BiLevelRoutingAttention instead."
        else:
            advice = ("It is already at P5 or deeper: lower the batch or image size, or use CrissCross / "
                      "BiLevelRoutingAttention instead.")
        messages.append(
            f"{where}: dense attention {classes[type(m)]} sees a {h}x{w} map (N={h * w}, {stride}) at imgsz "
            f"{ih}x{iw}; one attention map for batch {batch} is ~{gib:.2f} GiB at {dtype_bytes} bytes/element "
            f"(budget {budget_gib:g} GiB; softmax output and gradients add several times more). {advice}"
        )
    return messages
