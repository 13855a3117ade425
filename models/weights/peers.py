"""Other projects' models rebuilt as this project's: ultralytics, classic YOLOv5, YOLOv7.

The model is rebuilt from the model YAML stored in the checkpoint (``model.yaml``), through the same parser as any
YAML, and its tensors are mapped in layer by layer: key names (YOLOv7's ``RepConv`` branches renamed to ultralytics'
``conv1``/``conv2``/``bn``; ``anchor_grid`` is not a tensor of ours: the anchors are taken from it), shapes and every
torch layer's settings (kernel, stride, padding, groups, activation) must agree, or loading fails naming the layer.
What the YAMLs of YOLOv5 before v6.1 do not say is read from the layers: the activation of every Conv
(``activation:``, v3.0 LeakyReLU(0.1), v3.1 Hardswish) and BottleneckCSP's own (``csp_activation:``). The rebuilt
model computes what the original did.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from models.weights.unpickle import CheckpointError, PeerModule, peer_class_name

# ----------------------------------------------------------------------------------------------------------------------
# Rebuilding foreign models as ours

# Module names in a peer's model YAML that this project registers under another name (peer name -> registered
# name). Empty: every supported peer layer is found under its own name. The names ultralytics uses for other layers
# (Bottleneck, BottleneckCSP, RepConv) pick the peer's layer by the YAML rule (no ``scales:`` table: YOLOv5's /
# YOLOv7's, models/layers/yolov5.py), and ``csp_activation:`` picks BottleneckCSP's activation.
ROW_NAMES: dict[str, str] = {}
# YOLOv7's RepConv branches -> ultralytics' RepConv (3x3 conv+BN, 1x1 conv+BN, identity BN; fused conv)
RENAMED = {"RepConv": {"rbr_dense.0": "conv1.conv", "rbr_dense.1": "conv1.bn", "rbr_1x1.0": "conv2.conv",
                       "rbr_1x1.1": "conv2.bn", "rbr_identity": "bn", "rbr_reparam": "conv"}}
# anchor_grid (anchors in pixels, a buffer up to YOLOv5 v5.0 and in YOLOv7) is not a tensor of ours: the anchors are
# taken from it (_peer_anchors)
DROPPED = {"Detect": ("anchor_grid",), "IDetect": ("anchor_grid",), "IAuxDetect": ("anchor_grid",)}
YOLOV7_ONLY = frozenset({"IDetect", "MP", "SP", "SPPCSPC", "RepConv", "ImplicitA", "ImplicitM", "IAuxDetect", "ReOrg",
                         "DownC", "Shortcut", "IBin", "IKeypoint"})
# not compared: settings that do not change what a layer computes at inference (BatchNorm eps/momentum are copied),
# that old pickles may lack, and the parsers' per-layer tags (index, 'from', type name, parameter count)
NOT_COMPARED = frozenset({"training", "inplace", "eps", "momentum", "recompute_scale_factor", "name", "i", "f", "type",
                          "np"})
PLAIN = (bool, int, float, str, tuple, type(None))


def peer_family(root: nn.Module) -> str:
    names = {peer_class_name(m) for m in root.modules()}
    return "YOLOv7" if names & YOLOV7_ONLY else "YOLOv5"


def _map_key(root: nn.Module, key: str) -> str | None:
    """A peer state-dict key in this project's naming (None: dropped), walking the peer's module tree."""
    parts, out, m, i = key.split("."), [], root, 0
    while i < len(parts) - 1:
        table = RENAMED.get(peer_class_name(m), {})
        two = ".".join(parts[i:i + 2])
        if i + 2 < len(parts) and two in table:
            out.append(table[two])
            m, i = m.get_submodule(two), i + 2
        else:
            out.append(table.get(parts[i], parts[i]))
            m, i = getattr(m, parts[i]), i + 1
    if parts[-1] in DROPPED.get(peer_class_name(m), ()):
        return None
    return ".".join(out + parts[-1:])


def _map_path(root: nn.Module, name: str) -> str:
    return _map_key(root, f"{name}.x")[:-2] if name else ""


def _torch_layers(layer: nn.Module, mapped: bool) -> dict[str, tuple]:
    """Every torch.nn sub-module of a layer: path (in our naming) -> (class, constructor settings)."""
    out = {}
    for name, m in layer.named_modules(remove_duplicate=False):
        if type(m).__module__.startswith("torch.nn") and not isinstance(m, (nn.Sequential, nn.ModuleList, nn.Identity)):
            settings = {k: v for k, v in vars(m).items()
                        if not k.startswith("_") and k not in NOT_COMPARED and isinstance(v, PLAIN)}
            out[_map_path(layer, name) if mapped else name] = (type(m).__name__, settings)
    return out


def _check_settings(theirs: nn.Module, ours: nn.Module, where: str) -> None:
    a, b = _torch_layers(theirs, True), _torch_layers(ours, False)
    if a.keys() != b.keys():
        only = sorted(set(a) - set(b))[:4], sorted(set(b) - set(a))[:4]
        raise CheckpointError(f"{where}: its layers differ from this project's: only in the checkpoint {only[0]}, "
                              f"only here {only[1]}")
    for k, (cls, settings) in a.items():
        cls2, settings2 = b[k]
        common = settings.keys() & settings2.keys()
        diff = {s: (settings[s], settings2[s]) for s in sorted(common) if settings[s] != settings2[s]}
        if cls != cls2 or diff:
            what = f"{cls} vs {cls2}" if cls != cls2 else ", ".join(f"{s} {x!r} vs {y!r}" for s, (x, y) in diff.items())
            raise CheckpointError(f"{where}: {k or 'the layer'} computes something else here (checkpoint vs this "
                                  f"project: {what})")


def _load_layer(theirs: nn.Module, ours: nn.Module, where: str) -> int:
    """Copy one layer's tensors (and BatchNorm eps/momentum); returns the number of tensors loaded."""
    from ultralytics.nn.modules import RepConv

    sd = {}
    for k, v in theirs.state_dict().items():
        k2 = _map_key(theirs, k)
        if k2 is not None:
            sd[k2] = v
    for name, m in ours.named_modules():  # reparameterised YOLOv7 RepConv (rbr_reparam): fuse ours the same way
        if isinstance(m, RepConv) and f"{name + '.' if name else ''}conv.weight" in sd and hasattr(m, "conv1"):
            m.fuse_convs()
            m.forward = m.forward_fuse
    own = ours.state_dict()
    missing, extra = sorted(own.keys() - sd.keys()), sorted(sd.keys() - own.keys())
    shapes = [f"{k} {list(sd[k].shape)} vs {list(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or extra or shapes:
        parts = [f"missing {missing[:4]}" if missing else "", f"unexpected {extra[:4]}" if extra else "",
                 f"shapes differ (checkpoint vs here): {shapes[:3]}" if shapes else ""]
        raise CheckpointError(f"{where}: its tensors do not fit this project's {type(ours).__name__}: "
                              + "; ".join(p for p in parts if p))
    _check_settings(theirs, ours, where)
    ours.load_state_dict(sd)
    bns = dict(theirs.named_modules(remove_duplicate=False))
    for name, m in ours.named_modules():
        src = next((b for n, b in bns.items() if _map_path(theirs, n) == name), None) if isinstance(m, nn.BatchNorm2d) else None
        if isinstance(src, nn.BatchNorm2d):
            m.eps, m.momentum = src.eps, src.momentum
    return len(sd)


def _activation_row(act: nn.Module) -> str | None:
    """``nn.LeakyReLU(0.1)`` for an activation module, as a model YAML's ``activation:`` writes it."""
    from models.registry.values import ACTIVATIONS

    name = type(act).__name__
    if ACTIVATIONS.get(name) is not type(act):
        return None
    if isinstance(act, nn.LeakyReLU):
        return f"nn.LeakyReLU({act.negative_slope})"
    return f"nn.{name}()"


def _shared_activation(acts: list[nn.Module]) -> nn.Module | None:
    """The one activation all of ``acts`` are (same class and LeakyReLU slope), else None."""
    kinds = {(type(a), getattr(a, "negative_slope", None)) for a in acts}
    return acts[0] if len(kinds) == 1 else None


def _peer_activations(d: dict, layers: list[nn.Module]) -> None:
    """The activations a classic YOLOv5 release ran without its YAML saying so, written as model keys.

    - ``activation:``: every Conv's (v3.0: LeakyReLU(0.1), v3.1: Hardswish), when all Convs share one other than
      SiLU and no row names an activation (YOLOv7 rows do: their Convs differ by design);
    - ``csp_activation:``: BottleneckCSP's own, after the BatchNorm of its concatenated branches (LeakyReLU(0.1) up to
      v6.0), when it is not SiLU.
    A key the YAML already has is kept; an activation this project cannot write stops the load at the settings check.
    """
    modules = [m for layer in layers for m in layer.modules()]
    rows_name_one = any("nn." in str(r[-1]) for r in [*d.get("backbone", []), *d.get("head", [])])
    if not d.get("activation") and not rows_name_one:
        act = _shared_activation([m.act for m in modules if peer_class_name(m) == "Conv"
                                  and isinstance(getattr(m, "act", None), nn.Module)
                                  and not isinstance(m.act, nn.Identity)])  # Conv(act=False) is Identity anywhere
        if act is not None and not isinstance(act, nn.SiLU) and _activation_row(act):
            d["activation"] = _activation_row(act)
    if not d.get("csp_activation"):
        act = _shared_activation([m.act for m in modules if peer_class_name(m) == "BottleneckCSP"
                                  and isinstance(getattr(m, "act", None), nn.Module)])
        if act is not None and not isinstance(act, nn.SiLU) and _activation_row(act):
            d["csp_activation"] = _activation_row(act)


def _peer_anchors(head, peer_head: nn.Module, path) -> None:
    """Anchors from the peer head's ``anchor_grid`` (pixels, what its forward multiplies by) when it has one.

    YOLOv5 v3.0/v3.1 put anchors in stride units before checking their order, so a YAML listing them P5 first
    (yolov5-panet.yaml) saved an ``anchors`` buffer flipped with the wrong strides (P3's anchors / 32, P5's / 8) and
    a correct ``anchor_grid``; its forward read ``anchor_grid``, as do YOLOv5 up to v5.0 and YOLOv7.
    """
    from ultralytics.utils import LOGGER

    grid = peer_head.__dict__.get("_buffers", {}).get("anchor_grid")
    if not isinstance(grid, torch.Tensor) or grid.numel() != head.anchors.numel():
        return
    anchors = grid.float().view_as(head.anchors) / head.stride.view(-1, 1, 1)
    if not torch.allclose(anchors, head.anchors, rtol=1e-3):
        LOGGER.info(f"{Path(str(path)).name}: its 'anchors' buffer is not anchor_grid / stride (YOLOv5 v3.x saved it "
                    "mis-scaled for YAMLs listing P5 first); using anchor_grid, which its forward used")
    head.anchors.copy_(anchors)


def _names(src: nn.Module, nc: int) -> dict[int, str]:
    names = getattr(src, "names", None)
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or len(names) != nc:
        return {i: str(i) for i in range(nc)}
    return {int(k): str(v) for k, v in names.items()}


def rebuild(src: nn.Module, path, family: str):
    """``src`` (a peer stand-in tree or an ultralytics model) rebuilt as this project's model, tensors mapped in."""
    from ultralytics.utils import LOGGER

    from models.heads.anchor import AnchorHead
    from models.registry import ConfigError
    from models.yolo import AttentionDetectionModel

    name = Path(str(path)).name
    d = getattr(src, "yaml", None)
    layers = getattr(src, "model", None)
    if not isinstance(d, dict) or not isinstance(layers, nn.Sequential):
        raise CheckpointError(f"{path}: its {family} model stores no model YAML (model.yaml) and layer list to rebuild "
                              "it from")
    d = copy.deepcopy(d)
    d["yaml_file"] = f"{name} ({family} model YAML)"
    if family != "ultralytics":
        _peer_activations(d, list(layers))
        for key in ("backbone", "head"):
            d[key] = [[*r[:2], ROW_NAMES.get(r[2], r[2]), *r[3:]] if isinstance(r, list) and len(r) == 4 and
                      isinstance(r[2], str) else r for r in d.get(key) or []]
    try:
        model = AttentionDetectionModel(d, ch=int(d.get("channels", d.get("ch", 3))), verbose=False)
    except ConfigError as e:
        raise CheckpointError(f"{path}: its {family} model cannot be rebuilt here: {e}") from None
    if len(model.model) != len(layers):
        raise CheckpointError(f"{path}: {len(layers)} layers in the checkpoint, {len(model.model)} rebuilt from its YAML")
    n = 0
    with torch.no_grad():
        for i, (theirs, ours) in enumerate(zip(layers, model.model)):
            where = f"{path}: layer {i} ({ours.type})"
            if getattr(theirs, "f", ours.f) != ours.f:
                raise CheckpointError(f"{where}: reads {theirs.f} in the checkpoint, {ours.f} as rebuilt")
            n += _load_layer(theirs, ours, where)
    head = model.model[-1]
    stride = getattr(src, "stride", None)
    if isinstance(stride, torch.Tensor) and not torch.allclose(stride.float().cpu(), model.stride.float().cpu()):
        raise CheckpointError(f"{path}: strides {stride.tolist()} in the checkpoint, {model.stride.tolist()} rebuilt")
    if isinstance(head, AnchorHead):
        head.anchors_from_data = False  # the checkpoint's anchors, not placeholders for AutoAnchor
        with torch.no_grad():
            _peer_anchors(head, layers[-1], path)
        if not isinstance(model.yaml.get("anchors"), list):  # 'anchors: 3' in the YAML: write the learned ones
            model.yaml["anchors"] = (head.anchors * head.stride.view(-1, 1, 1)).flatten(1).tolist()
    model.names = _names(src, head.nc if hasattr(head, "nc") else model.yaml["nc"])
    total = len(model.state_dict())
    LOGGER.info(f"{name}: {family} checkpoint ({type(src).peer_class if isinstance(src, PeerModule) else type(src).__name__}), "
                f"rebuilt from its model YAML as this project's model: {n}/{total} tensors")
    return model


