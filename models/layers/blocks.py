"""ultralytics' building blocks and the ``nn.*`` layers YOLO YAMLs name, registered for the parser.

Every block an ultralytics detection YAML names (YOLOv3 ... YOLO26) is registered here as ultralytics' own class and
kind, so a YAML of its builds the same modules (names, state-dict keys) as ultralytics' ``parse_model``; the rules
its parser applies beyond the arguments (the head's legacy branch, scale-dependent arguments) are in ``families.py``.
Blocks ultralytics lacks are in ``yolov5.py``, ``yolov7.py`` and ``attention_blocks.py`` beside this file; the
detection heads are in :mod:`models.heads`.
"""

from __future__ import annotations

from torch import nn
from ultralytics.nn import modules as um

from models.layers.families import ultralytics_yaml
from models.layers.yolov5 import bottleneck_csp_name, bottleneck_name
from models.registry import LAYERS, ConfigError, RowContext

# c1, c2 = in/out channels; the YAML's first argument is the nominal output width (scaled by width_multiple)
for _cls in (um.Conv, um.DWConv, um.GhostConv, um.Focus, um.SPP, um.GhostBottleneck, um.ConvTranspose,
             um.DWConvTranspose2d,
             um.RepNCSPELAN4, um.ELAN1, um.ADown, um.AConv, um.SPPELAN,  # YOLOv9 (GELAN)
             um.SCDown, um.PSA):  # YOLOv10
    LAYERS.add(_cls, kind="conv")
LAYERS.add(nn.ConvTranspose2d, kind="conv", name="nn.ConvTranspose2d")  # YOLOv6's upsampling
# as above, with the (depth-scaled) repeat count inserted as the third argument
for _cls in (um.C1, um.C2, um.C2f, um.C3, um.C3x, um.C3Ghost, um.C3TR, um.RepC3,
             um.C3k2, um.C2PSA, um.C2fPSA,  # YOLO11, YOLO26
             um.C2fCIB,  # YOLOv10
             um.A2C2f):  # YOLO12
    LAYERS.add(_cls, kind="repeat")


def _bottleneck(args: list, model: dict) -> str:
    """``Bottleneck``: ultralytics' in its own files (YOLOv3u), YOLOv5's in YOLOv5/YOLOv7 YAMLs."""
    return "Bottleneck" if ultralytics_yaml(model) else bottleneck_name(args, model)


def _bottleneck_csp(args: list, model: dict) -> str:
    return "BottleneckCSP" if ultralytics_yaml(model) else bottleneck_csp_name(args, model)


# Same name, different layer in YOLOv5: YOLOv5/YOLOv7 YAMLs get YOLOv5's (models/layers/yolov5.py)
LAYERS.add(um.Bottleneck, kind="conv", dispatch=_bottleneck)
LAYERS.add(um.BottleneckCSP, kind="repeat", dispatch=_bottleneck_csp)
LAYERS.add(um.Concat, kind="concat")


# YOLOv9-E's multi-branch rows: CBLinear [[c, ...]] splits one map into several (widths as written, not scaled, as in
# ultralytics); CBFuse [[k, ...]] reads the k-th part of each CBLinear it names, resized to and summed with its last input.
def _cblinear_args(args: list, row: RowContext) -> tuple[list, list]:
    widths = args[0] if args else None
    if not isinstance(widths, list) or not widths or not all(isinstance(c, int) and c > 0 for c in widths):
        raise ConfigError(f"{row.where}: CBLinear's first argument is the list of output widths, e.g. [[64, 128]]; "
                          f"got {args!r}")
    return [row.c_from[0], widths, *args[1:]], widths


def _cbfuse_args(args: list, row: RowContext) -> tuple[list, int]:
    parts, branches = (args[0] if args else None), row.c_from[:-1]
    if not isinstance(parts, list) or len(parts) != len(row.c_from) - 1:
        raise ConfigError(f"{row.where}: CBFuse [[k, ...]] names one part per CBLinear input ({len(row.c_from) - 1} "
                          f"before its last input); got {args!r}")
    for k, widths in zip(parts, branches):
        if not isinstance(widths, list) or not (isinstance(k, int) and 0 <= k < len(widths)) \
                or widths[k] != row.c_from[-1]:
            raise ConfigError(f"{row.where}: CBFuse part {k!r} of an input with widths {widths!r} must be a CBLinear "
                              f"part as wide as its last input ({row.c_from[-1]} channels)")
    return [parts], row.c_from[-1]


LAYERS.add(um.CBLinear, kind="custom", make_args=_cblinear_args)
LAYERS.add(um.CBFuse, kind="custom", make_args=_cbfuse_args)


def _sppf_legacy_act(m, args: list) -> None:
    """ultralytics 8.4's SPPF leaves cv1 unactivated (YOLO26); rows with at most (c1, c2, k), as in every YOLOv5
    YAML, get YOLOv5's activated cv1, exactly as ultralytics' own parser does, so yolov5*.pt weights mean the same."""
    if len(args) <= 3:
        for block in m if isinstance(m, nn.Sequential) else [m]:
            block.cv1.act = um.Conv.default_act


LAYERS.add(um.SPPF, kind="conv", post_build=_sppf_legacy_act)

# torch.nn layers that YOLO YAMLs name, by their YAML spelling
for _name in ("Upsample", "Identity", "MaxPool2d", "AvgPool2d", "ZeroPad2d", "Dropout", "Dropout2d"):
    LAYERS.add(getattr(nn, _name), kind="passthrough", name=f"nn.{_name}")
LAYERS.add(nn.BatchNorm2d, kind="norm", name="nn.BatchNorm2d")
