"""A YOLOv5 user's habits work unchanged: export then detect/val on the export, the training size by default, the bare
command trains in minutes on a CPU, YOLOv5's flags, and the quick start finds the sample images' objects."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def run(*args: str, ok: bool = True, cwd=ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if ok:
        assert out.returncode == 0, f"{args} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A best.pt as training writes it, trained (train_args) at 96 px."""
    import torch

    from models.yolo import build_model

    root = tmp_path_factory.mktemp("weights") / "exp" / "weights"
    root.mkdir(parents=True)
    torch.manual_seed(0)
    model = build_model("yolov5n-cbam.yaml", nc=5)
    model.names = {i: n for i, n in enumerate(["circle", "rectangle", "triangle", "star", "cross"])}
    torch.save({"model": model.half(), "ema": None, "epoch": -1, "train_args": {"imgsz": 96, "data": "shapes.yaml"}},
               root / "best.pt")
    return root / "best.pt"


# --- item 1: export.py --include onnx, then detect.py and val.py read the .onnx ----------------------------------------


def test_export_then_detect_and_val_on_the_onnx_file(checkpoint, tiny_data, tmp_path):
    pytest.importorskip("onnxruntime")
    out = run("export.py", "--weights", str(checkpoint), "--include", "onnx", "--exist-ok")  # the README's command
    onnx_file = checkpoint.with_suffix(".onnx")
    assert f"python detect.py --weights {onnx_file}" in out.stdout and onnx_file.is_file()
    assert "image size 96 px (the size best.pt was trained at; --img to change)" in out.stdout, out.stdout[-2000:]
    out = run("detect.py", "--weights", str(onnx_file), "--save-txt", "--project", str(tmp_path / "detect"))
    assert "image size 96 px (the size best.onnx was exported at)" in out.stdout, out.stdout[-2000:]
    assert {"shapes_7.jpg", "shapes_11.jpg"} <= {p.name for p in (tmp_path / "detect" / "exp").iterdir()}
    out = run("val.py", "--weights", str(onnx_file), "--data", tiny_data, "--project", str(tmp_path / "val"))
    log = out.stdout + out.stderr
    assert [line.split()[:3] for line in log.splitlines() if line.split()[:1] == ["all"]][-1] == ["all", "8", "17"], log[-2000:]
    assert (tmp_path / "val" / "exp").is_dir()


def test_an_export_that_is_not_there_says_how_to_make_it(tmp_path):
    out = run("detect.py", "--weights", str(tmp_path / "best.onnx"), "--project", str(tmp_path / "d"), ok=False)
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr[-2000:]
    assert "no such file or folder (export it first: python export.py --weights best.pt --include onnx)" in out.stderr


# --- item 3: val.py / detect.py default to the size the weights were trained at ------------------------------------


def test_detect_and_val_use_and_print_the_training_size(checkpoint, tiny_data, tmp_path):
    out = run("detect.py", "--weights", str(checkpoint), "--source", str(ROOT / "data/images/shapes_7.jpg"),
              "--project", str(tmp_path / "d"))
    assert "image size 96 px (the size best.pt was trained at; --img to change)" in out.stdout
    assert "shapes_7.jpg: 96x96" in out.stdout + out.stderr, (out.stdout + out.stderr)[-2000:]
    out = run("detect.py", "--weights", str(checkpoint), "--source", str(ROOT / "data/images/shapes_7.jpg"),
              "--img", "64", "--project", str(tmp_path / "d"))
    assert "image size 64 px (--img); the weights were trained at 96" in out.stdout
    assert "shapes_7.jpg: 64x64" in out.stdout + out.stderr


def test_the_training_size_is_read_from_every_checkpoint_format():
    from argparse import Namespace

    import tools.common as common

    assert common.training_size({"train_args": {"imgsz": 256}}) == 256  # ours, ultralytics'
    assert common.training_size({"opt": {"imgsz": 1280}}) == 1280  # YOLOv5 v6+
    assert common.training_size({"opt": Namespace(img_size=[640, 640])}) == 640  # YOLOv7, YOLOv5 v3
    assert common.training_size({"model": None}) is None
    model = SimpleNamespace(size=None, size_from="", static=False)
    assert common.inference_size(None, model) == 640 and common.inference_size(320, model) == 320


# --- item 5: the bare command trains in minutes on a CPU with the built-in data; YOLOv5's defaults otherwise --------


