"""ultralytics' detection validator with reproducible scores (used by training and by val.py)."""

from __future__ import annotations

from ultralytics.models.yolo.detect import DetectionValidator

from models.patches import nms_without_time_limit


class ReproducibleValidator(DetectionValidator):
    """ultralytics' detection validator with NMS free of its wall-clock limit.

    ultralytics' NMS stops after ``2 + 0.05 * batch`` seconds and drops the rest of the batch; an untrained model's
    thousands of candidates at ``conf=0.001`` reach that on a busy CPU, so the same weights would score differently
    from run to run (and so would best.pt, picked by those scores). Without the limit the metrics depend only on the
    weights; candidates stay capped by NMS's ``max_nms``.
    """

    def postprocess(self, preds):
        with nms_without_time_limit():
            return super().postprocess(preds)
