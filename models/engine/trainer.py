"""Our model on the ultralytics engine: a ``DetectionTrainer`` whose ``get_model`` builds our parser's model.

Everything else (data loading, augmentation, loss of the anchor-free head, optimiser, EMA, AMP, DDP, validation,
metrics, plots, checkpoints, resume) is ultralytics' own; the checkpoints its resume and pretrained paths read go
through :mod:`models.weights.checkpoint`, its files are written as :mod:`models.engine.run_folder` says, and what
cannot be reached by subclassing is swapped in :mod:`models.patches`. Kept in an importable module so
ultralytics' DDP launcher pickles the class by reference.
"""

from __future__ import annotations

import os
import time
from copy import copy
from functools import partial
from pathlib import Path

import torch
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import LOGGER, RANK
from ultralytics.utils.torch_utils import unwrap_model

from data.datasets import readable_image_errors, scan_problems
from models.engine.checks import amp_verdict, duration, time_training_step, warn_dense_attention
from models.patches import trainer_amp_check, trainer_checkpoints, trainer_strip_optimizer, trainer_yaml
from models.engine.run_folder import (AtomicYAML, atomic_strip_optimizer, remove_stale_temporaries, rewrite_results,
                                      temporary)
from models.engine.run_yaml import restore_run_yaml
from models.engine.validator import ReproducibleValidator
from models.heads.autoanchor import autoanchor_before_training
from models.weights.checkpoint import model_from_checkpoint, read_checkpoint
from models.weights.transfer import transfer_weights
from models.yolo import AttentionDetectionModel


def _load_checkpoint(weight, device=None, inplace=True, fuse=False, *, trust: bool = False):
    """ultralytics' ``load_checkpoint`` contract (model, checkpoint dict), read by :mod:`models.weights.checkpoint`:
    restricted unpickling unless ``trust``, any supported format, the path used as given."""
    ckpt = read_checkpoint(weight, trust=trust)
    model = model_from_checkpoint(ckpt, weight).to(device)
    return (model.fuse() if fuse else model), ckpt


def _local_file(file, *args, **kwargs) -> str:
    """``check_file`` for weights: the local file as given, never renamed (yolov5s.pt -> yolov5su.pt) or downloaded."""
    if not Path(str(file)).is_file():
        raise FileNotFoundError(f"{file}: no such file (weights are never downloaded)")
    return str(file)


def pretrained_only(freeze, report):
    """ultralytics' ``freeze`` (the first N layers, or a list of indices) without the layers a weight transfer gave no
    pretrained weights (inserted attention): ``--freeze 10`` then freezes the pretrained backbone and trains what was
    inserted into it, the usual way to fine-tune with new layers. Unchanged without a transfer."""
    if not freeze or report is None or not report.new_layers:
        return freeze
    layers = list(range(freeze)) if isinstance(freeze, int) else list(freeze)
    new = {i: t for i, t in report.new_layers}
    kept = [i for i in layers if i not in new]
    trained = [f"{i} {new[i]}" for i in layers if i in new]
    if trained and RANK in {-1, 0}:
        LOGGER.info(f"freeze: {len(kept)} pretrained layer(s); not frozen, no pretrained weights: {', '.join(trained)}")
    return kept


