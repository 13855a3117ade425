"""Run detection on images, folders, globs, videos or a webcam with ultralytics' predictor.

    python detect.py --weights runs/train/exp/weights/best.pt --source data/images --img 320
    python detect.py --weights best.pt --source video.mp4
    python detect.py --weights best.pt --source 0          # webcam 0
    python detect.py --weights best.pt --source 'photos/*.jpg'    # quote a glob: the shell would expand it

Results (annotated images/videos, optional labels/*.txt) go to runs/detect/exp, exp2, ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tools.common as common
from models.engine import run_folder


def parse_opt(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter)
    p.add_argument("--weights", required=True,
                   help="model .pt: our runs' best.pt/last.pt, or a released YOLOv5/YOLOv7/ultralytics checkpoint (local "
                        "file), or a model export.py wrote (best.onnx, best.torchscript, best_openvino_model/, ...)")
    p.add_argument("--source", default=str(common.ROOT / "data" / "images"), help="file/dir/glob/video/webcam index")
    common.add_imgsz(p, default=None)
    p.add_argument("--conf-thres", type=float, default=0.25, help="confidence threshold")
    p.add_argument("--iou-thres", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=1000, help="maximum detections per image")
    common.add_device(p)
    p.add_argument("--view-img", action="store_true", help="show results")
    p.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    p.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    p.add_argument("--nosave", action="store_true", help="do not save images/videos")
    p.add_argument("--save-crop", action="store_true", help="save cropped prediction boxes")
    p.add_argument("--classes", nargs="+", type=int, help="filter by class: --classes 0, or --classes 0 2 3")
    p.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    p.add_argument("--project", default=None, help="save results to project/name (default runs/detect)")
    p.add_argument("--name", default="exp", help="save results to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--half", action="store_true", help="FP16 half-precision inference (GPU)")
    p.add_argument("--line-thickness", type=int, default=None,
                   help="bounding box thickness (pixels); default: from the image size")
    p.add_argument("--hide-labels", action="store_true", help="hide labels")
    p.add_argument("--hide-conf", action="store_true", help="hide confidences")
    p.add_argument("--vid-stride", type=int, default=1, help="video frame-rate stride (every n-th frame)")
    p.add_argument("--heatmap", action="store_true", help="also save Grad-CAM and attention maps (tools/heatmap.py)")
    p.add_argument("--heatmap-every", type=int, default=30, help="--heatmap on videos: every n-th frame")
    common.add_trust_weights(p)
    common.add_verbose(p)
    opt, extra = p.parse_known_args(argv)
    if extra:
        files = [a for a in extra if not a.startswith("-") and Path(a).exists()]
        if files and len(files) == len(extra) and Path(opt.source).exists():
            raise SystemExit(f"error: --source got {len(extra) + 1} files ({opt.source}, {extra[0]}"
                             f"{', ...' if len(extra) > 1 else ''}): your shell expanded a glob before detect.py saw "
                             f"it. Quote the pattern: --source '{Path(opt.source).parent / '*'}{Path(opt.source).suffix}'"
                             " (or pass the folder)")
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    return opt


def check_source(source: str) -> None:
    """A clear exit for a --source that names nothing: a missing file or folder, a glob matching no file."""
    import glob

    if source.isdigit() or "://" in source:
        return
    if any(c in source for c in "*?["):
        if not glob.glob(source, recursive=True):
            raise SystemExit(f"error: --source {source}: the pattern matches no file")
    elif not Path(source).exists():
        raise SystemExit(f"error: --source {source}: no such file or folder")


def main(opt):
    from data.datasets import readable_image_errors

    source = opt.source
    check_source(source)
    common.check_device(opt.device)
    if opt.heatmap and common.exported_format(opt.weights):
        raise SystemExit(f"error: --heatmap needs the .pt checkpoint (gradients and attention layers), not the export "
                         f"{opt.weights}")
    if opt.vid_stride < 1:
        raise SystemExit(f"error: --vid-stride {opt.vid_stride}: must be 1 or more (every n-th frame)")
    model = common.yolo(opt.weights, trust=opt.trust_weights)
    imgsz = common.inference_size(opt.imgsz, model)
    readable_image_errors()
    from models.engine.predictor import Mp4Predictor

    results = model.predict(
        predictor=Mp4Predictor,  # videos saved as <name>.mp4, as YOLOv5 does
        source=source,
        imgsz=imgsz,
        conf=opt.conf_thres,
        iou=opt.iou_thres,
        max_det=opt.max_det,
        device=common.device_arg(opt.device),
        show=opt.view_img,
        save=not opt.nosave,
        save_txt=opt.save_txt,
        save_conf=opt.save_conf,
        save_crop=opt.save_crop,
        classes=opt.classes,
        agnostic_nms=opt.agnostic_nms,
        show_labels=not opt.hide_labels,
        show_conf=not opt.hide_conf,
        vid_stride=opt.vid_stride,
        save_dir=(save_dir := run_folder.save_dir(opt.project, "detect", opt.name, opt.exist_ok)),
        exist_ok=opt.exist_ok,
        quantize=16 if opt.half else None,  # ultralytics' name for half precision (``half`` is deprecated)
        line_width=opt.line_thickness,
        stream=True,
    )
    n = sum(1 for _ in results)  # stream: one frame at a time, constant memory on long videos
    if opt.heatmap:
        from tools.heatmap import save_heatmaps

        save_heatmaps(opt.weights, source, save_dir, imgsz, opt.conf_thres, opt.iou_thres, opt.device,
                      opt.heatmap_every, trust=opt.trust_weights)
    return n


if __name__ == "__main__":
    common.run_cli(main, parse_opt())
