"""ultralytics' anchor-free heads as YOLO YAMLs name them.

``Detect [nc]`` builds ultralytics' head: its ``legacy`` classification branch (v3/v5/v8/v9) unless a row above it
turns that off (YOLOv10/11/12/26; the rule is in :mod:`models.layers.families`), with the model's ``reg_max`` and
``end2end`` keys (YOLO26: one-to-one and one-to-many branches, no NMS). ``v10Detect [nc]`` is YOLOv10's end-to-end
head. ``Detect [nc, anchors]`` (YOLOv5 v6.0 and YOLOv7 files) is the anchor-based head of :mod:`models.heads.anchor`.
"""

from __future__ import annotations

from ultralytics.nn.modules import Detect, v10Detect

from models.registry import LAYERS, RowContext


def _detect_args(args: list, row: RowContext) -> tuple[list, None]:
    """ultralytics Detect(nc, reg_max, end2end, ch)."""
    return [*args[:1], row.model.get("reg_max", 16), row.model.get("end2end"), row.c_from], None


def _detect_class(args: list, model: dict) -> str:
    """``Detect [nc, anchors]`` (YOLOv5/YOLOv7 YAMLs): the anchor-based head; ``[nc]``: ultralytics' Detect."""
    return "AnchorDetect" if len(args) > 1 else "Detect"


LAYERS.add(Detect, kind="head", make_args=_detect_args, legacy=True, dispatch=_detect_class)  # legacy: until a row turns it off


def _v10_detect_args(args: list, row: RowContext) -> tuple[list, None]:
    """ultralytics v10Detect(nc, ch): always end-to-end; its light classification branch whatever ``legacy`` says."""
    return [*args[:1], row.c_from], None


LAYERS.add(v10Detect, kind="head", make_args=_v10_detect_args)