def test_the_bare_command_plans_the_quick_start(tmp_path):
    """python train.py --cfg yolov5s-cbam.yaml on a CPU: the quick-start line, then a plan of minutes, not a day."""
    import train

    args = ["--cfg", "yolov5s-cbam.yaml", "--project", str(tmp_path / "runs")]
    device = ["--device", "cpu"] if train.uses_gpu("") else []  # the bare command, as a machine without a GPU runs it
    proc = subprocess.Popen([sys.executable, "train.py", *args, *device], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = []
    try:
        deadline = time.time() + 500
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            if line.startswith("plan:"):
                break
    finally:
        proc.kill()
        proc.communicate()
    log = "".join(lines)
    q = train.QUICK_START
    assert (f"quick start (no GPU and the built-in dataset): {q['epochs']} epochs at {q['imgsz']} px, batch "
            f"{q['batch_size']}, {q['optimizer']} with --hyp {q['hyp']}. For more, set --epochs/--img/--batch-size, "
            "or --no-quick for YOLOv5's defaults (100 epochs at 640 px)") in log, log[-3000:]
    plan = [line for line in lines if line.startswith("plan:")]
    assert plan and plan[0].startswith(f"plan: {q['epochs']} epochs x {400 // q['batch_size']} batches of "
                                       f"{q['batch_size']} images at {q['imgsz']} px on CPU"), log[-3000:]


Q, V5 = "quick start", "YOLOv5"  # expected values: train.QUICK_START's, train.YOLOV5_DEFAULTS'


@pytest.mark.parametrize("argv, gpu, expected", [
    ([], False, {"epochs": Q, "imgsz": Q, "batch_size": Q, "optimizer": Q, "hyp": Q}),
    (["--epochs", "50", "--img", "256"], False, {"epochs": 50, "imgsz": 256, "batch_size": Q, "optimizer": Q}),
    ([], True, {"epochs": V5, "imgsz": V5, "batch_size": V5, "optimizer": V5, "hyp": V5}),
    (["--data", "coco128.yaml"], False, {"epochs": V5, "imgsz": V5, "batch_size": V5}),
    (["--no-quick"], False, {"epochs": V5, "imgsz": V5, "optimizer": V5}),
    (["--quick", "--device", "0"], True, {"epochs": Q, "imgsz": Q, "batch_size": Q}),
    (["--device", "cpu", "--batch-size", "4"], True, {"epochs": Q, "batch_size": 4}),
], ids=["cpu", "cpu-flags-kept", "gpu", "real-data", "no-quick", "asked", "cpu-on-a-gpu-machine"])
def test_defaults_are_the_quick_start_only_on_a_cpu_with_the_built_in_data(argv, gpu, expected, monkeypatch):
    import torch

    import train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    opt = train.parse_opt(["--cfg", "yolov5s-cbam.yaml", *argv])
    line = train.settle_defaults(opt)
    quick = Q in expected.values()
    assert (line is not None) == quick, line
    table = {Q: train.QUICK_START, V5: train.YOLOV5_DEFAULTS}
    assert {k: getattr(opt, k) for k in expected} == {k: table[v][k] if v in table else v for k, v in expected.items()}


# --- item 7: the YOLOv5 flags, each mapped to the engine's own option; --help shows defaults -------------------------


def test_train_flags_map_to_the_trainer(tiny_data, tmp_path):
    import train

    opt = train.parse_opt(["--cfg", "yolov5n-cbam.yaml", "--data", tiny_data, "--epochs", "3", "--img", "64",
                           "--freeze", "10", "--cache", "--rect", "--single-cls", "--noval", "--nosave", "--cos-lr",
                           "--project", str(tmp_path)])
    o = train.build_overrides(opt)
    assert {k: o[k] for k in ("freeze", "cache", "rect", "single_cls", "val", "save", "cos_lr")} == {
        "freeze": 10, "cache": "ram", "rect": True, "single_cls": True, "val": False, "save": False, "cos_lr": True}
    assert train.freeze_arg([0]) is None and train.freeze_arg([0, 1, 2]) == [0, 1, 2]
    from ultralytics.cfg import get_cfg

    get_cfg(overrides={k: v for k, v in o.items() if k != "save_dir"})  # every key is one the engine takes


def test_freeze_keeps_inserted_layers_trainable():
    from models.engine.trainer import pretrained_only

    report = SimpleNamespace(new_layers=[(7, "CBAM"), (12, "SE")])
    assert pretrained_only(10, report) == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert pretrained_only([0, 7, 12, 13], report) == [0, 13]
    assert pretrained_only(10, None) == 10 and pretrained_only(None, report) is None


def test_label_smoothing_reaches_yolov5s_loss_and_is_refused_where_no_loss_reads_it(tiny_data, tmp_path):
    import yaml

    import train

    base = ["--data", tiny_data, "--epochs", "1", "--img", "64", "--label-smoothing", "0.1", "--project", str(tmp_path)]
    o = train.build_overrides(train.parse_opt(["--cfg", "yolov5n-cbam-anchor.yaml", *base]))
    assert yaml.safe_load(Path(o["model"]).read_text())["hyp"]["label_smoothing"] == 0.1
    with pytest.raises(SystemExit, match="anchor-free Detect, whose loss has no label smoothing"):
        train.build_overrides(train.parse_opt(["--cfg", "yolov5n-cbam.yaml", *base]))


def test_evolve_is_a_one_line_pointer(tmp_path):
    import train

    with pytest.raises(SystemExit, match=r"--evolve: .*ultralytics' Tuner trains through its own `yolo` command.*"
                                         r"tools/ablate.py"):
        train.build_overrides(train.parse_opt(["--cfg", "yolov5n.yaml", "--evolve", "--project", str(tmp_path)]))
    assert not (tmp_path / "exp").exists()


def test_detect_and_val_flags_map_to_the_predictor_and_validator(monkeypatch):
    import detect
    import tools.common as common
    import val

    calls = {}

    class Fake:
        size, size_from, static = 64, "the size best.pt was trained at", False

        def predict(self, **kw):
            calls["predict"] = kw
            return iter([])

        def val(self, **kw):
            calls["val"] = kw

    monkeypatch.setattr(common, "yolo", lambda *a, **k: Fake())
    monkeypatch.setattr(val, "scan_problems", lambda *a, **k: None, raising=False)
    detect.main(detect.parse_opt(["--weights", "w.pt", "--agnostic-nms", "--save-crop", "--hide-labels", "--hide-conf",
                                  "--classes", "0", "2", "--max-det", "50", "--save-conf", "--line-thickness", "2",
                                  "--vid-stride", "3", "--nosave", "--project", "/tmp/unused-habits"]))
    p = calls["predict"]
    assert {k: p[k] for k in ("agnostic_nms", "save_crop", "show_labels", "show_conf", "classes", "max_det", "save_conf",
                              "line_width", "vid_stride", "imgsz")} == {
        "agnostic_nms": True, "save_crop": True, "show_labels": False, "show_conf": False, "classes": [0, 2],
        "max_det": 50, "save_conf": True, "line_width": 2, "vid_stride": 3, "imgsz": 64}
    opt = val.parse_opt(["--weights", "w.pt", "--task", "train", "--save-json", "--save-txt", "--save-conf",
                         "--conf-thres", "0.01", "--iou-thres", "0.5"])
    assert (opt.task, opt.save_json, opt.save_txt, opt.conf_thres, opt.iou_thres) == ("train", True, True, 0.01, 0.5)


@pytest.mark.parametrize("script, shown", [
    ("train.py", ["--freeze FREEZE [FREEZE ...]", "(default: [0])", "--patience PATIENCE", "(default: 100)",
                  "default 100; {epochs} in the CPU quick start", "--label-smoothing", "(default: 0.0)"]),
    ("detect.py", ["--conf-thres CONF_THRES", "(default: 0.25)", "--vid-stride VID_STRIDE", "(default: 1)",
                   "--agnostic-nms", "--hide-labels", "--hide-conf", "--save-crop"]),
    ("val.py", ["(default: 0.001)", "(default: 0.6)", "--save-json", "--save-txt", "(default: val)"]),
])
def test_help_shows_the_defaults(script, shown):
    import train

    text = " ".join(run(script, "--help").stdout.split())
    missing = [s for s in shown if s.format(**train.QUICK_START) not in text]
    assert not missing, (missing, text)


# --- item 10: the CPU wheel of torch, in one line ------------------------------------------------------------------


def test_the_docs_give_the_cpu_wheel_install_in_one_line():
    text = (ROOT / "docs" / "quickstart.md").read_text()
    line = [x for x in text.splitlines() if "download.pytorch.org/whl/cpu" in x]
    assert line and "pip install" in line[0] and "-r requirements.txt" in line[0], line


# --- item 6: the quick start in minutes, finding the sample images' objects ----------------------------------------

SAMPLE_OBJECTS = {  # data/images: class, centre (pixels of the 320 px image) and size of every object
    "shapes_7": [(3, 205, 230, "small"), (2, 255, 268, "typical")],  # a 25 px star, a triangle
    "shapes_11": [(4, 42, 224, "small"), (4, 120, 275, "typical")],  # a 40 px cross, a large cross at the border
}  # "small": smaller than 90% of the built-in dataset's objects (its 10th percentile is 41 px, the median 85 px)


def found_in_samples(labels: Path) -> dict[str, int]:
    found = {"small": 0, "typical": 0}
    for stem, objects in SAMPLE_OBJECTS.items():
        f = labels / f"{stem}.txt"
        boxes = [list(map(float, line.split())) for line in f.read_text().splitlines()] if f.exists() else []
        for cls, x, y, size in objects:
            found[size] += any(int(b[0]) == cls and abs(b[1] * 320 - x) < 25 and abs(b[2] * 320 - y) < 25 for b in boxes)
    return found


@pytest.mark.slow
def test_quick_start_finds_the_sample_images_objects(tmp_path):
    """The quick start (the bare command on a CPU, as the README runs it), then detect.py on data/images (conf 0.25):
    at the training size both objects of typical size; at --img 256 three of the four."""
    run("train.py", "--cfg", "yolov5n-cbam.yaml", "--device", "cpu", "--project", str(tmp_path / "train"), timeout=3600)
    weights = str(tmp_path / "train/exp/weights/best.pt")
    run("detect.py", "--weights", weights, "--save-txt", "--nosave", "--project", str(tmp_path / "d"), "--name", "own")
    run("detect.py", "--weights", weights, "--save-txt", "--nosave", "--img", "256", "--project", str(tmp_path / "d"),
        "--name", "256")
    assert found_in_samples(tmp_path / "d/own/labels")["typical"] == 2
    assert sum(found_in_samples(tmp_path / "d/256/labels").values()) >= 3
