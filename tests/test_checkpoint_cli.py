"""The command lines a user types, each in its own interpreter: a checkpoint with a payload is refused by every script
that reads weights (the payload's marker file never appears), a classic YOLOv5 ``yolov5s.pt`` (v7.0 and v3.1) is
validated and detected with as it is, a YOLOv7 P6 training file trains a variant with CBAM from all its tensors, and
our checkpoints load in ``ultralytics.YOLO`` under ``ULTRALYTICS_SAFE_LOAD=1``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_checkpoint import (MARKER, PEER_YAMLS, RELEASE_ACTIVATIONS, classic_yaml, fixture_yaml, payloads, plant,
                                   reference, save_ours, save_peer)

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    good = save_ours(root / "best.pt", reference("yolov5n-cbam.yaml"))
    marker = root / MARKER
    return {"good": good, "evil": plant(root / "evil.pt", payloads(marker)["posix.system"], good), "marker": marker,
            "root": root}


def probe(files, tiny_data, tmp_path, what: str) -> list[str]:
    evil, project = str(files["evil"]), str(tmp_path / "runs")
    if what == "bare --resume":
        (tmp_path / "runs" / "exp" / "weights").mkdir(parents=True)
        (tmp_path / "runs" / "exp" / "weights" / "last.pt").write_bytes(files["evil"].read_bytes())
    train = ["--data", tiny_data, "--epochs", "1", "--img", "64", "--project", project]
    return {
        "train --weights": ["train.py", "--weights", evil, *train],
        "train --weights --cfg": ["train.py", "--cfg", "yolov5n-cbam.yaml", "--weights", evil, *train],
        "train --attention": ["train.py", "--weights", evil, "--attention", "SE@backbone_end", *train],
        "--resume FILE": ["train.py", "--resume", evil],
        "bare --resume": ["train.py", "--resume", "--project", project],
        "val": ["val.py", "--weights", evil, "--data", tiny_data, "--img", "64", "--project", project],
        "detect": ["detect.py", "--weights", evil, "--img", "64", "--project", project],
        "heatmap": ["tools/heatmap.py", "--weights", evil, "--img", "64", "--project", project],
    }[what]


SLOW = {"train --weights --cfg", "train --attention", "--resume FILE", "bare --resume"}  # in-process: test_checkpoint.py
PATHS = ["train --weights", "val", "detect", "heatmap", *sorted(SLOW)]


@pytest.mark.parametrize("what", [pytest.param(w, marks=pytest.mark.slow) if w in SLOW else w for w in PATHS])
def test_every_script_refuses_a_payload_checkpoint(what, files, tiny_data, tmp_path):
    out = run(*probe(files, tiny_data, tmp_path, what))
    assert out.returncode != 0, out.stdout[-2000:]
    assert "refused to load" in out.stderr and "'posix.system'" in out.stderr and "--trust-weights" in out.stderr, \
        out.stderr[-3000:]
    assert not files["marker"].exists()
    if what.startswith("train"):
        assert not (tmp_path / "runs").exists()  # refused before any run folder is made


def test_ablation_resuming_a_planted_last_pt_refuses_it(files, tiny_data, tmp_path):
    from tools import ablate

    run_dir = tmp_path / "abl" / "baseline-s0" / "weights"
    run_dir.mkdir(parents=True)
    (run_dir / "last.pt").write_bytes(files["evil"].read_bytes())
    with pytest.raises(SystemExit, match="train.py --resume .*failed"):
        ablate.main(["--name", "abl", "--project", str(tmp_path), "--data", tiny_data, "--scale", "n",
                     "--variants", "se", "--epochs", "1", "--img", "64", "--no-latency"])
    assert not files["marker"].exists()


@pytest.mark.slow
def test_trust_weights_is_the_explicit_opt_out(files, tiny_data, tmp_path):
    out = run("val.py", "--weights", str(files["evil"]), "--data", tiny_data, "--img", "64", "--trust-weights",
              "--project", str(tmp_path / "val"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert files["marker"].exists()  # the file's code ran: that is what the flag allows
    files["marker"].unlink()


@pytest.mark.slow
def test_released_yolov5s_validates_as_it_is(tiny_data, tmp_path):
    """python val.py --weights yolov5s.pt (a classic YOLOv5 v7.0 file, run where the path has no 'u')."""
    d = classic_yaml()
    save_peer(tmp_path / "yolov5s.pt", "v7.0", reference(d), d)
    out = run(str(ROOT / "val.py"), "--weights", "yolov5s.pt", "--data", tiny_data, "--img", "64", "--project", "val",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "YOLOv5 checkpoint (models.yolo.DetectionModel)" in log and "yolov5su" not in log
    assert (tmp_path / "val" / "exp").is_dir()


@pytest.mark.slow
def test_released_yolov5s_detects(tmp_path):
    d = classic_yaml()
    save_peer(tmp_path / "yolov5s.pt", "v7.0", reference(d), d)
    out = run(str(ROOT / "detect.py"), "--weights", "yolov5s.pt", "--img", "64", "--conf-thres", "0.001",
              "--project", "det", cwd=tmp_path)
    assert out.returncode == 0 and "yolov5su" not in out.stdout + out.stderr, out.stderr[-3000:]
    assert {"shapes_7.jpg", "shapes_11.jpg"} <= {p.name for p in (tmp_path / "det" / "exp").iterdir()}


@pytest.mark.slow
def test_yolov5_v31_file_validates_and_detects(tiny_data, tmp_path):
    """python val.py / detect.py --weights yolov5s.pt with a YOLOv5 v3.1 file (Hardswish Convs, LeakyReLU CSP)."""
    d = fixture_yaml("yolov5-csp-focus.yaml")
    save_peer(tmp_path / "yolov5s.pt", "v3.1", reference({**d, **RELEASE_ACTIVATIONS["v3.1"]}), d)
    out = run(str(ROOT / "val.py"), "--weights", "yolov5s.pt", "--data", tiny_data, "--img", "64", "--project", "val",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "YOLOv5 checkpoint (models.yolo.Model)" in out.stdout + out.stderr and (tmp_path / "val" / "exp").is_dir()
    out = run(str(ROOT / "detect.py"), "--weights", "yolov5s.pt", "--img", "64", "--project", "det", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert {"shapes_7.jpg", "shapes_11.jpg"} <= {p.name for p in (tmp_path / "det" / "exp").iterdir()}


@pytest.mark.slow
def test_train_transfers_a_yolov7_p6_training_file_into_a_cbam_variant(tiny_data, tmp_path):
    """python train.py --weights yolov7-w6_training.pt --cfg <the P6 YAML with CBAM>: every tensor of the file."""
    from models.weights.checkpoint import load_model

    d = fixture_yaml("yolov7-p6-aux.yaml")
    weights = save_peer(tmp_path / "yolov7-w6_training.pt", "yolov7", reference(d), d, stripped=False)
    n = len(load_model(weights).state_dict())
    out = run("tools/insert.py", str(PEER_YAMLS / "yolov7-p6-aux.yaml"), "CBAM@backbone_end", "-o",
              str(tmp_path / "yolov7-w6-cbam.yaml"))
    assert out.returncode == 0, out.stderr[-3000:]
    out = run("train.py", "--weights", str(weights), "--cfg", str(tmp_path / "yolov7-w6-cbam.yaml"),
              "--data", tiny_data, "--epochs", "1", "--img", "64", "--batch-size", "4", "--workers", "0",
              "--project", str(tmp_path / "runs"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert (f"transferred {n}/{n + 10} tensors from yolov7-w6_training.pt; new layers: 14 CBAM; skipped: none"
            in out.stdout + out.stderr), (out.stdout + out.stderr)[-3000:]
    assert (tmp_path / "runs" / "exp" / "weights" / "last.pt").is_file()


def test_our_checkpoint_loads_in_ultralytics_safe_load(files):
    script = (
        "import sys; sys.path.insert(0, sys.argv[2])\n"
        "import offline; offline.configure()\n"
        "from ultralytics import YOLO\n"
        "try:\n"
        "    YOLO(sys.argv[1]); print('loaded without registering')\n"
        "except TypeError as e:\n"
        "    print('refused before registering')\n"
        "import models.weights.unpickle\n"
        "models.weights.unpickle.register_safe_globals()\n"
        "model = YOLO(sys.argv[1])\n"
        "print(type(model.model).__name__, type(model.model.model[10]).__name__)\n"
        "print(len(model.predict(sys.argv[2] + '/data/images/shapes_7.jpg', imgsz=64, verbose=False)))\n"
    )
    out = run("-c", script, str(files["good"]), str(ROOT), cwd=files["root"], env={"ULTRALYTICS_SAFE_LOAD": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[-4:-1] == ["refused before registering", "AttentionDetectionModel CBAM", "1"], out.stdout
