"""Shared pieces of train.py / val.py / detect.py: environment, argument helpers, errors."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import offline  # noqa: E402

offline.configure()


def add_imgsz(parser, default=640):
    parser.add_argument("--imgsz", "--img", "--img-size", type=int, default=default, help="image size (pixels)")


def add_device(parser):
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu (empty: auto)")


def device_arg(device: str):
    return device or None


def add_trust_weights(parser):
    parser.add_argument("--trust-weights", action="store_true",
                        help="UNSAFE: read --weights/--resume with full unpickling, which runs any code the file names; "
                             "only for checkpoints you made yourself (by default the loader refuses what checkpoints "
                             "never contain)")


def check_weights(path: str, flag: str = "--weights") -> str:
    """``path`` when it is a local file (taken literally: nothing renamed, nothing downloaded), else a clear exit."""
    from models.checkpoint import WHERE_TO_GET

    p = Path(path)
    if not p.is_file():
        hint = f" {WHERE_TO_GET}." if p.parent == Path(".") else ""  # a bare name such as yolov5s.pt
        raise SystemExit(f"error: {flag} {path}: file not found. Weights are never downloaded: pass a local .pt file "
                         f"(e.g. runs/train/exp/weights/best.pt).{hint}")
    return str(p)


def read_weights(path: str, flag: str = "--weights", trust: bool = False) -> dict:
    """The checkpoint dict of ``path`` (models.checkpoint.read_checkpoint); a clear exit for a missing, unreadable or
    refused file."""
    from models.checkpoint import CheckpointError, read_checkpoint

    try:
        return read_checkpoint(check_weights(path, flag), trust=trust)
    except CheckpointError as e:
        raise SystemExit(f"error: {flag} {e}") from None


def load_weights(path: str, flag: str = "--weights", trust: bool = False, device: str = "cpu"):
    """This project's model from any supported checkpoint (models.checkpoint.load_model), or a clear exit."""
    from models.checkpoint import CheckpointError, model_from_checkpoint

    ckpt = read_weights(path, flag, trust)
    try:
        return model_from_checkpoint(ckpt, path).to(device)
    except CheckpointError as e:
        raise SystemExit(f"error: {flag} {e}") from None


def yolo(weights: str, trust: bool = False):
    """ultralytics' ``YOLO`` (val, predict, export) around the model :func:`load_weights` reads from ``weights``."""
    from ultralytics import YOLO

    model = load_weights(weights, trust=trust)  # first: a YAML or a URL given as weights fails here, clearly

    class CheckpointYOLO(YOLO):
        def _load(self, path, task=None):  # instead of ultralytics' loader, which renames and downloads weights
            self.model = model
            self.ckpt, self.task, self.ckpt_path, self.model_name = {}, "detect", path, path
            self.overrides = self.model.args = self._reset_ckpt_args(self.model.args)
            self.overrides.update(model=path, task="detect")

    return CheckpointYOLO(weights, task="detect")


def run_dir(project: str | None, task: str) -> str:
    """Absolute project folder (ultralytics puts relative ones under its own runs dir)."""
    return str(Path(project).resolve()) if project else str(ROOT / "runs" / task)


def save_dir(project: str | None, task: str, name: str, exist_ok: bool) -> str:
    """YOLOv5-style run folder: project/name, then name2, name3, ... unless ``exist_ok``."""
    from ultralytics.utils.files import increment_path

    return str(increment_path(Path(run_dir(project, task)) / name, exist_ok=exist_ok, sep=""))
