"""Export trained detectors to ONNX, TorchScript, OpenVINO, TensorRT, CoreML, ... with ultralytics' exporter.

    python export.py --weights runs/train/exp/weights/best.pt --include onnx
    python export.py --weights best.pt --include onnx torchscript --imgsz 640 --dynamic --device 0 --half

Flags follow YOLOv5's export.py. Each checkpoint is read with ``models.weights.checkpoint.read_checkpoint`` (once) and
handed, as a model object, to ``ultralytics.engine.exporter.Exporter`` (fusion, tracing, metadata, the format
converters are ultralytics'). Anchor-free (``Detect``), anchor-based YOLOv5 (``Detect`` with anchors) and YOLOv7
(``IDetect``) heads all export one output tensor ``(batch, 4 + nc, anchors)``: xywh in input pixels and class scores,
what ultralytics' predictor (and ``detect.py --weights best.onnx``) reads.

The exported files are written next to the weights (``best.onnx``, ``best.torchscript``, ``best_openvino_model/``);
an existing one is never replaced unless ``--exist-ok`` is given. Packages a format needs (openvino, tensorrt,
coremltools, ...) are never installed automatically: a missing one is named.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tools.common as common

# YOLOv5's --include names -> ultralytics format names (ultralytics maps tflite/tfjs to litert itself)
YOLOV5_FORMATS = {"pt": None, "torchscript": "torchscript", "onnx": "onnx", "openvino": "openvino",
                  "engine": "engine", "coreml": "coreml", "saved_model": "saved_model", "pb": "pb",
                  "tflite": "tflite", "edgetpu": "edgetpu", "tfjs": "tfjs", "paddle": "paddle"}


def parse_opt(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", required=True, help="model .pt file(s) (our runs' best.pt/last.pt)")
    p.add_argument("--include", nargs="+", default=["torchscript"],
                   help="formats: torchscript onnx openvino engine coreml saved_model pb tflite edgetpu tfjs paddle, "
                        "or any other ultralytics export format (mnn, ncnn, ...)")
    p.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=None,
                   help="image size: 640, or h w; default: the size the weights were trained at (640 when they record "
                        "none), as ultralytics exports")
    p.add_argument("--batch-size", type=int, default=1, help="batch size of the exported graph (the maximum with --dynamic)")
    common.add_device(p)
    p.add_argument("--half", action="store_true", help="FP16 export (ONNX/TorchScript on GPU; ONNX is also converted on CPU)")
    p.add_argument("--int8", action="store_true", help="INT8 quantisation (OpenVINO, TensorRT, CoreML, TF formats; needs --data)")
    p.add_argument("--data", default="", help="dataset YAML for INT8 calibration")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch and image size (ONNX, TorchScript, OpenVINO, TensorRT)")
    p.add_argument("--simplify", action="store_true", help="simplify the ONNX graph with onnxslim (absent: ultralytics warns and exports unsimplified)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: ultralytics' choice for the installed torch)")
    p.add_argument("--optimize", action="store_true", help="TorchScript: optimise for mobile")
    p.add_argument("--nms", action="store_true", help="embed NMS in the exported graph (anchor-free heads only)")
    p.add_argument("--workspace", type=float, default=None, help="TensorRT workspace size (GiB)")
    p.add_argument("--exist-ok", action="store_true", help="replace exported files that already exist")
    common.add_verbose(p)
    opt = p.parse_args(argv)
    if opt.imgsz is not None and len(opt.imgsz) > 2:
        p.error(f"--imgsz takes one size or two (h w), got {len(opt.imgsz)} values")
    return opt


def export_format(name: str) -> str:
    """An --include value as the ultralytics format name (YOLOv5's names accepted); unknown names are left to
    ultralytics, which lists the valid ones."""
    fmt = YOLOV5_FORMATS.get(name.lower(), name.lower())
    if fmt is None:
        raise SystemExit("error: --include pt: the weights already are a PyTorch checkpoint")
    return fmt


def format_info(fmt: str, column: str):
    """One column of ultralytics' export table ("Suffix", "Arguments") for ``fmt``; None for an unknown format."""
    from ultralytics.engine.exporter import export_formats

    table = export_formats()
    return dict(zip(table["Argument"], table[column])).get({"tflite": "litert", "tfjs": "litert"}.get(fmt, fmt))


def export_target(weights: Path, fmt: str) -> Path | None:
    """Where ultralytics will write ``fmt`` for these weights (None for a format it does not know)."""
    suffix = format_info(fmt, "Suffix")
    if suffix is None:
        return None
    return weights.with_suffix(suffix) if suffix.startswith(".") else weights.with_name(weights.stem + suffix)


def prepare_for_export(model, weights: Path):
    """Attributes the exporter reads, set whatever the checkpoint reader left; anchor heads return one tensor."""
    model.pt_path = str(weights)  # exports are written next to the weights
    if not getattr(model, "task", None):
        model.task = "detect"
    for m in model.modules():
        if hasattr(m, "setup_strides"):  # AnchorDetect / IDetect: eval output (y, raw) -> y, as while tracing
            m.export = True
    return model


def export_size(weights: Path, ckpt: dict) -> int:
    """The size to export at when --img is not given: the one the weights were trained at, printed (640 without)."""
    size = common.training_size(ckpt)
    print(f"image size {size or 640} px (" + (f"the size {weights.name} was trained at; --img to change)" if size else
                                              "the weights record no training size; --img to change)"))
    return size or 640


def export_one(weights: Path, fmt: str, opt) -> str:
    """Export one checkpoint to one format; returns the path ultralytics wrote."""
    from ultralytics.engine.exporter import Exporter

    from models.weights.checkpoint import model_from_checkpoint, read_checkpoint

    target = export_target(weights, fmt)
    if target is not None and target.exists() and not opt.exist_ok:
        raise FileExistsError(f"{target} already exists; pass --exist-ok to replace it (or move it away)")
    ckpt = read_checkpoint(weights)  # once: the model and its training size
    model = prepare_for_export(model_from_checkpoint(ckpt, weights).cpu(), weights)
    imgsz = opt.imgsz or [export_size(weights, ckpt)]
    overrides = {"format": fmt, "imgsz": imgsz[0] if len(imgsz) == 1 else list(imgsz),
                 "batch": opt.batch_size, "device": common.device_arg(opt.device)}
    # ultralytics rejects a non-default value of an argument the format does not take: pass only what was asked
    asked = {"dynamic": opt.dynamic, "opset": opt.opset, "optimize": opt.optimize, "nms": opt.nms or None,
             "quantize": 8 if opt.int8 else 16 if opt.half else None, "workspace": opt.workspace}
    overrides.update({k: v for k, v in asked.items() if v})
    if "simplify" in (format_info(fmt, "Arguments") or []):  # YOLOv5's default is no simplification (ultralytics': simplify)
        overrides["simplify"] = opt.simplify
    if opt.data:
        from data.datasets import prepare_data

        overrides["data"] = prepare_data(opt.data)
    try:
        return str(Exporter(overrides=overrides)(model))
    except ModuleNotFoundError as e:
        package = (e.name or str(e)).split(".")[0]
        raise RuntimeError(f"the '{package}' package is not installed (pip install {package}); packages are never "
                           f"installed automatically here") from None


def main(opt) -> list[str]:
    weights = [Path(common.check_weights(w)) for w in opt.weights]
    formats = [export_format(f) for f in opt.include]
    done, failed = [], []
    for w in weights:
        for fmt in formats:
            try:
                done.append(export_one(w, fmt, opt))
            except Exception as e:  # one failing format does not stop the others (as in YOLOv5)
                if opt.verbose:
                    raise
                failed.append(f"{w} -> {fmt}: {type(e).__name__}: {e}")
    for f in done:
        print(f"exported {f}")
    if done:
        print(f"Detect: python detect.py --weights {done[0]}    Validate: python val.py --weights {done[0]}")
    if failed:
        raise SystemExit("error: export failed:\n  " + "\n  ".join(failed))
    return done


if __name__ == "__main__":
    common.run_cli(main, parse_opt())
