"""Train a YOLO detector with attention modules placed from its YAML.

    python train.py --cfg yolov5s-cbam.yaml --data shapes.yaml --epochs 30 --img 320 --batch-size 16

Flags follow YOLOv5's train.py. Training itself is ultralytics' trainer; runs go to runs/train/exp, exp2, ...
"""

from __future__ import annotations

import argparse
import errno
from pathlib import Path

import tools.common as common
from models.engine import run_folder

ULTRALYTICS_HYP = {
    "lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum", "warmup_bias_lr", "box", "cls",
    "dfl", "hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud", "fliplr",
    "mosaic", "mixup", "copy_paste", "close_mosaic", "nbs",
}  # label_smoothing is no ultralytics 8.4 setting: it is YOLOv5's loss's (the anchor-based heads)
YOLOV5_LOSS_KEYS = {"box", "cls", "obj", "cls_pw", "obj_pw", "iou_t", "anchor_t", "fl_gamma", "anchors", "label_smoothing",
                    "loss_ota"}


# The CPU quick start: what a bare ``python train.py --cfg yolov5s-cbam.yaml`` does on a machine without a GPU with the
# built-in dataset (minutes instead of a day); any of these flags given on the command line is kept. With a GPU or
# another --data: YOLOv5's defaults.
QUICK_START = {"epochs": 24, "imgsz": 192, "batch_size": 8, "optimizer": "AdamW", "hyp": "hyp.quick.yaml"}
YOLOV5_DEFAULTS = {"epochs": 100, "imgsz": 640, "batch_size": 16, "optimizer": "SGD", "hyp": ""}


def parse_opt(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter)
    p.add_argument("--cfg", default="", help="model YAML: a path or a name in configs/ (e.g. yolov5s-cbam.yaml)")
    p.add_argument("--weights", default="",
                   help="initial weights, a local .pt: our runs', or released YOLOv5/YOLOv7/ultralytics checkpoints; with "
                        "--cfg or --attention, transferred into that model")
    p.add_argument("--data", default="shapes.yaml", help="dataset YAML: path, name in data/, or coco128.yaml/VOC.yaml/coco.yaml")
    p.add_argument("--hyp", default=None,
                   help="hyperparameter YAML (YOLOv5 or ultralytics keys); default: none (ultralytics' values), "
                        f"{QUICK_START['hyp']} in the CPU quick start")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"default {YOLOV5_DEFAULTS['epochs']}; {QUICK_START['epochs']} in the CPU quick start")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"total batch size for all GPUs, -1 for autobatch; default {YOLOV5_DEFAULTS['batch_size']}, "
                        f"{QUICK_START['batch_size']} in the CPU quick start")
    p.add_argument("--imgsz", "--img", "--img-size", type=int, default=None,
                   help=f"train and val image size (pixels); default {YOLOV5_DEFAULTS['imgsz']}, "
                        f"{QUICK_START['imgsz']} in the CPU quick start")
    common.add_device(p)
    p.add_argument("--workers", type=int, default=8, help="max dataloader workers (per RANK in DDP)")
    p.add_argument("--project", default=None, help="save to project/name (default runs/train)")
    p.add_argument("--name", default="exp", help="save to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--resume", nargs="?", const=True, default=False, help="resume most recent training, or the given last.pt")
    p.add_argument("--seed", type=int, default=0, help="global training seed")
    p.add_argument("--optimizer", default=None, choices=["SGD", "Adam", "AdamW", "auto"],
                   help=f"default {YOLOV5_DEFAULTS['optimizer']}; {QUICK_START['optimizer']} in the CPU quick start")
    p.add_argument("--cos-lr", action="store_true", help="cosine LR scheduler")
    p.add_argument("--patience", type=int, default=100, help="EarlyStopping patience (epochs without improvement)")
    p.add_argument("--freeze", nargs="+", type=int, default=[0],
                   help="freeze layers: the first N (--freeze 10: yolov5's backbone) or these indices (--freeze 0 1 2); "
                        "with --weights, layers that get no pretrained weights (inserted attention) are never frozen")
    p.add_argument("--cache", nargs="?", const="ram", default=None, choices=["ram", "disk"],
                   help="cache images in ram (default when given) or on disk")
    p.add_argument("--rect", action="store_true", help="rectangular training batches (no mosaic)")
    p.add_argument("--single-cls", action="store_true", help="train multi-class data as single-class")
    p.add_argument("--noval", action="store_true", help="only validate the final epoch")
    p.add_argument("--nosave", action="store_true", help="only save the final checkpoint")
    p.add_argument("--evolve", nargs="?", const=300, type=int, default=None,
                   help="YOLOv5's hyperparameter evolution: not available here (the message says what to use)")
    p.add_argument("--label-smoothing", type=float, default=0.0,
                   help="label smoothing epsilon (anchor-based heads: YOLOv5's loss)")
    p.add_argument("--amp", default=True, action=argparse.BooleanOptionalAction, help="automatic mixed precision on GPU")
    p.add_argument("--quick", default=None, action=argparse.BooleanOptionalAction,
                   help="the CPU quick start (settings above); default: on without a GPU with the built-in dataset, "
                        "--no-quick for YOLOv5's defaults there")
    p.add_argument("--attention", nargs="+", action="extend", default=[], metavar="MODULE@POSITION",
                   help="insert modules into the model, e.g. CBAM@backbone_end SE@neck_outputs (docs/insertion.md); "
                        "the built YAML is saved as model.yaml in the run folder")
    p.add_argument("--identity-init", default=True, action=argparse.BooleanOptionalAction,
                   help="with --weights: layers that get no pretrained weights start as the identity where they can")
    p.add_argument("--identity-blend", action="store_true",
                   help="with --attention: wrap inserted modules that cannot start as the identity in ResidualBlend")
    p.add_argument("--noautoanchor", action="store_true", help="anchor-based heads: keep the YAML's anchors (no AutoAnchor)")
    common.add_trust_weights(p)
    common.add_verbose(p)
    return p.parse_args(argv)


