"""Our model on the ultralytics engine: a ``DetectionTrainer`` whose ``get_model`` builds our parser's model.

Everything else (data loading, augmentation, loss of the anchor-free head, optimiser, EMA, AMP, DDP,
validation, metrics, plots, checkpoints, resume) is ultralytics' own. Kept in an importable module so
ultralytics' DDP launcher pickles the class by reference.
"""

from __future__ import annotations

import os

from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import RANK

from models.yolo import AttentionDetectionModel


class AttentionTrainer(DetectionTrainer):
    """DetectionTrainer that builds :class:`AttentionDetectionModel` and writes checkpoints atomically."""

    def get_model(self, cfg=None, weights=None, verbose=True):
        model = AttentionDetectionModel(cfg, nc=self.data["nc"], ch=self.data["channels"], verbose=verbose and RANK == -1)
        model = self.set_model_names_for_load(model)
        if weights:
            model.load(weights)
        return model

    def save_model(self):
        """Write last.pt/best.pt through a temporary file and an atomic rename.

        An interrupted or crashed save then leaves the previous checkpoint intact instead of a truncated file.
        """
        final = {"last": self.last, "best": self.best}
        tmp = {k: p.with_name(p.name + ".tmp") for k, p in final.items()}
        self.last, self.best = tmp["last"], tmp["best"]
        try:
            saved = super().save_model()
        finally:
            self.last, self.best = final["last"], final["best"]
        for k in final:
            if tmp[k].exists():
                os.replace(tmp[k], final[k])
        return saved
