"""End to end with anchor-based heads, as a user runs them: train.py -> val.py -> detect.py -> ONNX export.

One classic YOLOv5 (anchor-based Detect, YOLOv5's loss with gains from a YOLOv5 --hyp file, AutoAnchor) and
YOLOv7-tiny (IDetect, LeakyReLU rows), each trained for one epoch on the 16-image tiny_data set. train.py runs
in a fresh interpreter; val.py and detect.py run through their main() in the test process.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["yolov5n-anchor.yaml", "yolov7-tiny.yaml"]


def run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{args} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out.stdout + out.stderr


@pytest.fixture(scope="module", params=MODELS)
def trained(request, tiny_data, tmp_path_factory):
    cfg = request.param
    project = tmp_path_factory.mktemp("runs")
    hyp = project / "hyp.yaml"
    hyp.write_text("lr0: 0.01\nobj: 0.7\nbox: 0.05\ncls: 0.5\nanchor_t: 4.0\n")  # YOLOv5 form ('obj' present)
    log = run("train.py", "--cfg", cfg, "--data", tiny_data, "--epochs", "1", "--img", "64", "--batch-size", "8",
              "--workers", "0", "--hyp", str(hyp), "--project", str(project / "train"), "--name", "exp")
    return cfg, project, project / "train" / "exp", log


def test_train_uses_yolov5_loss_autoanchor_and_the_hyp_file(trained):
    cfg, _, exp, log = trained
    assert "Best Possible Recall (BPR)" in log
    with open(exp / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and {"train/box_loss", "train/obj_loss", "train/cls_loss", "val/obj_loss"} <= set(rows[0])
    ckpt = torch.load(exp / "weights" / "best.pt", map_location="cpu", weights_only=False)
    model = ckpt["model"]
    assert type(model.model[-1]).__name__ == ("AnchorDetect" if cfg.startswith("yolov5") else "IDetect")
    assert model.yaml["hyp"]["obj"] == 0.7  # the YOLOv5 loss keys of --hyp travel in the checkpoint's model YAML


def test_val_and_detect_on_the_checkpoint(trained, tiny_data):
    import detect
    import val

    # val.py / detect.py main() in this process: the same code path as their command lines, one interpreter less
    _, project, exp, _ = trained
    metrics = val.main(val.parse_opt(["--weights", str(exp / "weights/best.pt"), "--data", tiny_data, "--img", "64",
                                      "--project", str(project / "val")]))
    from tests.test_end_to_end import label_count

    assert int(metrics.nt_per_class.sum()) == label_count(tiny_data)[1]  # every val label was matched against
    assert metrics.box.map50 >= metrics.box.map and (project / "val" / "exp").is_dir()
    frames = detect.main(detect.parse_opt(["--weights", str(exp / "weights/best.pt"), "--img", "64",
                                           "--conf-thres", "0.001", "--save-txt", "--project", str(project / "detect"),
                                           "--name", "exp"]))
    assert frames == 2  # data/images holds two pictures
    saved = {p.name for p in (project / "detect" / "exp").iterdir()}
    assert {"shapes_7.jpg", "shapes_11.jpg", "labels"} <= saved


def test_onnx_export_through_ultralytics_predicts(trained):
    from ultralytics import YOLO

    _, _, exp, _ = trained
    onnx_file = YOLO(str(exp / "weights/best.pt")).export(format="onnx", imgsz=64, simplify=False)
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_file)
    (output,) = session.get_outputs()
    assert output.shape[1] == 4 + 5  # (B, 4 + nc, N): boxes and objectness-weighted class scores
    image = str(ROOT / "data/images/shapes_7.jpg")
    onnx_boxes = YOLO(onnx_file, task="detect").predict(image, imgsz=64, conf=0.001, verbose=False)[0].boxes
    torch_boxes = YOLO(str(exp / "weights/best.pt")).predict(image, imgsz=64, conf=0.001, verbose=False)[0].boxes
    assert len(onnx_boxes) == len(torch_boxes) > 0  # the exported graph predicts what the checkpoint predicts
    order = lambda b: b.conf.argsort(descending=True)  # noqa: E731
    torch.testing.assert_close(onnx_boxes.xyxy[order(onnx_boxes)], torch_boxes.xyxy[order(torch_boxes)], atol=0.05, rtol=0)