def uses_gpu(device: str) -> bool:
    """Whether training would run on a GPU: a CUDA/MPS device asked for, or none asked for and CUDA present."""
    d = str(device or "").strip().lower()
    if d == "cpu":
        return False
    if d:
        return True
    import torch

    return torch.cuda.is_available()


def settle_defaults(opt) -> str | None:
    """Fill --epochs/--img/--batch-size/--optimizer/--hyp that were not given: the CPU quick start without a GPU on
    the built-in dataset (unless --no-quick), YOLOv5's defaults otherwise. Returns the line that states the quick
    start, None when YOLOv5's defaults apply."""
    from data.datasets import is_builtin

    quick = opt.quick if opt.quick is not None else (not opt.resume and not uses_gpu(opt.device)
                                                     and is_builtin(opt.data))
    values = QUICK_START if quick else YOLOV5_DEFAULTS
    filled = [k for k in values if getattr(opt, k) is None]
    for k in filled:
        setattr(opt, k, values[k])
    if not quick:
        return None
    why = "asked with --quick" if opt.quick else "no GPU and the built-in dataset"
    kept = [{"imgsz": "--img"}.get(k, f"--{k.replace('_', '-')}") for k in values if k not in filled]
    return (f"quick start ({why}): {opt.epochs} epoch{'s' * (opt.epochs != 1)} at {opt.imgsz} px, batch "
            f"{opt.batch_size}, {opt.optimizer}"
            f"{f' with --hyp {opt.hyp}' if opt.hyp else ''}" + (f" ({', '.join(kept)} as given)" if kept else "") +
            f". For more, set --epochs/--img/--batch-size, or --no-quick for YOLOv5's defaults "
            f"({YOLOV5_DEFAULTS['epochs']} epochs at {YOLOV5_DEFAULTS['imgsz']} px)")


