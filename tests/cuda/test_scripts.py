"""The scripts on the GPU as a user runs them, with AMP: ``train.py`` (2 epochs at 320 px on the built-in shapes
dataset; the log must show our AMP check passing and no download) -> ``val.py`` in fp32 and with ``--half`` ->
``detect.py`` on a folder of images with a video among them -> ``export.py --include onnx --dynamic``, run in
onnxruntime (its CUDA provider when installed, else the CPU) against PyTorch; for ``yolov5s-cbam.yaml``
(anchor-free head) and ``yolov5s-cbam-anchor.yaml`` (YOLOv5's anchor head).

Each script is a subprocess with a time limit, its log kept in the run's folder. A test whose training run failed is
skipped with that reason (the training test itself fails). With ``--cuda-device cpu`` the same chain runs on the
small test dataset at 64 px, one epoch, without AMP.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ("yolov5s-cbam.yaml", "yolov5s-cbam-anchor.yaml")
ON_GPU = {"imgsz": 320, "epochs": 2, "batch": 16, "workers": 4, "device": "0"}
ON_CPU = {"imgsz": 64, "epochs": 1, "batch": 8, "workers": 0, "device": "cpu"}
TIMEOUT_S = {"train.py": 300, "val.py": 120, "detect.py": 120, "export.py": 180}
AMP_PASSED = "AMP: checks passed on this model"
DOWNLOAD_SIGNS = ("yolo26n", "Downloading")


def script(name: str, args: list[str], log: Path) -> subprocess.CompletedProcess:
    """``python <name> <args>`` from the project root, output (stdout then stderr) saved to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        p = subprocess.run([sys.executable, name, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                           timeout=TIMEOUT_S[name], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired as e:
        out = "".join(s.decode() if isinstance(s, bytes) else (s or "") for s in (e.stdout, e.stderr))
        log.write_text(out)
        pytest.fail(f"{name} ran past its {TIMEOUT_S[name]} s (log {log}):\n{tail(out)}")
    log.write_text(p.stdout + p.stderr)
    return p


def tail(text: str, n: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def ran(p: subprocess.CompletedProcess, what: str) -> str:
    """The output of a script that must have exited 0."""
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{what} exited {p.returncode}:\n{tail(out)}"
    return out


@dataclass
class Training:
    cfg: str
    folder: Path
    log: str
    returncode: int

    @property
    def tag(self) -> str:
        return Path(self.cfg).stem

    @property
    def weights(self) -> Path:
        """best.pt of a run that finished; skips the test that needs it otherwise."""
        best = self.folder / "weights" / "best.pt"
        if self.returncode or not best.is_file():
            pytest.skip(f"train.py failed for {self.cfg} (see test_train[{self.tag}])")
        return best


@pytest.fixture(scope="module")
def settings(device, request) -> dict:
    from data.datasets import prepare_data

    if device.type == "cuda":
        return {**ON_GPU, "data": prepare_data("shapes.yaml")}
    return {**ON_CPU, "data": request.getfixturevalue("tiny_data")}


@pytest.fixture(scope="module")
def media(settings, tmp_path_factory) -> Path:
    """A folder of four validation images and a 12-frame video made from others (detect.py's two reading paths)."""
    import cv2

    images = sorted(p for p in (Path(settings["data"]).parent / "images" / "val").iterdir()
                    if p.suffix in {".jpg", ".png"})
    folder = tmp_path_factory.mktemp("media")
    for p in images[:4]:
        (folder / p.name).write_bytes(p.read_bytes())
    frames = [cv2.imread(str(p)) for p in images[:12]]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 4, (w, h))
    for frame in frames:
        writer.write(cv2.resize(frame, (w, h)))
    writer.release()
    assert (folder / "clip.mp4").stat().st_size > 0, "OpenCV wrote no video"
    return folder


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: Path(c).stem)
def trained(request, settings, tmp_path_factory) -> Training:
    cfg, s = request.param, settings
    project = tmp_path_factory.mktemp("runs")
    folder = project / Path(cfg).stem
    p = script("train.py", ["--cfg", cfg, "--data", s["data"], "--epochs", s["epochs"], "--img", s["imgsz"],
                            "--batch-size", s["batch"], "--device", s["device"], "--workers", s["workers"],
                            "--project", project, "--name", folder.name, "--exist-ok"], folder.with_suffix(".log"))
    return Training(cfg, folder, p.stdout + p.stderr, p.returncode)


def results(folder: Path) -> list[dict]:
    with open(folder / "results.csv", newline="") as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


def test_train(trained, settings, record_property):
    record_property("config", trained.tag)
    record_property("check", "train")
    assert trained.returncode == 0, f"train.py exited {trained.returncode}:\n{tail(trained.log)}"
    amp = [line.strip() for line in trained.log.splitlines() if "AMP:" in line]
    record_property("amp", "; ".join(amp))
    record_property("nondeterministic", sorted({line.strip()[:300] for line in trained.log.splitlines()
                                                if "deterministic implementation" in line}))
    rows = results(trained.folder)
    losses = {k: float(v) for k, v in rows[-1].items() if "loss" in k} if rows else {}
    record_property("map50", float(rows[-1].get("metrics/mAP50(B)") or "nan") if rows else float("nan"))
    assert (trained.folder / "weights" / "best.pt").is_file()
    assert len(rows) == settings["epochs"], f"results.csv has {len(rows)} epochs, expected {settings['epochs']}"
    assert losses and all(math.isfinite(v) for v in losses.values()), f"training losses {losses}"
    assert not [s for s in DOWNLOAD_SIGNS if s in trained.log], "the training log mentions a download"
    if settings["device"] != "cpu":
        assert any(AMP_PASSED in line for line in amp), f"our AMP check did not pass or did not run: {amp}"


@pytest.mark.parametrize("half", [False, True], ids=["fp32", "half"])
def test_val(trained, settings, half, record_property):
    record_property("config", trained.tag)
    record_property("check", "val half" if half else "val fp32")
    if half and settings["device"] == "cpu":
        pytest.skip("--half needs a GPU")
    name = f"{trained.tag}-{'half' if half else 'fp32'}"
    p = script("val.py", ["--weights", trained.weights, "--data", settings["data"], "--img", settings["imgsz"],
                          "--device", settings["device"], "--project", trained.folder.parent / "val", "--name", name,
                          "--exist-ok"] + (["--half"] if half else []), trained.folder.parent / f"val-{name}.log")
    out = ran(p, "val.py")
    line = next((ln.strip() for ln in out.splitlines() if ln.strip().startswith("all ")), "")
    record_property("metrics", line)
    assert line, f"val.py printed no 'all' metrics line:\n{tail(out)}"
    numbers = [float(v) for v in line.split()[1:]]
    assert len(numbers) == 6 and all(math.isfinite(v) for v in numbers), line


def test_detect(trained, settings, media, record_property):
    record_property("config", trained.tag)
    record_property("check", "detect")
    out_dir = trained.folder.parent / "detect"
    p = script("detect.py", ["--weights", trained.weights, "--source", media, "--img", settings["imgsz"], "--device",
                             settings["device"], "--project", out_dir.parent, "--name", out_dir.name, "--exist-ok"],
               trained.folder.parent / "detect.log")
    ran(p, "detect.py")
    written = sorted(f.name for f in out_dir.iterdir() if f.is_file())
    record_property("outputs", written)
    images = sorted(f.name for f in media.iterdir() if f.suffix in {".jpg", ".png"})
    assert set(images) <= set(written), f"detect.py wrote {written}; images {images}"
    assert any(Path(n).stem == "clip" for n in written), f"detect.py wrote no video: {written}"


def test_export_onnx(trained, settings, record_property):
    import onnxruntime as ort

    from models.weights.checkpoint import load_model

    record_property("config", trained.tag)
    record_property("check", "export")
    weights, s = trained.weights, settings["imgsz"]
    p = script("export.py", ["--weights", weights, "--include", "onnx", "--imgsz", s, "--dynamic", "--device",
                             settings["device"], "--exist-ok"], trained.folder.parent / "export.log")
    ran(p, "export.py")
    onnx_file = weights.with_suffix(".onnx")
    assert onnx_file.is_file(), f"export.py wrote no {onnx_file.name}:\n{tail(p.stdout + p.stderr)}"
    cuda_ep = settings["device"] != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers()
    sess = ort.InferenceSession(str(onnx_file), providers=(["CUDAExecutionProvider"] if cuda_ep else [])
                                + ["CPUExecutionProvider"])
    record_property("providers", sess.get_providers())
    model = load_model(weights).fuse(verbose=False)  # the reference: PyTorch fp32 on the CPU
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in ((2, 3, s, s), (1, 3, max(32, s // 64 * 32), s)):  # the graph's dynamic batch and size
        x = torch.rand(shape, generator=g)
        with torch.no_grad():
            ref = model(x)
        ref = (ref[0] if isinstance(ref, (list, tuple)) else ref).numpy()
        outs = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        assert len(outs) == 1 and outs[0].shape == ref.shape, f"ONNX {[o.shape for o in outs]}, PyTorch {ref.shape}"
        diff = float(np.abs(outs[0] - ref).max())
        limit = 1e-2 + 1e-3 * float(np.abs(ref).max())  # the CUDA provider may pick TF32 or other conv algorithms
        worst = max(worst, diff)
        assert diff <= limit, f"ONNX differs from PyTorch by {diff:.3g} at {shape} (limit {limit:.3g})"
    record_property("max_abs_diff", worst)
