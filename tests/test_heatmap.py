"""Heatmaps for a trained detector: `detect.py --heatmap` on an image and a video, and the maps behind the figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "data" / "images" / "shapes_7.jpg"


def run(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{args} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def weights(tiny_data, tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("runs")
    run("train.py", "--cfg", "yolov5n-se.yaml", "--data", tiny_data, "--epochs", "1", "--img", "64", "--batch-size", "8",
        "--workers", "0", "--project", str(project), "--name", "exp")
    return project / "exp" / "weights" / "best.pt"


def not_constant(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, path
    assert float(img.std()) > 1.0, f"{path.name} is a constant image"
    return img


def test_detect_heatmap_saves_gradcam_and_attention_maps_for_image_and_video(weights, tmp_path):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 64))
    from data.synthetic import make_image

    for k in range(4):
        writer.write(cv2.resize(make_image(k, 128)[0], (96, 64)))
    writer.release()
    for source in (IMAGE, video):
        run("detect.py", "--weights", str(weights), "--source", str(source), "--img", "64", "--heatmap",
            "--heatmap-every", "2", "--project", str(tmp_path / "detect"), "--name", "exp", "--exist-ok")
    maps = tmp_path / "detect" / "exp" / "heatmaps"
    names = sorted(p.name for p in maps.iterdir())
    expected = ["clip_f000000_attn_L10_SE.png", "clip_f000000_gradcam.jpg", "clip_f000002_attn_L10_SE.png",
                "clip_f000002_gradcam.jpg", "shapes_7_attn_L10_SE.png", "shapes_7_gradcam.jpg"]
    assert names == expected
    cam = not_constant(maps / "shapes_7_gradcam.jpg")
    original = cv2.imread(str(IMAGE))
    assert cam.shape == original.shape  # drawn over the image at its own size, padding removed
    assert float(np.abs(cam.astype(int) - original.astype(int)).mean()) > 5  # the map is really overlaid
    for name in expected:
        not_constant(maps / name)
    assert (tmp_path / "detect" / "exp" / "shapes_7.jpg").is_file()  # detect's own output is still there


def test_gradcam_map_itself_varies_over_the_image(weights):
    from tools import heatmap

    model = heatmap.load_model(str(weights))
    frame = cv2.imread(str(IMAGE))
    x, box = heatmap.letterbox(frame, 64)
    _, cam, caption = heatmap.gradcam_image(model, x, frame, box, 0.25, 0.45, {}, "cpu")
    assert cam.shape == frame.shape[:2]
    assert float(cam.max()) > float(cam.min()), caption
    assert "Grad-CAM" in caption


@pytest.mark.parametrize("name, spatial_how, channel_how", [
    ("SE", "derived", "gate(x)"),          # channel gate only: spatial map derived from out/in energy
    ("CoordAtt", "gates(x)", "gates(x)"),  # directional gates: both from the module
    ("CAA", "gate(x)", "gate(x)"),         # a full (C, H, W) gate
    ("CBAM", "the module's spatial", "the module's channel"),  # its two gates, separately
    ("GAM", "the module's spatial", "the module's channel"),
    ("BAM", "gate(x)", "gate(x)"),
    ("SimAM", "gate(x)", "gate(x)"),
    ("PolarizedSA_S", "the module's spatial", "the module's channel"),
    ("EffectiveSE", "derived", "the module's channel"),  # its `gate` attribute is a layer, not a gate method
    ("SGE", "the module's spatial", "derived"),
    ("TripletAttention", "gate(x)", "gate(x)"),
    ("ExternalAttention", "derived", "derived"),  # no gate: both derived from output/input energy
    ("NonLocal", "attention each key position receives", "derived"),
    ("DANet", "PAM: attention", "CAM: attention"),
    ("GCBlock", "context pooling weights", "derived"),
    ("CrissCross", "attention each position receives", "derived"),
    ("BoTMHSA", "attention each position receives", "derived"),
])
def test_attention_maps_use_the_module_gate_or_say_they_are_derived(name, spatial_how, channel_how):
    from models.registry import attention_specs
    from tools.heatmap import attention_maps

    torch.manual_seed(0)
    m = next(s for s in attention_specs() if s.name == name).cls(32).eval()
    with torch.no_grad():  # move zero-initialised (identity-at-init) modules away from the identity
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.rand(1, 32, 6, 8)
    with torch.no_grad():
        y = m(x)
    spatial, s_how, channel, c_how = attention_maps(m, x, y)
    assert spatial.shape == (6, 8) and channel.shape == (32,)
    assert s_how.startswith(spatial_how) and c_how.startswith(channel_how)
    assert np.isfinite(spatial).all() and np.isfinite(channel).all()
    assert float(np.ptp(channel)) > 0


def test_nested_attention_modules_are_found_and_mapped():
    """Attention inside C3Att bottlenecks and ResidualBlend wrappers gets its own figure, labelled by its path."""
    from models.yolo import build_model
    from tools.heatmap import attention_layers, attention_maps

    cfg = {"nc": 3, "depth_multiple": 1.0, "width_multiple": 1.0,
           "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 2, "C3Att", [16, "CBAM"]], [-1, 1, "Conv", [32, 3, 2]],
                        [-1, 1, "C3Att", [32, {"attention": "SE", "blend": True}]], [-1, 1, "SE", []],
                        [-1, 1, "Conv", [32, 3, 2]]],
           "head": [[[3, 4, 5], 1, "Detect", ["nc"]]]}
    model = build_model(cfg).eval()
    layers = attention_layers(model)
    assert [(label, type(m).__name__) for label, m in layers] == [
        ("L1.m.0.att", "CBAM"), ("L1.m.1.att", "CBAM"), ("L3.m.0.att.inner", "SE"), ("L4", "SE")]
    captured = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: captured.__setitem__(k, (i[0], o))) for k, m in layers]
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 96))
    for h in hooks:
        h.remove()
    for label, m in layers:
        x, y = captured[label]
        spatial, _, channel, _ = attention_maps(m, x, y)
        assert spatial.shape == tuple(x.shape[2:]) and channel.shape == (x.shape[1],)


def test_every_module_gives_maps_of_the_right_shape():
    from models.registry import attention_specs
    from tools.heatmap import attention_maps

    own = []
    for spec in attention_specs():
        torch.manual_seed(0)
        m = spec.cls(32).eval()
        x = torch.rand(1, 32, 6, 10)
        with torch.no_grad():
            spatial, s_how, channel, c_how = attention_maps(m, x, m(x))
        assert spatial.shape == (6, 10) and channel.shape == (32,), spec.name
        assert np.isfinite(spatial).all() and np.isfinite(channel).all(), spec.name
        own += [spec.name] if not (s_how.startswith("derived") and c_how.startswith("derived")) else []
    assert len(own) >= 23, own  # modules whose figures show their own gates or attention


@pytest.mark.parametrize("name", ["CrissCross", "BoTMHSA", "DANet", "GCBlock"])
def test_received_attention_is_a_distribution_over_positions(name):
    """Mean over queries of rows that sum to 1: the map over key positions sums to 1."""
    from models.registry import attention_specs

    torch.manual_seed(0)
    m = next(s for s in attention_specs() if s.name == name).cls(16).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
        maps = m.attention_maps(torch.randn(2, 16, 5, 7))
    spatial = maps["spatial"]
    assert spatial.shape == (2, 5, 7) and (spatial >= 0).all()
    torch.testing.assert_close(spatial.sum((1, 2)), torch.ones(2), atol=1e-5, rtol=0)
