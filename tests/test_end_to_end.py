"""End to end, as a user runs it: train.py -> val.py -> detect.py (image and video) -> ultralytics.YOLO -> resume."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if ok:
        assert out.returncode == 0, f"{args} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out


def results_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "results.csv") as f:
        return list(csv.DictReader(f))


def label_count(data_yaml: str, split: str = "val") -> tuple[int, int]:
    """(images, labelled objects) of a dataset split, read from its label files."""
    import yaml

    d = yaml.safe_load(Path(data_yaml).read_text())
    images = sorted((Path(d["path"]) / d[split]).iterdir())
    labels = Path(d["path"]) / d[split].replace("images", "labels")
    n = sum(len((labels / f"{p.stem}.txt").read_text().split("\n")) - 1 for p in images)
    return len(images), n


def summary_row(log: str) -> list[str]:
    """The validator's 'all' row: images, instances, P, R, mAP50, mAP50-95."""
    rows = [line.split() for line in log.splitlines() if line.split()[:1] == ["all"]]
    assert rows, f"no 'all' summary row in:\n{log[-2000:]}"
    return rows[-1][1:]


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    project = tmp_path_factory.mktemp("runs")
    run("train.py", "--cfg", "yolov5n-cbam.yaml", "--data", tiny_data, "--epochs", "1", "--img", "64",
        "--batch-size", "8", "--workers", "0", "--project", str(project / "train"), "--name", "exp")
    return project, project / "train" / "exp"


def test_train_writes_weights_results_and_model_yaml(trained):
    _, exp = trained
    for f in ("weights/best.pt", "weights/last.pt", "results.csv", "args.yaml"):
        assert (exp / f).is_file(), f
    assert len(results_rows(exp)) == 1


def test_val_on_trained_checkpoint(trained, tiny_data):
    project, exp = trained
    out = run("val.py", "--weights", str(exp / "weights/best.pt"), "--data", tiny_data, "--img", "64",
              "--project", str(project / "val"))
    images, instances, *metrics = summary_row(out.stdout + out.stderr)
    assert (int(images), int(instances)) == label_count(tiny_data)  # every val image and label was evaluated
    assert all(0.0 <= float(v) <= 1.0 for v in metrics) and len(metrics) == 4
    assert (project / "val" / "exp").is_dir()


def test_detect_on_image_and_video(trained, tmp_path):
    project, exp = trained
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 64))
    from data.synthetic import make_image

    for k in range(6):
        writer.write(cv2.resize(make_image(k, 128)[0], (96, 64)))
    writer.release()
    image = ROOT / "data" / "images" / "shapes_7.jpg"
    for source in (image, video):
        run("detect.py", "--weights", str(exp / "weights/best.pt"), "--source", str(source), "--img", "64",
            "--save-txt", "--project", str(project / "detect"), "--name", "exp", "--exist-ok")
    out_dir = project / "detect" / "exp"
    saved = sorted(p.name for p in out_dir.iterdir())
    assert any(n.startswith("shapes_7") for n in saved), saved
    videos = [out_dir / n for n in saved if n.startswith("clip")]
    assert len(videos) == 1, saved
    cap = cv2.VideoCapture(str(videos[0]))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6 and (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (96, 64)
    cap.release()
    img = cv2.imread(str(out_dir / "shapes_7.jpg"))
    assert img is not None and img.shape[:2] == cv2.imread(str(image)).shape[:2]


def test_detect_runs_not_overwritten(trained):
    project, exp = trained
    for _ in range(2):
        run("detect.py", "--weights", str(exp / "weights/best.pt"), "--img", "64",
            "--project", str(project / "detect2"))
    assert (project / "detect2" / "exp").is_dir() and (project / "detect2" / "exp2").is_dir()


def test_checkpoint_loads_in_ultralytics_yolo(trained, tmp_path):
    """ultralytics.YOLO(best.pt) predicts exactly what detect.py saves for the same weights and settings."""
    from ultralytics import YOLO

    project, exp = trained
    image = ROOT / "data" / "images" / "shapes_7.jpg"
    model = YOLO(str(exp / "weights/best.pt"))
    assert type(model.model).__name__ == "AttentionDetectionModel"
    res = model.predict(str(image), imgsz=64, conf=0.001, verbose=False)[0]
    run("detect.py", "--weights", str(exp / "weights/best.pt"), "--source", str(image), "--img", "64",
        "--conf-thres", "0.001", "--save-txt", "--save-conf", "--nosave", "--project", str(tmp_path), "--name", "d")
    saved = np.loadtxt(tmp_path / "d" / "labels" / "shapes_7.txt", ndmin=2)
    assert len(res.boxes) == len(saved) > 0
    mine = np.concatenate([res.boxes.cls.numpy()[:, None], res.boxes.xywhn.numpy(), res.boxes.conf.numpy()[:, None]], 1)
    np.testing.assert_allclose(mine[np.lexsort(mine.T[::-1])], saved[np.lexsort(saved.T[::-1])], atol=2e-4)


def test_bad_config_fails_clearly_and_leaves_earlier_run_intact(trained, tiny_data, tmp_path):
    project, exp = trained
    best = (exp / "weights/best.pt").read_bytes()
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "configs" / "yolov5-cbam.yaml").read_text().replace("[-1, 1, CBAM, [1024]]", "[-1, 1, CBAM, [512]]")
    bad.write_text(text)
    out = run("train.py", "--cfg", str(bad), "--data", tiny_data, "--epochs", "1", "--img", "64", "--workers", "0",
              "--project", str(project / "train"), "--name", "exp", "--exist-ok", ok=False)
    assert out.returncode != 0
    assert "layer 10 (CBAM)" in out.stderr and "write 1024" in out.stderr, out.stderr[-2000:]
    assert (exp / "weights/best.pt").read_bytes() == best


def test_interrupted_run_resumes(tiny_data, tmp_path):
    """A run stopped after epoch 1 of 2 continues with --resume and finishes epoch 2 in the same folder."""
    script = tmp_path / "interrupt.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import tools.common\n"
        "from train import parse_opt, build_overrides\n"
        "from models.engine.trainer import AttentionTrainer\n"
        "opt = parse_opt(sys.argv[1:])\n"
        "t = AttentionTrainer(overrides=build_overrides(opt))\n"
        "def stop(tr):\n"
        "    raise KeyboardInterrupt('simulated interruption')\n"
        "t.add_callback('on_model_save', stop)\n"
        "t.train()\n"
    )
    project = tmp_path / "runs"
    args = ["--cfg", "yolov5n-se.yaml", "--data", tiny_data, "--epochs", "2", "--img", "64", "--batch-size", "8",
            "--workers", "0", "--project", str(project), "--name", "exp"]
    out = run(str(script), *args, ok=False)
    assert out.returncode != 0 and "simulated interruption" in out.stderr
    exp = project / "exp"
    assert (exp / "weights/last.pt").is_file()
    assert not list(exp.glob("weights/*.tmp")), "a checkpoint temp file was left behind"
    run("train.py", "--resume", str(exp / "weights/last.pt"))
    rows = results_rows(exp)
    assert [int(float(r["epoch"])) for r in rows] == [1, 2]
