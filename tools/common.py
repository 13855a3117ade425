"""Shared pieces of train.py / val.py / detect.py: environment, argument helpers, run folders, errors."""

from __future__ import annotations

import re
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
    from models.weights.checkpoint import WHERE_TO_GET

    p = Path(path)
    if not p.is_file():
        hint = f" {WHERE_TO_GET}." if p.parent == Path(".") else ""  # a bare name such as yolov5s.pt
        raise SystemExit(f"error: {flag} {path}: file not found. Weights are never downloaded: pass a local .pt file "
                         f"(e.g. runs/train/exp/weights/best.pt).{hint}")
    return str(p)


def read_weights(path: str, flag: str = "--weights", trust: bool = False) -> dict:
    """The checkpoint dict of ``path`` (models.weights.checkpoint.read_checkpoint); a clear exit for a missing, unreadable or
    refused file."""
    from models.weights.checkpoint import CheckpointError, read_checkpoint

    try:
        return read_checkpoint(check_weights(path, flag), trust=trust)
    except CheckpointError as e:
        raise SystemExit(f"error: {flag} {e}") from None


def load_weights(path: str, flag: str = "--weights", trust: bool = False, device: str = "cpu"):
    """This project's model from any supported checkpoint (models.weights.checkpoint.load_model), or a clear exit."""
    from models.weights.checkpoint import CheckpointError, model_from_checkpoint

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


def add_verbose(parser):
    parser.add_argument("--verbose", action="store_true", help="on an error, show the full traceback (default: one line)")


def check_device(device: str, flag: str = "--device") -> str:
    """``device`` when this machine has it; else a clear exit saying what it has."""
    d = str(device).strip().lower()
    if d in {"", "cpu"}:
        return device
    import torch

    if d == "mps":
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return device
        raise SystemExit(f"error: {flag} {device}: no Apple GPU (MPS) on this machine; use --device cpu")
    if re.fullmatch(r"(cuda:?)?\d+(,\d+)*|cuda|-1(,-1)*", d):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise SystemExit(f"error: {flag} {device}: this machine has no CUDA GPU that torch can use; use --device cpu "
                             "(or leave --device out)")
        wanted = [int(i) for i in re.findall(r"\d+", d.replace("cuda", ""))] if any(c.isdigit() for c in d) else [0]
        bad = [i for i in wanted if i >= n and "-1" not in d]
        if bad:
            raise SystemExit(f"error: {flag} {device}: this machine has {n} CUDA GPU{'s' * (n > 1)} "
                             f"({'0' if n == 1 else f'0-{n - 1}'}); pick from those, or --device cpu")
        return device
    if re.fullmatch(r"(npu|xpu)(:\d+(,\d+)*)?", d):
        return device  # ultralytics checks these
    raise SystemExit(f"error: {flag} {device}: not a device; write cpu, a GPU index (0), a list (0,1,2,3), or leave it "
                     "out for the best available")


def one_line(e: BaseException) -> str:
    """An exception as one line: its message with newlines and ultralytics' emoji folded away."""
    text = " ".join(str(e).replace("❌", "").replace("⚠️", "").split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def run_cli(main, opt):
    """``main(opt)``, with any failure as one line on stderr and exit code 1 (the traceback with ``--verbose``)."""
    try:
        return main(opt)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        if getattr(opt, "verbose", False):
            raise
        raise SystemExit("interrupted (Ctrl-C)") from None
    except Exception as e:
        if getattr(opt, "verbose", False):
            raise
        if isinstance(e, OSError) and e.errno == 28:  # ENOSPC
            where = f" writing {e.filename}" if e.filename else ""
            raise SystemExit(f"error: the disk is full{where}: files already written are intact (every one is "
                             "replaced atomically); free some space and run again") from None
        raise SystemExit(f"error: {one_line(e)} (run with --verbose for the traceback)") from None