def check_flags(opt) -> None:
    """Numbers that ultralytics would silently change or reject with a traceback: a clear exit instead."""
    if opt.resume:
        return  # the checkpoint's own settings are used
    if opt.epochs < 1:
        raise SystemExit(f"error: --epochs {opt.epochs}: must be at least 1")
    if opt.batch_size == 0 or opt.batch_size < -1:
        raise SystemExit(f"error: --batch-size {opt.batch_size}: give a number of images per batch (1 or more), or -1 "
                         "for AutoBatch (GPU)")
    if opt.workers < 0:
        raise SystemExit(f"error: --workers {opt.workers}: must be 0 or more (0 loads data in the training process)")
    if opt.imgsz < 32:
        raise SystemExit(f"error: --imgsz {opt.imgsz}: must be at least 32 pixels (the largest model stride)")
    if opt.evolve is not None:
        raise SystemExit("error: --evolve: YOLOv5's hyperparameter evolution is not part of this train.py: ultralytics' "
                         "Tuner trains through its own `yolo` command, which cannot build this project's models. Compare "
                         "hyperparameter files instead: tools/ablate.py --variants ... --hyp my_hyp.yaml (docs/training.md)")
    if any(i < 0 for i in opt.freeze):
        raise SystemExit(f"error: --freeze {' '.join(map(str, opt.freeze))}: give the number of leading layers to "
                         "freeze (10 for yolov5's backbone) or layer indices, all 0 or more")
    if not 0.0 <= opt.label_smoothing < 1.0:
        raise SystemExit(f"error: --label-smoothing {opt.label_smoothing}: must be in [0, 1) (YOLOv5 uses 0.0-0.1)")
    common.check_device(opt.device)


def freeze_arg(freeze: list[int]):
    """YOLOv5's --freeze as ultralytics' ``freeze``: [0] nothing, [N] the first N layers, a list those indices."""
    if freeze == [0]:
        return None
    return freeze[0] if len(freeze) == 1 else sorted(set(freeze))


def has_anchor_head(model) -> bool:
    """Whether a built model's head trains with this project's own loss (YOLOv5/YOLOv7 anchor-based heads), which
    reads --label-smoothing; ultralytics' anchor-free Detect has no label smoothing."""
    from models.registry.protocol import DetectionHead

    return isinstance(model.model[-1], DetectionHead)


