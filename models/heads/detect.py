"""ultralytics' anchor-free ``Detect`` as YOLO YAMLs name it.

``Detect [nc]`` builds ultralytics' head (``legacy`` branch, as ultralytics builds it for v3/v5/v8 YAMLs);
``Detect [nc, anchors]`` (YOLOv5 v6.0 and YOLOv7 files) is the anchor-based head of :mod:`models.heads.anchor`.
"""

from __future__ import annotations

from ultralytics.nn.modules import Detect

from models.registry import LAYERS, RowContext


def _detect_args(args: list, row: RowContext) -> tuple[list, None]:
    """ultralytics Detect(nc, reg_max, end2end, ch)."""
    return [*args[:1], row.model.get("reg_max", 16), row.model.get("end2end"), row.c_from], None


def _detect_class(args: list, model: dict) -> str:
    """``Detect [nc, anchors]`` (YOLOv5/YOLOv7 YAMLs): the anchor-based head; ``[nc]``: ultralytics' Detect."""
    return "AnchorDetect" if len(args) > 1 else "Detect"


LAYERS.add(Detect, kind="head", make_args=_detect_args, legacy=True, dispatch=_detect_class)
