"""The one shape probe: a single no-grad, eval-mode forward of a zero image that records feature-map sizes.

Head strides, the insertion tool's ``p3``/``p4``/``p5`` positions and the dense-attention memory check all
need to know how large the maps are that some layers or modules see. They ask here: hooks record the
(H, W) of the requested modules' inputs or outputs during one forward pass; training flags are restored
afterwards, whatever happens.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from models.registry.store import ConfigError


def _shape(x) -> str:
    if isinstance(x, torch.Tensor):
        return "x".join(map(str, x.shape))
    return "[" + ", ".join(_shape(t) for t in x) + "]" if isinstance(x, (list, tuple)) else type(x).__name__


def input_channels(model: nn.Module) -> int:
    """Channels of the images ``model`` takes: its YAML's ``channels`` if it has one, else the first conv's input."""
    yaml = getattr(model, "yaml", None)
    if isinstance(yaml, dict) and isinstance(yaml.get("channels"), int):
        return yaml["channels"]
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3


def probe_shapes(model: nn.Module, modules: Iterable[nn.Module], size: int | tuple[int, int] = 256,
                 where: str = "output", forward=None) -> dict[int, tuple[int, int]]:
    """``{id(module): (H, W)}`` of each module's first 4-D ``where`` ("input" or "output") in one probe forward.

    ``forward(x)`` runs the model (default ``model(x)``); the probe image is zeros of ``size`` (an int or
    (height, width)) with the model's input channels, on its device and in its dtype. Modules not reached by the
    forward are absent from the result.
    """
    if where not in ("input", "output"):
        raise ValueError(f"where must be 'input' or 'output', got {where!r}")
    h, w = (size, size) if isinstance(size, int) else size
    seen: dict[int, tuple[int, int]] = {}

    def record(key: int, t) -> None:
        t = t[0] if isinstance(t, (tuple, list)) and t else t
        if isinstance(t, torch.Tensor) and t.dim() == 4:
            seen.setdefault(key, (int(t.shape[2]), int(t.shape[3])))

    hooks = []
    for m in modules:
        if where == "input":
            hooks.append(m.register_forward_pre_hook(lambda mod, args, k=id(m): record(k, args)))
        else:
            hooks.append(m.register_forward_hook(lambda mod, args, out, k=id(m): record(k, out)))
    modes = {m: m.training for m in model.modules()}
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.dtype.is_floating_point else torch.float32
    try:
        model.eval()
        with torch.no_grad():
            (forward or model)(torch.zeros(1, input_channels(model), h, w, device=device, dtype=dtype))
    finally:
        for hook in hooks:
            hook.remove()
        for m, mode in modes.items():
            m.training = mode
    return seen


def layer_strides(model: nn.Module, size: int = 256) -> list[int | None]:
    """Output stride of every layer of a YOLO model (``model.model``): input size / output size; None where the
    layer's output is not a feature map (the head)."""
    layers = list(model.model)
    shapes = probe_shapes(model, layers, size)
    return [round(size / shapes[id(m)][1]) if id(m) in shapes else None for m in layers]


def head_strides(model: nn.Module, size: int = 256) -> torch.Tensor:
    """Strides of the detection head's inputs (the last layer's ``from`` layers), as a float tensor."""
    layers = list(model.model)
    head = layers[-1]
    fs = head.f if isinstance(head.f, list) else [head.f]
    inputs = [layers[j if j >= 0 else len(layers) - 1 + j] for j in fs]  # 'from' is relative to the head's index
    shapes = probe_shapes(model, inputs, size, forward=lambda x: _run_to_head(model, x))
    return torch.tensor([size / shapes[id(m)][0] for m in inputs], dtype=torch.float32)


def _run_to_head(model: nn.Module, x: torch.Tensor) -> None:
    """Run every layer but the head (what the strides need; heads need not accept a probe)."""
    y, outputs = x, []
    layers = list(model.model)
    save = set(getattr(model, "save", range(len(layers))))
    for m in layers[:-1]:
        if m.f != -1:
            y = outputs[m.f] if isinstance(m.f, int) else [y if j == -1 else outputs[j] for j in m.f]
        try:
            y = m(y)
        except Exception as e:  # a row whose module builds but cannot run: name the row, not a line deep inside it
            source = model.yaml.get("yaml_file", "<dict>") if isinstance(getattr(model, "yaml", None), dict) else "<model>"
            raise ConfigError(f"{source}: layer {m.i} ({getattr(m, 'type', type(m).__name__)}): the module was built "
                              f"but fails on its input {_shape(y)}: {type(e).__name__}: {e}; check the row's "
                              "arguments") from e
        outputs.append(y if m.i in save else None)
