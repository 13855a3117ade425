"""Our model on the ultralytics engine: a ``DetectionTrainer`` whose ``get_model`` builds our parser's model.

Everything else (data loading, augmentation, loss of the anchor-free head, optimiser, EMA, AMP, DDP,
validation, metrics, plots, checkpoints, resume) is ultralytics' own; the checkpoints its resume and
pretrained paths read go through :mod:`models.checkpoint` (restricted unpickling, foreign formats rebuilt
as our model). Kept in an importable module so ultralytics' DDP launcher pickles the class by reference.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path

import torch
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import LOGGER, RANK

from models.autoanchor import autoanchor_before_training
from models.checkpoint import model_from_checkpoint, read_checkpoint
from models.run_config import restore_run_yaml
from models.transfer import identity_init_enabled, transfer_weights
from models.yolo import AttentionDetectionModel


def warn_dense_attention(model, imgsz, batch) -> list[str]:
    """Warn, naming the layer, when a dense attention module's working set (q, k, v, outputs and what the backward
    keeps; no N x N map is stored since the SDPA rewrite) would exceed the memory budget at this image size and batch
    (``models/dense_memory.py``)."""
    from models.dense_memory import dense_attention_check

    msgs = dense_attention_check(model, imgsz, batch=max(int(batch), 1))
    for msg in msgs:
        LOGGER.warning(msg)
    return msgs


AMP_TOLERANCE = 0.1  # relative L2 difference; fp16 gives at most ~3e-2 on randomly initialised models at 256 px


def amp_disagreement(model: torch.nn.Module, imgsz: int, dtype: torch.dtype = torch.float16) -> tuple[float, str]:
    """How far autocast (``dtype``) moves the training-mode outputs of ``model`` from fp32.

    A copy of the model (so BatchNorm statistics stay untouched) runs in training mode, as AMP training does;
    batch statistics keep the activations of an untrained model O(1), where eval mode would let them underflow
    fp16. Returns the largest relative L2 difference over the head's output tensors (inf where the AMP output is
    not finite) and the name of that output.
    """
    device = next(model.parameters()).device
    x = torch.rand(2, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0)).to(device)
    copy = deepcopy(model).train()
    with torch.no_grad():
        ref = copy(x)
        with torch.autocast(device.type, dtype=dtype):
            amp = copy(x)
    worst, where = 0.0, ""
    for i, (a, r) in enumerate(zip(torch.utils._pytree.tree_leaves(amp), torch.utils._pytree.tree_leaves(ref))):
        a, r = a.float(), r.float()
        d = float("inf") if not torch.isfinite(a).all() else float((a - r).norm() / r.norm().clamp_min(1e-12))
        if d >= worst:
            worst, where = d, f"output {i} {tuple(r.shape)}"
    return worst, where


def amp_verdict(model: torch.nn.Module, imgsz: int, dtype: torch.dtype = torch.float16) -> bool:
    """Whether to train ``model`` with AMP: the outputs agree within :data:`AMP_TOLERANCE` (logged either way)."""
    try:
        worst, where = amp_disagreement(model, imgsz, dtype)
    except Exception as e:  # the check could not run (out of memory, say): keep AMP, as ultralytics does then
        LOGGER.warning(f"AMP: check skipped ({type(e).__name__}: {e}); training with AMP as asked. "
                       "If losses turn NaN, train with --no-amp.")
        return True
    if worst <= AMP_TOLERANCE:
        LOGGER.info(f"AMP: checks passed on this model (autocast vs fp32 relative difference {worst:.1e}) ✅")
        return True
    LOGGER.warning(f"AMP: checks failed: autocast changes this model's {where} by {worst:.3g} (relative, limit "
                   f"{AMP_TOLERANCE}); AMP is disabled for this run")
    return False


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

    def check_amp(self, model) -> bool:
        """Our AMP check, in place of ultralytics' ``check_amp`` (which loads yolo26n.pt, downloading it when absent,
        and only tolerates a ConnectionError): fp32 against fp16 autocast on the model being trained. CUDA only."""
        device = next(model.parameters()).device
        if device.type != "cuda":
            return False  # as ultralytics: AMP only on CUDA
        return amp_verdict(model, imgsz=max(256, int(model.stride.max() * 4)))

    def _setup_train(self):
        """ultralytics' set-up with :meth:`check_amp` in place of its own AMP check (nothing is downloaded)."""
        import ultralytics.engine.trainer as engine

        original, engine.check_amp = engine.check_amp, self.check_amp
        try:
            return super()._setup_train()
        finally:
            engine.check_amp = original

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