def cpu_training_threads() -> int:
    """Intra-op threads for training on the CPU: ``OMP_NUM_THREADS`` when set, else every core this process may use.

    ultralytics' device selection sets torch to one thread fewer than the machine's cores (one thread on 2 cores)
    while its CPU trainer also loads data in the main process (``workers=0``): the spare core idles. Measured on 2
    cores: a bare training step of yolov5n-cbam 1.4-1.7x faster with 2 threads; the quick start 390 s instead of 420 s,
    with the same losses and scores.
    """
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class AttentionTrainer(DetectionTrainer):
    """DetectionTrainer that builds :class:`AttentionDetectionModel` and replaces every file a user keeps (last.pt,
    best.pt, results.csv, args.yaml) atomically, the end-of-training strip included; results.csv holds one row
    per epoch whatever was interrupted.

    Settings of our own (the engine's argument set has no place for them) are class attributes; :meth:`configured`
    makes a subclass that carries them, which ultralytics' DDP launcher pickles by value into its workers.
    """

    trust_weights = False  # read --weights / --resume with unrestricted unpickling (train.py --trust-weights)
    identity_init = True  # transferred models: layers without pretrained weights start as the identity

    @classmethod
    def configured(cls, *, trust_weights: bool = False, identity_init: bool = True) -> type[AttentionTrainer]:
        """A subclass with these settings (what train.py runs)."""
        return type(cls.__name__, (cls,), {"trust_weights": bool(trust_weights), "identity_init": bool(identity_init),
                                           "__module__": cls.__module__, "__qualname__": cls.__qualname__})

    def __init__(self, *args, **kwargs):
        readable_image_errors()  # a corrupt image is reported as such (not as a missing pi_heif module)
        with trainer_yaml(AtomicYAML):  # args.yaml, replaced atomically
            super().__init__(*args, **kwargs)
        if RANK in {-1, 0}:
            remove_stale_temporaries(self.save_dir)
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_training_threads())  # after ultralytics' device selection set cores - 1
        self.add_callback("on_pretrain_routine_end", autoanchor_before_training)  # anchor-based heads only
        self.add_callback("on_pretrain_routine_start", restore_run_yaml)

    def _project_checkpoints(self):
        """The engine's resume and pretrained paths read checkpoints through :mod:`models.weights.checkpoint`
        (restricted unpickling, any supported format) and take weight paths literally (nothing downloaded)."""
        return trainer_checkpoints(partial(_load_checkpoint, trust=self.trust_weights), _local_file)

    def check_resume(self, overrides):
        with self._project_checkpoints():
            super().check_resume(overrides)

    def setup_model(self):
        with self._project_checkpoints():
            out = super().setup_model()
        self.args.freeze = pretrained_only(self.args.freeze, getattr(self, "transfer_report", None))
        return out

    def get_model(self, cfg=None, weights=None, verbose=True):
        model = AttentionDetectionModel(cfg, nc=self.data["nc"], ch=self.data["channels"], verbose=verbose and RANK == -1)
        model = self.set_model_names_for_load(model)
        if RANK in {-1, 0}:
            warn_dense_attention(model, self.args.imgsz, self.args.batch)
        if weights:  # structural transfer: inserted/removed layers keep every other layer's weights (models/weights/transfer.py)
            self.transfer_report = transfer_weights(model, weights, identity_init=self.identity_init,
                                                    trust=self.trust_weights, verbose=verbose and RANK in {-1, 0})
        return model

    def check_amp(self, model) -> bool:
        """Our AMP check, in place of ultralytics' ``check_amp`` (which loads yolo26n.pt, downloading it when absent,
        and only tolerates a ConnectionError): fp32 against fp16 autocast on the model being trained. CUDA only."""
        device = next(model.parameters()).device
        if device.type != "cuda":
            return False  # as ultralytics: AMP only on CUDA
        return amp_verdict(model, imgsz=max(256, int(model.stride.max() * 4)))

    def _setup_train(self):
        """ultralytics' set-up with :meth:`check_amp` in place of its own AMP check (nothing is downloaded), then the
        plan of the run: epochs, batches, image size, device and an estimate of the time it takes."""
        with trainer_amp_check(self.check_amp):
            out = super()._setup_train()
        if RANK in {-1, 0}:
            self.print_plan()
        return out

    def print_plan(self) -> str:
        """Log what the run will do and about how long it takes (one timed training step, extrapolated)."""
        nb, epochs = len(self.train_loader), self.epochs - self.start_epoch
        where = "CPU" if self.device.type == "cpu" else str(self.device)
        plan = (f"plan: {epochs} epoch{'s' * (epochs != 1)} x {nb} batches of {self.batch_size} images at "
                f"{self.args.imgsz} px on {where}")
        try:
            step = time_training_step(unwrap_model(self.model), self.batch_size, self.args.imgsz, self.device)
            total = step * nb * epochs
            plan += f"; one training step takes {step:.2g} s, so about {duration(total)} of training plus validation"
        except Exception as e:  # out of memory, say: the run itself will report it
            total = 0.0
            plan += f" (no time estimate: {type(e).__name__})"
        LOGGER.info(plan)
        if self.device.type == "cpu" and total > 1800:
            LOGGER.warning("That is long on a CPU. For a first result in minutes: train.py --quick (the CPU quick start, "
                           "docs/training.md); Ctrl-C stops, --resume continues.")
        return plan

    def build_dataset(self, img_path, mode="train", batch=None):
        """ultralytics' dataset, then one summary line of the images and labels its scan skipped."""
        dataset = super().build_dataset(img_path, mode=mode, batch=batch)
        if RANK in {-1, 0}:
            summary = scan_problems(img_path, prefix=f"{mode}: ")
            if summary:
                LOGGER.warning(summary)
        return dataset

    def get_validator(self):
        """:class:`ReproducibleValidator`, made as ``DetectionTrainer.get_validator`` makes its validator (epoch metrics,
        best.pt and the final scores depend on the weights only, not on how busy the machine is)."""
        return ReproducibleValidator(self.test_loader, save_dir=self.save_dir, args=copy(self.args),
                                     _callbacks=self.callbacks)

    def save_metrics(self, metrics):
        """ultralytics' results.csv row for this epoch, written by rewriting the file atomically keyed by epoch: an
        epoch that is repeated (after a kill between the row and last.pt, or a failed save) keeps one row."""
        keys, vals = list(metrics), list(metrics.values())
        n = len(keys) + 2
        header = ("%s," * n % ("epoch", "time", *keys)).rstrip(",")
        row = ("%.6g," * n % (self.epoch + 1, time.time() - self.train_time_start, *vals)).rstrip(",")
        rewrite_results(self.csv, header, row, keep_upto=self.epoch)

    def resume_training(self, ckpt):
        """ultralytics' resume; results.csv then loses rows of epochs after the checkpoint's (they are trained again)."""
        super().resume_training(ckpt)
        if ckpt is not None and self.resume and RANK in {-1, 0}:
            rewrite_results(self.csv, keep_upto=self.start_epoch)

    def save_model(self):
        """Write last.pt/best.pt through temporaries and atomic renames.

        An interrupted, crashed or failed save (disk full) then leaves the previous checkpoints intact instead of a
        truncated file, and no temporary behind (a killed process's are removed on the next start).
        """
        final = {"last": self.last, "best": self.best}
        tmp = {k: temporary(p) for k, p in final.items()}
        self.last, self.best = tmp["last"], tmp["best"]
        try:
            saved = super().save_model()
            for k in final:
                if tmp[k].exists():
                    os.replace(tmp[k], final[k])
        except BaseException:
            for t in tmp.values():
                t.unlink(missing_ok=True)
            raise
        finally:
            self.last, self.best = final["last"], final["best"]
        return saved

    def final_eval(self):
        """ultralytics' final step (strip the optimizer from last.pt and best.pt, validate best.pt) with every strip
        written to a temporary and renamed: if it fails or is interrupted, the files of the last epoch stay."""
        with trainer_strip_optimizer(atomic_strip_optimizer):
            return super().final_eval()
