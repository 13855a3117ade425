"""Our model on the ultralytics engine: a ``DetectionTrainer`` whose ``get_model`` builds our parser's model.

Everything else (data loading, augmentation, loss of the anchor-free head, optimiser, EMA, AMP, DDP,
validation, metrics, plots, checkpoints, resume) is ultralytics' own; the checkpoints its resume and
pretrained paths read go through :mod:`models.weights.checkpoint` (restricted unpickling, foreign formats rebuilt
as our model). Kept in an importable module so ultralytics' DDP launcher pickles the class by reference.
"""

from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path

import torch
from ultralytics.models.yolo.detect import DetectionTrainer, DetectionValidator
from ultralytics.utils import LOGGER, RANK, YAML

from data.datasets import readable_image_errors, scan_problems
from models.heads.autoanchor import autoanchor_before_training
from models.weights.checkpoint import model_from_checkpoint, read_checkpoint
from models.engine.run_yaml import restore_run_yaml
from models.weights.transfer import identity_init_enabled, transfer_weights
from models.yolo import AttentionDetectionModel


def warn_dense_attention(model, imgsz, batch) -> list[str]:
    """Warn, naming the layer, when a dense attention module's working set (q, k, v, outputs and what the backward
    keeps; no N x N map is stored since the SDPA rewrite) would exceed the memory budget at this image size and batch
    (``models/engine/checks.py``)."""
    from models.engine.checks import dense_attention_check

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
    """ultralytics' ``load_checkpoint`` contract (model, checkpoint dict), read by :mod:`models.weights.checkpoint`: restricted
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
    :mod:`models.weights.checkpoint` and take weight paths literally (the names its module looks up are swapped back after)."""
    import ultralytics.engine.trainer as engine

    saved = engine.load_checkpoint, engine.check_file
    engine.load_checkpoint, engine.check_file = _load_checkpoint, _local_file
    try:
        yield
    finally:
        engine.load_checkpoint, engine.check_file = saved

TMP_SUFFIX = ".tmp"  # our temporaries: <file>.tmp beside the file they replace (one run owns its folder)
RUN_FILES = ("results.csv", "args.yaml")  # besides weights/*.pt: what a run writes that a user keeps


def temporary(path: Path) -> Path:
    return path.with_name(path.name + TMP_SUFFIX)


def replace_atomically(path: Path, write) -> None:
    """``write(tmp)`` writes the whole new content of ``path`` into a temporary beside it, which then replaces
    ``path`` in one rename: ``path`` is always either its previous content or the new one. A write that fails
    (ENOSPC, an exception, Ctrl-C) removes the temporary and re-raises; a killed process leaves it for
    :func:`remove_stale_temporaries`."""
    path = Path(path)
    tmp = temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(save_dir: Path) -> list[Path]:
    """Delete the temporaries a killed run left in ``save_dir`` (ours only: weights/*.pt.tmp, results.csv.tmp,
    args.yaml.tmp); returns what was removed."""
    save_dir = Path(save_dir)
    stale = [*save_dir.glob(f"weights/*.pt{TMP_SUFFIX}"), *(save_dir / f"{f}{TMP_SUFFIX}" for f in RUN_FILES)]
    removed = []
    for f in stale:
        if f.is_file():
            f.unlink(missing_ok=True)
            removed.append(f)
    if removed:
        LOGGER.info(f"Removed {len(removed)} temporary file(s) an interrupted write left: {', '.join(map(str, removed))}")
    return removed


class _AtomicYAML(YAML):
    """ultralytics' YAML whose ``save`` replaces the file atomically (args.yaml)."""

    @classmethod
    def save(cls, file="data.yaml", data=None, header=""):
        replace_atomically(Path(file), lambda tmp: YAML.save(tmp, data, header))


def _atomic_strip_optimizer(f, s="", updates=None) -> dict:
    """ultralytics' ``strip_optimizer`` writing into a temporary that then replaces ``f`` (or ``s``) atomically.

    If stripping fails (disk full, an error) the previous file stays as it was, loadable (it still holds the
    optimizer state), and a warning says so; an interrupted strip (Ctrl-C, kill) leaves it untouched too.
    """
    from ultralytics.utils.torch_utils import strip_optimizer

    target = Path(s or f)
    tmp = temporary(target)
    try:
        out = strip_optimizer(f, s=str(tmp), updates=updates)
        if tmp.exists():  # strip_optimizer only warns (and writes nothing) for a file that is no checkpoint
            os.replace(tmp, target)
        return out
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if not isinstance(e, Exception):
            raise
        reason = "the disk is full" if isinstance(e, OSError) and e.errno == errno.ENOSPC else f"{type(e).__name__}: {e}"
        LOGGER.warning(f"Could not strip the optimizer from {target} ({reason}); {target} is kept as the last epoch "
                       "saved it: loadable, with its optimizer state (a larger file)")
        return {}


def _csv_epoch(line: str) -> int | None:
    try:
        return int(float(line.split(",", 1)[0]))
    except ValueError:
        return None