def load_hyp(path: str) -> tuple[dict, dict]:
    """Split a hyperparameter YAML into (ultralytics overrides, YOLOv5 loss gains)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        p = common.ROOT / "data" / "hyps" / Path(path).name
    if not p.is_file():
        raise SystemExit(f"error: --hyp {path}: file not found")
    hyp = yaml.safe_load(p.read_text()) or {}
    if not isinstance(hyp, dict):
        raise SystemExit(f"error: --hyp {path}: expected a mapping of hyperparameters")
    yolov5_form = "obj" in hyp
    overrides = {k: v for k, v in hyp.items() if k in ULTRALYTICS_HYP and not (yolov5_form and k in YOLOV5_LOSS_KEYS)}
    loss = {k: v for k, v in hyp.items() if k in YOLOV5_LOSS_KEYS and (yolov5_form or k not in ULTRALYTICS_HYP)}
    unknown = sorted(set(hyp) - ULTRALYTICS_HYP - YOLOV5_LOSS_KEYS)
    if unknown:
        print(f"--hyp {path}: ignoring unknown keys {unknown}")
    return overrides, loss


def latest_last(project: str) -> str:
    runs = sorted(Path(project).glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"error: --resume: no last.pt found under {project}")
    return str(runs[-1])


def resume_folder(path: str) -> Path:
    """The run folder that holds ``path`` as ``<run>/weights/last.pt``: a resumed run continues there, never in a
    folder recorded inside the checkpoint (the run may have been copied or moved)."""
    p = Path(path).resolve()
    if p.parent.name != "weights":
        raise SystemExit(f"error: --resume {path}: not inside a run folder (<run>/weights/{p.name}); --resume "
                         f"continues the run that holds the file. Put it at <run>/weights/last.pt, or start a new run "
                         f"from its weights: --weights {path}")
    return p.parent.parent


def check_resume(path: str, trust: bool) -> str:
    """``path`` when it is a run of this project to continue (read through the checkpoint loader), else a clear exit."""
    from models.weights.checkpoint import checkpoint_format

    ckpt = common.read_weights(path, "--resume", trust)
    kind = checkpoint_format(ckpt)
    if kind != "ours":
        what = f"a {kind} checkpoint" if kind else "no model (a plain state_dict or another file)"
        raise SystemExit(f"error: --resume {path}: {what}, not a run of this project; --resume continues one. To start "
                         f"from its weights: --weights {path}" + ("" if kind else " --cfg <model YAML>"))
    args = ckpt.get("train_args") or {}
    epoch, epochs = ckpt.get("epoch", -1), args.get("epochs")
    if ckpt.get("optimizer") is None or epoch is None or epoch < 0 or (epochs and epoch + 1 >= epochs):
        raise SystemExit(f"error: --resume {path}: this run finished ({epochs or '?'} epoch{'s' * (epochs != 1)}); "
                         f"nothing to resume. To train longer, start a new run from it: --weights {path} --epochs N")
    if args.get("data"):
        from data.datasets import DataError, check_dataset

        try:
            check_dataset(args["data"])
        except DataError as e:
            raise SystemExit(f"error: --resume {path}: the run's dataset: {e}") from None
    return path


def check_data(data: str) -> str:
    from data.datasets import DataError, check_dataset

    try:
        return check_dataset(data)
    except DataError as e:
        raise SystemExit(f"error: --data {e}") from None


def build_overrides(opt) -> dict:
    """ultralytics trainer overrides for ``opt``; every input is checked first, then the run folder is claimed
    (atomically, locked for this process), so a bad input never leaves a folder behind."""
    quick = settle_defaults(opt)
    if quick:
        print(quick, flush=True)
    check_flags(opt)
    project = run_folder.run_dir(opt.project, "train")
    if opt.resume:
        last = latest_last(project) if opt.resume is True else opt.resume
        last = check_resume(last, opt.trust_weights)
        folder = resume_folder(last)
        try:
            run_folder.claim_run_folder(folder)
        except run_folder.RunFolderBusy as e:
            raise SystemExit(f"error: --resume {last}: {e}") from None
        return {"model": last, "resume": last, "save_dir": str(folder)}
    if not opt.cfg and not opt.weights:
        raise SystemExit("error: give --cfg (a model YAML) and/or --weights (a .pt file)")
    if opt.weights:  # read once now: a missing, foreign-unsupported or refused file fails before any run folder exists
        model = common.load_weights(opt.weights, "--weights", opt.trust_weights)
    overrides = {
        "epochs": opt.epochs,
        "batch": opt.batch_size,
        "imgsz": opt.imgsz,
        "device": common.device_arg(opt.device),
        "workers": opt.workers,
        "exist_ok": opt.exist_ok,
        "seed": opt.seed,
        "deterministic": True,
        "optimizer": opt.optimizer,
        "cos_lr": opt.cos_lr,
        "patience": opt.patience,
        "amp": opt.amp,
        "freeze": freeze_arg(opt.freeze),
        "cache": opt.cache or False,
        "rect": opt.rect,
        "single_cls": opt.single_cls,
        "val": not opt.noval,
        "save": not opt.nosave,
    }
    if opt.cfg:
        from models.parse.read import resolve_config
        from models.registry import ConfigError
        from models.yolo import build_model

        try:
            path, scale = resolve_config(opt.cfg)
            model = build_model(opt.cfg)  # fail on a bad YAML before any run folder is created or touched
        except (ConfigError, FileNotFoundError) as e:
            raise SystemExit(f"error: --cfg {opt.cfg}: {e}") from None
        # keep the scale letter in the name ultralytics records (yolov5s-cbam.yaml -> configs/yolov5-cbam.yaml, scale s)
        overrides["model"] = str(path.with_name(Path(opt.cfg).name)) if scale and path.stem != Path(opt.cfg).stem else str(path)
        if opt.weights:
            overrides["pretrained"] = common.check_weights(opt.weights)
    else:
        overrides["model"] = common.check_weights(opt.weights)
    if opt.identity_blend and not opt.attention:
        raise SystemExit("error: --identity-blend applies to modules inserted with --attention")
    loss_hyp = {}
    if opt.hyp:
        hyp, loss_hyp = load_hyp(opt.hyp)
        overrides.update(hyp)
    if opt.label_smoothing:
        if not has_anchor_head(model):
            raise SystemExit(f"error: --label-smoothing {opt.label_smoothing}: this model's head is ultralytics' "
                             "anchor-free Detect, whose loss has no label smoothing; it applies to anchor-based heads "
                             "(YOLOv5's Detect with anchors, YOLOv7's IDetect: e.g. yolov5s-cbam-anchor.yaml)")
        loss_hyp["label_smoothing"] = opt.label_smoothing
    overrides["data"] = check_data(opt.data)  # last: the built-in dataset is generated on first use
    overrides["save_dir"] = run_folder.save_dir(opt.project, "train", opt.name, opt.exist_ok)  # inputs checked: claim it
    if opt.attention or loss_hyp or opt.noautoanchor:
        # the run's own model YAML: inserted attention, YOLOv5 loss gains and the AutoAnchor switch travel in it
        # (checkpoints, resume, DDP workers); models/engine/run_yaml.py writes it into the run folder
        from models.surgery.spec import InsertError
        from models.registry import ConfigError
        from models.engine.run_yaml import write_run_yaml

        weights = common.check_weights(opt.weights) if opt.weights else None
        try:
            overrides["model"] = write_run_yaml(overrides["save_dir"], cfg=opt.cfg or None, weights=weights,
                                                attention=opt.attention, identity_blend=opt.identity_blend,
                                                hyp=loss_hyp, autoanchor=False if opt.noautoanchor else None,
                                                trust=opt.trust_weights)
        except (InsertError, ConfigError) as e:
            run_folder.release_run_folder(overrides["save_dir"], remove_if_empty=True)
            if isinstance(e, InsertError):
                raise SystemExit(f"error: --attention: {e}") from None
            raise SystemExit(f"error: --hyp {opt.hyp}: {e}" if opt.hyp else f"error: {e}") from None
        if weights:
            overrides["pretrained"] = weights
    return overrides


def main(opt):
    from models.engine.trainer import AttentionTrainer

    overrides = build_overrides(opt)
    folder = Path(overrides["save_dir"])
    try:
        trainer_class = AttentionTrainer.configured(trust_weights=opt.trust_weights, identity_init=opt.identity_init)
        trainer = trainer_class(overrides=overrides)
        trainer.train()
    except KeyboardInterrupt:
        raise SystemExit(f"interrupted (Ctrl-C): {resume_hint(folder)}") from None
    except Exception as e:
        if opt.verbose:
            raise
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise SystemExit(f"error: the disk is full ({e.filename or folder}): {resume_hint(folder)}; free some space "
                             "first") from None
        raise SystemExit(f"error: {common.one_line(e)} ({folder}; run with --verbose for the traceback)") from None
    return trainer


def resume_hint(folder: Path) -> str:
    """What the run folder holds after an interruption, and the command that continues it."""
    last = folder / "weights" / "last.pt"
    if not last.is_file():
        return f"no epoch was saved yet in {folder}"
    return (f"{last} holds the last finished epoch, intact (written atomically); continue with: "
            f"python train.py --resume {last}")


if __name__ == "__main__":
    opt = parse_opt()
    common.run_cli(main, opt)
