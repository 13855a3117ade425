"""export.py: the three head kinds export one (B, 4 + nc, N) tensor that onnxruntime computes like PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import export
from models.weights.checkpoint import load_model
from models.yolo import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

NC = 3
HEADS = {  # config -> what its last layer is
    "yolov5n.yaml": "Detect",            # anchor-free (ultralytics' head)
    "yolov5n-anchor.yaml": "AnchorDetect",  # YOLOv5's anchor-based Detect
    "yolov7-tiny.yaml": "IDetect",        # YOLOv7
}


def save_checkpoint(cfg: str, path, half: bool = True):
    """A checkpoint written the way the trainer writes one (the model pickled, fp16 by default)."""
    torch.manual_seed(0)
    model = build_model(cfg, nc=NC)
    model.names = {i: f"class{i}" for i in range(NC)}
    with torch.no_grad():  # move the BN statistics off their defaults so fusion is exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    torch.save({"model": model.half() if half else model.float(), "ema": None, "epoch": -1, "best_fitness": None,
                "train_args": {"imgsz": 64, "data": "shapes.yaml"}, "date": "2026-01-01", "version": "8.4.190"}, path)
    return path


def torch_outputs(path_or_model, x: torch.Tensor) -> np.ndarray:
    model = path_or_model if isinstance(path_or_model, torch.nn.Module) else load_model(path_or_model).fuse(verbose=False)
    with torch.no_grad():
        y = model(x)
    return (y[0] if isinstance(y, (list, tuple)) else y).numpy()


def run_onnx(path, x: torch.Tensor) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})


@pytest.mark.parametrize("cfg", list(HEADS))
def test_onnx_export_of_every_head_kind_matches_pytorch_at_several_sizes(cfg, tmp_path):
    pytest.importorskip("onnxruntime")
    weights = save_checkpoint(cfg, tmp_path / "best.pt", half=cfg != "yolov5n-anchor.yaml")
    reference = load_model(weights)
    assert type(reference.model[-1]).__name__ == HEADS[cfg]
    reference.fuse(verbose=False)
    (onnx_file,) = export.main(export.parse_opt(["--weights", str(weights), "--include", "onnx", "--imgsz", "64",
                                                 "--dynamic"]))
    assert onnx_file == str(tmp_path / "best.onnx")
    torch.manual_seed(1)
    for shape in [(1, 3, 64, 64), (2, 3, 96, 64)]:
        x = torch.rand(shape)
        ref = torch_outputs(reference, x)
        outs = run_onnx(onnx_file, x)
        n = sum((shape[2] // s) * (shape[3] // s) for s in (8, 16, 32)) * (1 if HEADS[cfg] == "Detect" else 3)
        assert len(outs) == 1 and outs[0].shape == ref.shape == (shape[0], 4 + NC, n), (cfg, shape, outs[0].shape)
        assert np.abs(outs[0] - ref).max() <= 1e-3 + 1e-4 * np.abs(ref).max(), (cfg, shape, np.abs(outs[0] - ref).max())


def test_default_onnx_export_is_static_batch_one_and_never_replaces_an_existing_file(tmp_path):
    pytest.importorskip("onnxruntime")
    weights = save_checkpoint("yolov5n-anchor.yaml", tmp_path / "last.pt")
    (onnx_file,) = export.main(export.parse_opt(["--weights", str(weights), "--include", "onnx", "--img", "64"]))
    x = torch.rand(1, 3, 64, 64)
    np.testing.assert_allclose(run_onnx(onnx_file, x)[0], torch_outputs(weights, x), atol=1e-3, rtol=1e-4)
    import onnx

    dims = onnx.load(onnx_file).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 64, 64]
    before = (tmp_path / "last.onnx").read_bytes()
    with pytest.raises(SystemExit, match=r"last\.onnx already exists; pass --exist-ok"):
        export.main(export.parse_opt(["--weights", str(weights), "--include", "onnx", "--img", "64", "--dynamic"]))
    assert (tmp_path / "last.onnx").read_bytes() == before
    export.main(export.parse_opt(["--weights", str(weights), "--include", "onnx", "--img", "64", "--dynamic",
                                  "--exist-ok"]))
    assert (tmp_path / "last.onnx").read_bytes() != before


def test_torchscript_export_of_yolov7_matches_pytorch(tmp_path):
    weights = save_checkpoint("yolov7-tiny.yaml", tmp_path / "best.pt")
    (ts_file,) = export.main(export.parse_opt(["--weights", str(weights), "--imgsz", "64", "64"]))  # YOLOv5's default
    assert ts_file.endswith("best.torchscript")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = torch.jit.load(ts_file)(x)
    np.testing.assert_allclose(y.numpy(), torch_outputs(weights, x), atol=1e-3, rtol=1e-4)


def test_export_errors_name_the_problem(tmp_path):
    with pytest.raises(SystemExit, match="missing.pt: file not found"):
        export.main(export.parse_opt(["--weights", str(tmp_path / "missing.pt"), "--include", "onnx"]))
    with pytest.raises(SystemExit):
        export.parse_opt(["--weights", "a.pt", "--imgsz", "1", "2", "3"])
    assert export.export_format("TFLite") == "tflite" and export.export_format("onnx") == "onnx"
    assert export.export_target(tmp_path / "best.pt", "openvino") == tmp_path / "best_openvino_model"
    assert export.export_target(tmp_path / "best.pt", "engine") == tmp_path / "best.engine"


def test_a_format_whose_package_is_missing_is_named_and_the_others_still_export(tmp_path):
    try:
        import openvino  # noqa: F401

        pytest.skip("openvino is installed")
    except ImportError:
        pass
    weights = save_checkpoint("yolov5n.yaml", tmp_path / "best.pt")
    with pytest.raises(SystemExit) as e:
        export.main(export.parse_opt(["--weights", str(weights), "--include", "openvino", "torchscript",
                                      "--imgsz", "64"]))
    assert "openvino: RuntimeError: the 'openvino' package is not installed (pip install openvino)" in str(e.value)
    assert (tmp_path / "best.torchscript").is_file()
