"""ultralytics' building blocks and the ``nn.*`` layers YOLO YAMLs name, registered for the parser.

Blocks ultralytics lacks are in ``yolov5.py``, ``yolov7.py`` and ``attention_blocks.py`` beside this file; the
detection heads are in :mod:`models.heads`.
"""

from __future__ import annotations

from torch import nn
from ultralytics.nn import modules as um

from models.layers.yolov5 import bottleneck_csp_name, bottleneck_name
from models.registry import LAYERS

# c1, c2 = in/out channels; the YAML's first argument is the nominal output width (scaled by width_multiple)
for _cls in (um.Conv, um.DWConv, um.GhostConv, um.Focus, um.SPP, um.GhostBottleneck, um.ConvTranspose):
    LAYERS.add(_cls, kind="conv")
# as above, with the (depth-scaled) repeat count inserted as the third argument
for _cls in (um.C1, um.C2, um.C2f, um.C3, um.C3x, um.C3Ghost, um.C3TR, um.RepC3):
    LAYERS.add(_cls, kind="repeat")
# Same name, different layer in YOLOv5: YOLOv5/YOLOv7 YAMLs (no 'scales:') get YOLOv5's (models/layers/yolov5.py)
LAYERS.add(um.Bottleneck, kind="conv", dispatch=bottleneck_name)
LAYERS.add(um.BottleneckCSP, kind="repeat", dispatch=bottleneck_csp_name)
LAYERS.add(um.Concat, kind="concat")


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
