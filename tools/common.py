"""Shared pieces of train.py / val.py / detect.py: environment, argument helpers, run folders, errors."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import offline  # noqa: E402

offline.configure()


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help keeps the description's layout and shows every flag's default (unless its help states it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def add_imgsz(parser, default=640):
    """--imgsz/--img/--img-size; ``default=None`` means the size the weights were trained (or exported) at."""
    help = (f"image size (pixels); default {default}" if default else
            "image size (pixels); default: the size the weights were trained or exported at (640 when they do not "
            "record one)")
    parser.add_argument("--imgsz", "--img", "--img-size", type=int, default=default, help=help)


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
    from models.engine.run_folder import tidy_run_of

    tidy_run_of(p)  # a run killed during its final strip left a temporary beside the file
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


def exported_format(path: str | Path) -> str | None:
    """The ultralytics export format a path names by its suffix (onnx, torchscript, openvino, engine, ...), or None
    for a ``.pt`` checkpoint or any other name."""
    from ultralytics.engine.exporter import export_formats

    table = export_formats()
    name = str(path).rstrip("/\\")
    for fmt, suffix in zip(table["Argument"], table["Suffix"]):
        if fmt != "-" and name.endswith(suffix):
            return fmt
    return None


def export_metadata(path: str | Path) -> dict:
    """The metadata ultralytics' exporter wrote into an exported model (imgsz, names, stride, dynamic ...), read
    without loading the model; values are parsed as Python literals, never evaluated."""
    import ast

    from ultralytics.nn.backends.base import BaseBackend

    out = {}
    for k, v in (BaseBackend.read_metadata(path) or {}).items():
        try:
            out[k] = ast.literal_eval(v) if isinstance(v, str) else v
        except (ValueError, SyntaxError):
            out[k] = v
    return out


def training_size(ckpt: dict):
    """The image size a checkpoint was trained at: this project's and ultralytics' ``train_args.imgsz``, YOLOv5's and
    YOLOv7's ``opt.imgsz`` / ``opt.img_size`` (their first value); None when it records none."""
    args = ckpt.get("train_args")
    if isinstance(args, dict) and args.get("imgsz"):
        return args["imgsz"]
    opt = ckpt.get("opt")
    opt = vars(opt) if hasattr(opt, "__dict__") and not isinstance(opt, dict) else opt
    if isinstance(opt, dict):
        for key in ("imgsz", "img_size"):
            v = opt.get(key)
            v = v[0] if isinstance(v, (list, tuple)) and v else v
            if isinstance(v, int) and v > 0:
                return v
    return None


def yolo(weights: str, trust: bool = False):
    """ultralytics' ``YOLO`` (val, predict, export) for ``weights``: a checkpoint read by :func:`load_weights`, or a
    model exported by export.py (``best.onnx``, ``best.torchscript``, ``best_openvino_model/``, ...), which
    ultralytics' own backends run. The returned object carries ``size`` (the size the weights were trained or
    exported at, None when they record none), ``size_from`` (which) and ``static`` (an export of one fixed size)."""
    from ultralytics import YOLO

    fmt = exported_format(weights)
    if fmt is not None:
        if not Path(weights).exists():
            raise SystemExit(f"error: --weights {weights}: no such file or folder (export it first: python export.py "
                             f"--weights best.pt --include {fmt})")
        meta = export_metadata(weights)
        model = YOLO(weights, task="detect")
        size = meta.get("imgsz")
        model.size = size[0] if isinstance(size, (list, tuple)) and len(set(size)) == 1 else size
        model.size_from = f"the size {Path(weights).name} was exported at"
        model.static = not (meta.get("args") or {}).get("dynamic", meta.get("dynamic", False))
        return model

    ckpt = read_weights(weights, "--weights", trust)  # first: a YAML or a URL given as weights fails here, clearly
    from models.weights.checkpoint import CheckpointError, model_from_checkpoint

    try:
        loaded = model_from_checkpoint(ckpt, weights)
    except CheckpointError as e:
        raise SystemExit(f"error: --weights {e}") from None

    class CheckpointYOLO(YOLO):
        def _load(self, path, task=None):  # instead of ultralytics' loader, which renames and downloads weights
            self.model = loaded
            self.ckpt, self.task, self.ckpt_path, self.model_name = {}, "detect", path, path
            self.overrides = self.model.args = self._reset_ckpt_args(self.model.args)
            self.overrides.update(model=path, task="detect")

    model = CheckpointYOLO(weights, task="detect")
    model.size, model.size_from, model.static = training_size(ckpt), f"the size {Path(weights).name} was trained at", False
    return model


def inference_size(asked: int | None, model, default: int = 640):
    """The image size val.py/detect.py run at, printed with where it comes from: ``--img`` when given, else the size
    the weights were trained (or exported) at, as ultralytics does, else ``default``."""
    size = model.size
    if getattr(model, "static", False) and size:
        if asked and asked != size:
            print(f"image size {size} px: the export has a fixed input size; --img {asked} does not apply (export "
                  f"again with --dynamic, or with --img {asked})")
        else:
            print(f"image size {size} px ({model.size_from})")
        return size
    if asked:
        print(f"image size {asked} px (--img)" + (f"; the weights were trained at {size}" if size and size != asked
                                                  else ""))
        return asked
    if size:
        print(f"image size {size} px ({model.size_from}; --img to change)")
        return size
    print(f"image size {default} px (the weights record no training size; --img to change)")
    return default


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


ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # terminal colour codes (ultralytics colours its prefixes)


def one_line(e: BaseException) -> str:
    """An exception as one line: its message with newlines, terminal colour codes and ultralytics' emoji folded away."""
    text = " ".join(ANSI_RE.sub("", str(e)).replace("❌", "").replace("⚠️", "").split())
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