def rewrite_results(csv: Path, header: str | None = None, row: str | None = None, keep_upto: int = 0) -> None:
    """Rewrite results.csv atomically, one row per epoch: rows of epochs up to ``keep_upto`` are kept, then ``row``
    (for epoch ``keep_upto + 1``) is added. Duplicate or later rows, left by an interrupted run, are dropped."""
    csv = Path(csv)
    lines = csv.read_text(encoding="utf-8").splitlines() if csv.exists() else []
    old_header, rows = (lines[0], lines[1:]) if lines and _csv_epoch(lines[0]) is None else (None, lines)
    by_epoch = {}
    for line in rows:
        e = _csv_epoch(line)
        if e is not None and 1 <= e <= keep_upto:
            by_epoch[e] = line  # the last row written for an epoch is the one its checkpoint follows
    if row is not None:
        by_epoch[keep_upto + 1] = row
    header = header or old_header
    text = "".join(f"{line}\n" for line in ([header] if header else []) + [by_epoch[e] for e in sorted(by_epoch)])
    if csv.exists() and text == "\n".join(lines) + ("\n" if lines else ""):
        return
    csv.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(csv, lambda tmp: tmp.write_bytes(text.encode("utf-8")))


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def time_training_step(model: torch.nn.Module, batch: int, imgsz: int, device) -> float:
    """Seconds of one forward + backward pass of a copy of ``model`` on a zero batch (nothing of the run changes:
    the copy keeps BatchNorm statistics and gradients to itself, the random number generators are restored)."""
    copy = deepcopy(model).train()
    for p in copy.parameters():
        p.requires_grad_(True)
    x = torch.zeros(batch, 3, imgsz, imgsz, device=device)
    steps = 2 if device.type == "cuda" else 1  # the first CUDA step pays for kernel selection
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # dropout draws stay private
        for _ in range(steps):
            t = time.perf_counter()
            out = copy(x)
            sum(o.float().sum() for o in torch.utils._pytree.tree_leaves(out) if isinstance(o, torch.Tensor)).backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t
    del copy, x, out
    return dt


class ReproducibleValidator(DetectionValidator):
    """ultralytics' detection validator with NMS free of its wall-clock limit.

    ultralytics' NMS stops after ``2 + 0.05 * batch`` seconds and drops the rest of the batch; an untrained model's
    thousands of candidates at ``conf=0.001`` reach that on a busy CPU, so the same weights scored differently from
    run to run (and best.pt, picked by those scores, differed). Without the limit the metrics depend only on the
    weights; candidates stay capped by NMS's ``max_nms``.
    """

    def postprocess(self, preds):
        from functools import partial

        import ultralytics.utils.nms as nms

        original = nms.non_max_suppression
        nms.non_max_suppression = partial(original, max_time_img=float("inf"))
        try:
            return super().postprocess(preds)
        finally:
            nms.non_max_suppression = original


class AttentionTrainer(DetectionTrainer):
    """DetectionTrainer that builds :class:`AttentionDetectionModel` and replaces every file a user keeps (last.pt,
    best.pt, results.csv, args.yaml) atomically, the end-of-training strip included; results.csv holds one row
    per epoch whatever was interrupted."""

    def __init__(self, *args, **kwargs):
        import ultralytics.engine.trainer as engine

        readable_image_errors()  # a corrupt image is reported as such (not as a missing pi_heif module)
        engine.YAML = _AtomicYAML  # args.yaml
        try:
            super().__init__(*args, **kwargs)
        finally:
            engine.YAML = YAML
        if RANK in {-1, 0}:
            remove_stale_temporaries(self.save_dir)
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
        if weights:  # structural transfer: inserted/removed layers keep every other layer's weights (models/weights/transfer.py)
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
        """ultralytics' set-up with :meth:`check_amp` in place of its own AMP check (nothing is downloaded), then the
        plan of the run: epochs, batches, image size, device and an estimate of the time it takes."""
        import ultralytics.engine.trainer as engine

        original, engine.check_amp = engine.check_amp, self.check_amp
        try:
            out = super()._setup_train()
        finally:
            engine.check_amp = original
        if RANK in {-1, 0}:
            self.print_plan()
        return out

    def print_plan(self) -> str:
        """Log what the run will do and about how long it takes (one timed training step, extrapolated)."""
        from ultralytics.utils.torch_utils import unwrap_model

        nb, epochs = len(self.train_loader), self.epochs - self.start_epoch
        where = "CPU" if self.device.type == "cpu" else str(self.device)
        plan = (f"plan: {epochs} epoch{'s' * (epochs != 1)} x {nb} batches of {self.batch_size} images at "
                f"{self.args.imgsz} px on {where}")
        try:
            step = time_training_step(unwrap_model(self.model), self.batch_size, self.args.imgsz, self.device)
            total = step * nb * epochs
            plan += f"; one training step takes {step:.2g} s, so about {_duration(total)} of training plus validation"
        except Exception as e:  # out of memory, say: the run itself will report it
            total = 0.0
            plan += f" (no time estimate: {type(e).__name__})"
        LOGGER.info(plan)
        if self.device.type == "cpu" and total > 1800:
            LOGGER.warning("That is long on a CPU. For a first result in minutes: --epochs 20 --img 256 --batch-size 8 "
                           "(README quick start); Ctrl-C stops, --resume continues.")
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
        """ultralytics' validator, as :class:`ReproducibleValidator` (epoch metrics, best.pt and the final scores
        depend on the weights only, not on how busy the machine is)."""
        validator = super().get_validator()
        validator.__class__ = ReproducibleValidator  # the same object and set-up; only postprocess differs
        return validator

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
        import ultralytics.engine.trainer as engine

        original, engine.strip_optimizer = engine.strip_optimizer, _atomic_strip_optimizer
        try:
            return super().final_eval()
        finally:
            engine.strip_optimizer = original
