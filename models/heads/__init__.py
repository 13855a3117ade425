"""Detection heads and their losses: ultralytics' Detect as YAMLs name it, the anchor-based heads of YOLOv5 and
YOLOv7 with their losses and AutoAnchor.

The anchor heads are importable from here too: checkpoints written before the rooms name ``models.heads.<Class>``.
"""

from models.heads.anchor import AnchorDetect, AnchorHead, IAuxDetect, IDetect

__all__ = ["AnchorDetect", "AnchorHead", "IAuxDetect", "IDetect"]
