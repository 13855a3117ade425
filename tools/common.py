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


def check_weights(path: str, flag: str = "--weights") -> str:
    p = Path(path)
    if not p.is_file():
        hint = " (weights are never downloaded: pass a local .pt file, e.g. runs/train/exp/weights/best.pt)"
        raise SystemExit(f"error: {flag} {path}: file not found{hint}")
    return str(p)


def run_dir(project: str | None, task: str) -> str:
    """Absolute project folder (ultralytics puts relative ones under its own runs dir)."""
    return str(Path(project).resolve()) if project else str(ROOT / "runs" / task)


def save_dir(project: str | None, task: str, name: str, exist_ok: bool) -> str:
    """YOLOv5-style run folder: project/name, then name2, name3, ... unless ``exist_ok``."""
    from ultralytics.utils.files import increment_path

    return str(increment_path(Path(run_dir(project, task)) / name, exist_ok=exist_ok, sep=""))
