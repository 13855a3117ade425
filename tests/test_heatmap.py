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


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained detector with two attention layers (CBAM: its own gates; ExternalAttention: derived maps), saved
    the way ultralytics' trainer saves checkpoints."""
    from models.yolo import build_model

    cfg = {"nc": 2, "depth_multiple": 1.0, "width_multiple": 1.0,
           "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "CBAM", []],
                        [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "ExternalAttention", []], [-1, 1, "Conv", [32, 3, 2]]],
           "head": [[[2, 4, 5], 1, "Detect", ["nc"]]]}
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    model.names = {0: "circle", 1: "star"}
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"model": model, "ema": None, "train_args": {"imgsz": 64}}, path)
    return path


def test_heatmap_cli_writes_gradcam_and_non_constant_maps_for_every_attention_layer(tiny_checkpoint, tmp_path,
                                                                                      monkeypatch):
    from tools import heatmap

    drawn = {}
    figure = heatmap.attention_figure

    def keep_maps(path, frame, spatial, s_how, channel, c_how, title):
        drawn[path.name] = (spatial, s_how, channel, c_how)
        figure(path, frame, spatial, s_how, channel, c_how, title)

    monkeypatch.setattr(heatmap, "attention_figure", keep_maps)
    written = heatmap.main(heatmap.parse_opt(["--weights", str(tiny_checkpoint), "--source", str(IMAGE), "--img", "64",
                                              "--device", "cpu", "--project", str(tmp_path), "--name", "exp"]))
    out = tmp_path / "exp" / "heatmaps"
    expected = ["shapes_7_attn_L2_CBAM.png", "shapes_7_attn_L4_ExternalAttention.png", "shapes_7_gradcam.jpg"]
    assert sorted(p.name for p in out.iterdir()) == expected
    assert sorted(p.name for p in written) == expected
    for name in expected:
        not_constant(out / name)
    frame = cv2.imread(str(IMAGE))
    for name, (spatial, s_how, channel, c_how) in drawn.items():
        assert spatial.shape == frame.shape[:2], name  # drawn over the image at its own size
        assert float(np.ptp(spatial)) > 0 and float(np.ptp(channel)) > 0, f"{name}: constant map ({s_how}; {c_how})"
    cbam, external = drawn["shapes_7_attn_L2_CBAM.png"], drawn["shapes_7_attn_L4_ExternalAttention.png"]
    assert cbam[1] == "spatial gate (of the channel-refined map)" and cbam[3] == "channel gate"
    assert cbam[2].shape == (32,) and float(cbam[2].min()) > 0 and float(cbam[2].max()) < 1  # sigmoid gate values
    assert external[1].startswith("derived") and external[3].startswith("derived")


def test_gradcam_map_itself_varies_over_the_image(weights):
    from tools import heatmap

    model = heatmap.load_model(str(weights))
    frame = cv2.imread(str(IMAGE))
    x, box = heatmap.letterbox(frame, 64)
    _, cam, caption = heatmap.gradcam_image(model, x, frame, box, 0.25, 0.45, {})
    assert cam.shape == frame.shape[:2]
    assert float(cam.max()) > float(cam.min()), caption
    assert "Grad-CAM" in caption


@pytest.mark.parametrize("name, spatial_how, channel_how", [
    ("SE", "derived", "channel gate"),  # channel gate only: spatial map derived from out/in energy
    ("CoordAtt", "product of the H and W gates, mean over channels", "product of the H and W gates, mean over pixels"),
    ("CAA", "context anchor gate, mean over channels", "context anchor gate, mean over pixels"),  # a (C, H, W) gate
    ("CBAM", "spatial gate", "channel gate"),  # its two gates, separately
    ("GAM", "spatial gate, mean over channels", "channel gate, mean over pixels"),
    ("BAM", "gate M = sigmoid(M_c + M_s), mean over channels", "gate M = sigmoid(M_c + M_s), mean over pixels"),
    ("SimAM", "energy gate", "energy gate"),
    ("PolarizedSA_S", "spatial gate A_sp", "channel gate A_ch"),
    ("EffectiveSE", "derived", "channel gate"),  # its gate is computed in a helper; no attribute named gate
    ("SGE", "spatial gate, mean over groups", "derived"),
    ("TripletAttention", "mean of the branch gates", "mean of the branch gates"),
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


def test_heatmaps_read_a_module_only_through_the_protocol():
    """A user's module (unregistered) is found because it subclasses AttentionModule; its maps are what its
    attention_maps returns, and a method that merely looks like a gate is not probed for."""
    from models.registry.protocol import AttentionModule
    from tools.heatmap import attention_layers, attention_maps

    class Scaled(AttentionModule):
        def __init__(self, c1):
            super().__init__()
            self.w = torch.nn.Parameter(torch.linspace(0.5, 1.5, c1))

        def gate(self, x):  # not part of the protocol: heatmaps must not call it
            raise AssertionError("heatmaps called gate(x)")

        def forward(self, x):
            return x * self.w.view(1, -1, 1, 1)

    class Channelled(Scaled):
        def attention_maps(self, x):
            return {"channel": self.w.expand(x.shape[0], -1), "channel_how": "its weights"}

    host = torch.nn.Module()
    host.model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), Scaled(8), torch.nn.Sequential(Channelled(8)))
    layers = attention_layers(host)
    assert [(label, type(m).__name__) for label, m in layers] == [("L1", "Scaled"), ("L2.0", "Channelled")]
    x = torch.rand(1, 8, 4, 5)
    _, s_how, channel, c_how = attention_maps(layers[0][1], x, layers[0][1](x))
    assert s_how.startswith("derived") and c_how.startswith("derived")
    np.testing.assert_allclose(channel, np.linspace(0.5, 1.5, 8), rtol=1e-5)  # mean|out| / mean|in| = w
    _, s_how, channel, c_how = attention_maps(layers[1][1], x, layers[1][1](x))
    assert s_how.startswith("derived") and c_how == "its weights"
    np.testing.assert_allclose(channel, np.linspace(0.5, 1.5, 8), rtol=1e-6)


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
