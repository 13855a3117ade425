"""Validate a trained detector (mAP, precision, recall) with ultralytics' validator.

    python val.py --weights runs/train/exp/weights/best.pt --data shapes.yaml --img 320
"""

from __future__ import annotations

import argparse

import tools.common as common
from models.engine import run_folder


def parse_opt(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter)
    p.add_argument("--weights", required=True,
                   help="model .pt: our runs' best.pt/last.pt, or a released YOLOv5/YOLOv7/ultralytics checkpoint (local "
                        "file), or a model export.py wrote (best.onnx, best.torchscript, best_openvino_model/, ...)")
    p.add_argument("--data", default="shapes.yaml", help="dataset YAML: path, name in data/, or an ultralytics dataset name")
    common.add_imgsz(p, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--conf-thres", type=float, default=0.001, help="confidence threshold")
    p.add_argument("--iou-thres", type=float, default=0.6, help="NMS IoU threshold")
    common.add_device(p)
    p.add_argument("--half", action="store_true", help="FP16 half-precision inference (GPU)")
    p.add_argument("--task", default="val", choices=["train", "val", "test"], help="dataset split to evaluate")
    p.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    p.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    p.add_argument("--save-json", action="store_true", help="save a COCO-JSON results file (predictions.json)")
    p.add_argument("--project", default=None, help="save to project/name (default runs/val)")
    p.add_argument("--name", default="exp", help="save to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    common.add_trust_weights(p)
    common.add_verbose(p)
    return p.parse_args(argv)


def main(opt):
    from data.datasets import DataError, check_dataset, readable_image_errors, scan_problems

    if opt.batch_size < 1:
        raise SystemExit(f"error: --batch-size {opt.batch_size}: must be 1 or more")
    common.check_device(opt.device)
    model = common.yolo(opt.weights, trust=opt.trust_weights)
    imgsz = common.inference_size(opt.imgsz, model)
    try:
        data = check_dataset(opt.data, split=opt.task)
    except DataError as e:
        raise SystemExit(f"error: --data {e}" + (f" (--task {opt.task})" if opt.task != "val" else "")) from None
    readable_image_errors()
    from models.engine.validator import ReproducibleValidator

    metrics = model.val(
        validator=ReproducibleValidator,  # NMS without a wall-clock limit: the same weights give the same scores
        data=data,
        imgsz=imgsz,
        batch=opt.batch_size,
        conf=opt.conf_thres,
        iou=opt.iou_thres,
        device=common.device_arg(opt.device),
        quantize=16 if opt.half else None,  # ultralytics' name for half precision (``half`` is deprecated)
        split=opt.task,
        save_txt=opt.save_txt,
        save_conf=opt.save_conf,
        save_json=opt.save_json,
        save_dir=run_folder.save_dir(opt.project, "val", opt.name, opt.exist_ok),  # inputs checked: claim the folder
        exist_ok=opt.exist_ok,
    )
    from ultralytics.data.utils import check_det_dataset

    summary = scan_problems(check_det_dataset(data, autodownload=False).get(opt.task), prefix=f"{opt.task}: ")
    if summary:
        print(summary)
    return metrics


if __name__ == "__main__":
    common.run_cli(main, parse_opt())
