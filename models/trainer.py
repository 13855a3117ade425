"""Our model on the ultralytics engine: a ``DetectionTrainer`` whose ``get_model`` builds our parser's model.

Everything else (data loading, augmentation, loss of the anchor-free head, optimiser, EMA, AMP, DDP,
validation, metrics, plots, checkpoints, resume) is ultralytics' own; the checkpoints its resume and
pretrained paths read go through :mod:`models.checkpoint` (restricted unpickling, foreign formats rebuilt
as our model). Kept in an importable module so ultralytics' DDP launcher pickles the class by reference.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import LOGGER, RANK

from models.autoanchor import autoanchor_before_training
from models.checkpoint import model_from_checkpoint, read_checkpoint
from models.run_config import restore_run_yaml
from models.transfer import identity_init_enabled, transfer_weights
from models.yolo import AttentionDetectionModel


def warn_dense_attention(model, imgsz, batch) -> list[str]:
    """Warn, naming the layer, when a dense (N x N) attention map would exceed the memory budget at this image size."""
    from models.dense_memory import dense_attention_check

    msgs = dense_attention_check(model, imgsz, batch=max(int(batch), 1))
    for msg in msgs:
        LOGGER.warning(msg)
    return msgs


def _load_checkpoint(weight, device=None, inplace=True, fuse=False):
    """ultralytics' ``load_checkpoint`` contract (model, checkpoint dict), read by :mod:`models.checkpoint`: restricted
    unpickling, any supported format, the path used as given."""
    ckpt = read_checkpoint(weight)
    model = model_from_checkpoint(ckpt, weight).to(device)
    return (model.fuse() if fuse else model), ckpt


def _local_file(file, *args, **kwargs) -> str:
    """``check_file`` for weights: the local file as given, never renamed (yolov5s.pt -> yolov5su.pt) or downloaded."""
    if not Path(str(file)).is_file():
        raise FileNotFoundError(f"{file}: no such file (weights are never downloaded)")
    return str(file)


@contextmanager
def project_checkpoints():
    """While active, the ultralytics trainer's resume and pretrained paths read checkpoints through
    :mod:`models.checkpoint` and take weight paths literally (the names its module looks up are swapped back after)."""
    import ultralytics.engine.trainer as engine

    saved = engine.load_checkpoint, engine.check_file
    engine.load_checkpoint, engine.check_file = _load_checkpoint, _local_file
    try:
        yield
    finally:
        engine.load_checkpoint, engine.check_file = saved


class AttentionTrainer(DetectionTrainer):
    """DetectionTrainer that builds :class:`AttentionDetectionModel` and writes checkpoints atomically."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback("on_pretrain_routine_end", autoanchor_before_training)  # anchor-based heads only
        self.add_callback("on_pretrain_routine_start", restore_run_yaml)

    def check_resume(self, overrides):
        with project_checkpoints():
            super().check_resume(overrides)

    def setup_model(self):
        with project_checkpoints():
            return super().setup_model()

    def get_model(self, cfg=None, weights=None, verbose=True):
        model = AttentionDetectionModel(cfg, nc=self.data["nc"], ch=self.data["channels"], verbose=verbose and RANK == -1)
        model = self.set_model_names_for_load(model)
        if RANK in {-1, 0}:
            warn_dense_attention(model, self.args.imgsz, self.args.batch)
        if weights:  # structural transfer: inserted/removed layers keep every other layer's weights (models/transfer.py)
            self.transfer_report = transfer_weights(model, weights, identity_init=identity_init_enabled(),
                                                    verbose=verbose and RANK in {-1, 0})
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
