"""train.py / val.py / detect.py / export.py on the newer families, as a user runs them: YOLO11n with CBAM from an
ultralytics-written yolo11n checkpoint, YOLOv10n with SE from scratch (end-to-end head), YOLO26n with --attention
(end-to-end head, weights transferred); our checkpoints load in ultralytics.YOLO; the ablation runner takes them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_end_to_end import run, summary_row
from tests.test_export import run_onnx, torch_outputs
from tools.families import ultralytics_checkpoint

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "data" / "images" / "shapes_7.jpg"


def train(*args: str) -> str:
    out = run("train.py", *args, "--epochs", "1", "--img", "64", "--batch-size", "8", "--workers", "0")
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def yolo11(tiny_data, tmp_path_factory):
    """yolo11n-cbam trained one epoch from ultralytics' yolo11n (random weights, saved by ultralytics' own code)."""
    root = tmp_path_factory.mktemp("yolo11")
    base = ultralytics_checkpoint("yolo11n", root / "yolo11n-base.pt")
    log = train("--cfg", "yolo11n-cbam.yaml", "--weights", str(base), "--data", tiny_data,
                "--project", str(root / "train"), "--name", "exp")
    return root, root / "train" / "exp" / "weights" / "best.pt", log


def test_train_transfers_every_base_tensor_but_the_class_logits(yolo11):
    """499 tensors in yolo11n; the 6 class-logit tensors are sized for 80 classes there and 5 here."""
    _, best, log = yolo11
    assert "transferred 493/509 tensors from yolo11n-base.pt; new layers: 11 CBAM; skipped: 24 Detect cv3.0.2.weight " \
           "and 5 more (shape [80, 80, 1, 1] in yolo11n-base.pt, [5, 80, 1, 1] here)" in log, log[-3000:]
    assert best.is_file()


def test_val_detect_and_ultralytics_yolo_on_the_checkpoint(yolo11, tiny_data):
    from ultralytics import YOLO

    root, best, _ = yolo11
    out = run("val.py", "--weights", str(best), "--data", tiny_data, "--img", "64", "--project", str(root / "val"))
    images, instances, *metrics = summary_row(out.stdout + out.stderr)
    assert int(images) == 8 and len(metrics) == 4
    run("detect.py", "--weights", str(best), "--source", str(IMAGE), "--img", "64", "--project", str(root / "det"))
    assert (root / "det" / "exp" / IMAGE.name).is_file()
    model = YOLO(str(best))
    assert type(model.model).__name__ == "AttentionDetectionModel" and model.model.model[11].type == "CBAM"
    assert model.predict(str(IMAGE), imgsz=64, conf=0.0, verbose=False)[0].boxes is not None


def test_onnx_export_of_yolo11_cbam_matches_pytorch(yolo11):
    pytest.importorskip("onnxruntime")
    import export

    _, best, _ = yolo11
    (onnx_file,) = export.main(export.parse_opt(["--weights", str(best), "--include", "onnx", "--imgsz", "64",
                                                 "--dynamic"]))
    for h, w in ((64, 64), (96, 64)):
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h))
        (got,) = run_onnx(onnx_file, x)
        np.testing.assert_allclose(got, torch_outputs(best, x), rtol=1e-3, atol=1e-3)


def test_yolov10n_se_trains_and_validates_from_scratch(tiny_data, tmp_path):
    log = train("--cfg", "yolov10n-se.yaml", "--data", tiny_data, "--project", str(tmp_path / "train"), "--name", "exp")
    best = tmp_path / "train" / "exp" / "weights" / "best.pt"
    from models.weights.checkpoint import load_model

    model = load_model(best)
    assert type(model.model[-1]).__name__ == "v10Detect" and model.model[11].type == "SE", log[-2000:]
    out = run("val.py", "--weights", str(best), "--data", tiny_data, "--img", "64", "--project", str(tmp_path / "val"))
    assert int(summary_row(out.stdout + out.stderr)[0]) == 8


def test_attention_flag_on_yolo26_with_weights(tiny_data, tmp_path):
    """--attention on an end-to-end family: the run's model YAML keeps the scale, the weights transfer."""
    base = ultralytics_checkpoint("yolo26n", tmp_path / "yolo26n-base.pt")
    log = train("--cfg", "yolo26n.yaml", "--weights", str(base), "--attention", "ECA@p4", "--data", tiny_data,
                "--project", str(tmp_path / "train"), "--name", "exp")
    m = re.search(r"transferred (\d+)/(\d+) tensors from yolo26n-base.pt; new layers: 7 ECA", log)
    assert m and int(m.group(1)) == 708 - 12, log[-3000:]  # both heads' class logits are sized for 80 classes there
    run_yaml = (tmp_path / "train" / "exp" / "model.yaml").read_text()
    assert "\nscale: n\n" in run_yaml and "ECA" in run_yaml


def test_ablation_runner_takes_family_configs():
    from tools.ablate import check_config, resolve_variant

    assert resolve_variant("yolo11n-cbam.yaml", "n") == ("yolo11n-cbam", "yolo11n-cbam.yaml")
    for cfg in ("yolo11n.yaml", "yolo11n-cbam.yaml", "yolov10n-se.yaml", "yolo26n-eca.yaml"):
        check_config(cfg)
