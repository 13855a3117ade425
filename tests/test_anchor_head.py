"""Classic anchor-based heads: YOLOv5 YAMLs pasted unchanged, YOLOv5's loss, eval/export contract, RepConv, AutoAnchor."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models.heads.anchor import AnchorDetect, AnchorHead, IDetect
from models.parse.read import CONFIG_DIR as ROOT_CONFIGS
from models.parse.read import load_config
from models.registry import ConfigError
from models.yolo import build_model

# YOLOv5 v6.0 models/yolov5s.yaml as users paste it (flow style, depth/width multiples, anchors, Detect [nc, anchors])
YOLOV5S_V6_YAML = """
nc: 80  # number of classes
depth_multiple: 0.33  # model depth multiple
width_multiple: 0.50  # layer channel multiple
anchors:
  - [10,13, 16,30, 33,23]  # P3/8
  - [30,61, 62,45, 59,119]  # P4/16
  - [116,90, 156,198, 373,326]  # P5/32
backbone:
  [[-1, 1, Conv, [64, 6, 2, 2]],  # 0-P1/2
   [-1, 1, Conv, [128, 3, 2]],  # 1-P2/4
   [-1, 3, C3, [128]],
   [-1, 1, Conv, [256, 3, 2]],  # 3-P3/8
   [-1, 6, C3, [256]],
   [-1, 1, Conv, [512, 3, 2]],  # 5-P4/16
   [-1, 9, C3, [512]],
   [-1, 1, Conv, [1024, 3, 2]],  # 7-P5/32
   [-1, 3, C3, [1024]],
   [-1, 1, SPPF, [1024, 5]],  # 9
  ]
head:
  [[-1, 1, Conv, [512, 1, 1]],
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 6], 1, Concat, [1]],
   [-1, 3, C3, [512, False]],  # 13
   [-1, 1, Conv, [256, 1, 1]],
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 4], 1, Concat, [1]],
   [-1, 3, C3, [256, False]],  # 17 (P3/8-small)
   [-1, 1, Conv, [256, 3, 2]],
   [[-1, 14], 1, Concat, [1]],
   [-1, 3, C3, [512, False]],  # 20 (P4/16-medium)
   [-1, 1, Conv, [512, 3, 2]],
   [[-1, 10], 1, Concat, [1]],
   [-1, 3, C3, [1024, False]],  # 23 (P5/32-large)
   [[17, 20, 23], 1, Detect, [nc, anchors]],  # Detect(P3, P4, P5)
  ]
"""


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def with_args(model, imgsz=64):
    model.args = SimpleNamespace(imgsz=imgsz)  # what the ultralytics trainer attaches before the first loss call
    return model


def toy_batch(n_img=2, imgsz=64):
    return {
        "img": torch.rand(n_img, 3, imgsz, imgsz),
        "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
        "cls": torch.tensor([[0.0], [3.0], [1.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.2, 0.7, 0.1, 0.1], [0.6, 0.4, 0.5, 0.4]]),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Building


def test_pasted_yolov5s_v6_yaml_builds_the_classic_head_with_yolov5s_param_count_and_gflops(tmp_path):
    from ultralytics.utils.torch_utils import get_flops

    f = tmp_path / "yolov5s.yaml"
    f.write_text(YOLOV5S_V6_YAML)
    model = build_model(str(f))
    assert isinstance(model.model[-1], AnchorDetect)
    assert n_params(model) == 7_235_389  # YOLOv5 v6.0's own model summary
    assert round(get_flops(model, 640), 1) == 16.6
    assert model.stride.tolist() == [8.0, 16.0, 32.0]


def test_shipped_anchor_config_resolves_by_scale_and_matches_the_pasted_yaml():
    s = build_model("yolov5s-anchor.yaml")
    assert n_params(s) == 7_235_389
    assert n_params(build_model("yolov5n-anchor.yaml")) < n_params(s)
    head = s.model[-1]
    assert (head.na, head.nl, head.no) == (3, 3, 85)
    # anchors are kept in stride units, as YOLOv5 keeps them
    torch.testing.assert_close(head.anchors[0, 0] * 8, torch.tensor([10.0, 13.0]))
    torch.testing.assert_close(head.anchors[2, 2] * 32, torch.tensor([373.0, 326.0]))


def test_detect_row_without_anchors_stays_the_anchor_free_ultralytics_head():
    from ultralytics.nn.modules import Detect

    model = build_model("yolov5s.yaml")
    assert type(model.model[-1]) is Detect and n_params(model) == 9_153_152


def test_anchor_row_without_anchors_key_or_with_wrong_rows_fails_clearly():
    d = load_config("yolov5n-anchor.yaml")
    del d["anchors"]
    with pytest.raises(ConfigError, match=r"layer 24 \(Detect\).*no 'anchors:' key"):
        build_model(d)
    d = load_config("yolov5n-anchor.yaml")
    d["anchors"] = d["anchors"][:2]
    with pytest.raises(ConfigError, match="2 rows but the head takes 3 input levels"):
        build_model(d)
    d = load_config("yolov5n-anchor.yaml")
    d["hyp"] = {"objj": 1.0}
    with pytest.raises(ConfigError, match=r"hyp: unknown key\(s\) \['objj'\]"):
        build_model(d)


def test_activation_rows_of_yolov7_tiny_are_whitelisted_constructors_never_code(tmp_path):
    model = build_model("yolov7-tiny.yaml")
    act = model.model[0].act
    assert isinstance(act, torch.nn.LeakyReLU) and act.negative_slope == 0.1
    assert model.model[0].conv.dilation == (1, 1)  # the activation went to 'act', not to ultralytics' dilation slot
    src = Path(load_config("yolov7-tiny.yaml")["yaml_file"]).read_text()
    marker = tmp_path / "pwned"
    for bad in (f"os.system('touch {marker}')", "nn.LeakyReLU(__import__('os'))", "nn.Module()"):
        f = tmp_path / "bad.yaml"
        row0 = "[[-1, 1, Conv, [32, 3, 2, None, 1, nn.LeakyReLU(0.1)]]"
        f.write_text(src.replace(row0, row0.replace("nn.LeakyReLU(0.1)", bad)))
        with pytest.raises(ConfigError, match="layer 0 \\(Conv\\)"):
            build_model(str(f))
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------------------------------
# Outputs: what the ultralytics validator, predictor and exporter read


def test_eval_output_is_decoded_xywh_pixels_with_objectness_folded_into_class_scores():
    model = build_model("yolov5n-anchor.yaml", nc=3).eval()
    head = model.model[-1]
    with torch.no_grad():  # constant predictions: every cell says x, y, w, h at sigmoid 0.5, obj 0.8, classes 0.5
        for conv in head.m:
            conv.weight.zero_()
            bias = conv.bias.view(head.na, head.no)
            bias.zero_()
            bias[:, 4] = math.log(0.8 / 0.2)
        y, raw = model(torch.rand(2, 3, 64, 96))
    n = head.na * sum((64 // s) * (96 // s) for s in (8, 16, 32))
    assert y.shape == (2, 4 + 3, n)  # (B, 4 + nc, N): no objectness channel, N != 6
    assert [tuple(r.shape) for r in raw] == [(2, 3, 8, 12, 8), (2, 3, 4, 6, 8), (2, 3, 2, 3, 8)]
    first = y[0, :, 0]  # level P3, anchor 0, cell (0, 0): centre of the cell, the anchor's size in pixels
    torch.testing.assert_close(first[:4], torch.tensor([4.0, 4.0, 10.0, 13.0]))
    torch.testing.assert_close(y[:, 4:], torch.full_like(y[:, 4:], 0.4))  # 0.8 objectness x 0.5 class
    last = y[0, :4, -1]  # level P5, anchor 2, last cell (1, 2)
    torch.testing.assert_close(last, torch.tensor([2.5 * 32, 1.5 * 32, 373.0, 326.0]))


def test_single_class_score_is_the_objectness():
    model = build_model("yolov5n-anchor.yaml", nc=1).eval()
    with torch.no_grad():
        y, raw = model(torch.rand(1, 3, 64, 64))
    assert y.shape[1] == 5  # x, y, w, h, one class score
    torch.testing.assert_close(y[0, 4, 0], raw[0][0, 0, 0, 0, 4].sigmoid())  # no untrained class logit mixed in


def test_tracing_for_export_returns_one_tensor():
    model = build_model("yolov5n-anchor.yaml", nc=2).eval()
    x = torch.rand(1, 3, 64, 64)
    traced = torch.jit.trace(model, x, strict=False)
    out = traced(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 6, 252)
    torch.testing.assert_close(out, model(x)[0])


def test_onnx_export_through_ultralytics_matches_pytorch(tmp_path, monkeypatch):
    import onnxruntime as ort
    from ultralytics.engine.exporter import Exporter

    monkeypatch.chdir(tmp_path)  # a model without a checkpoint exports next to the working directory
    model = build_model("yolov5n-anchor.yaml", nc=2).eval()
    model.task = "detect"  # what ultralytics.YOLO sets on a loaded checkpoint (the end-to-end test exports one)
    f = Exporter(overrides={"format": "onnx", "imgsz": 64, "batch": 1, "simplify": False, "device": "cpu"})(model=model)
    session = ort.InferenceSession(f)
    assert [o.name for o in session.get_outputs()] == ["output0"]
    x = torch.rand(1, 3, 64, 64)
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(onnx_out), model.float()(x)[0], atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------------------------------------------------
# Loss


def test_yolov5_loss_plugs_into_the_ultralytics_model_loss_hook():
    model = with_args(build_model("yolov5n-anchor.yaml", nc=5)).train()
    loss, items = model.loss(toy_batch())
    assert list(items) == ["box_loss", "obj_loss", "cls_loss"]  # the trainer's loss names
    assert loss.shape == () and loss.requires_grad and all(v > 0 for v in items.values())
    loss.backward()
    assert model.model[-1].m[0].weight.grad.abs().sum() > 0
    # the validator calls model.loss(batch, preds) with eval-mode outputs during training
    model.eval()
    with torch.no_grad():
        preds = model(toy_batch()["img"])
        _, eval_items = model.loss(toy_batch(), preds)
    assert list(eval_items) == ["box_loss", "obj_loss", "cls_loss"]


def test_loss_gains_come_from_the_model_yaml_hyp_with_scratch_low_defaults():
    from models.heads.loss import HYP_SCRATCH_LOW, AnchorLoss

    model = with_args(build_model("yolov5n-anchor.yaml", nc=5), imgsz=320)
    loss = AnchorLoss(model)
    assert HYP_SCRATCH_LOW["box"] == 0.05 and HYP_SCRATCH_LOW["anchor_t"] == 4.0
    assert loss.box_gain == pytest.approx(0.05) and loss.cls_gain == pytest.approx(0.5 * 5 / 80)
    assert loss.obj_gain == pytest.approx((320 / 640) ** 2) and loss.balance == (4.0, 1.0, 0.4)
    model.yaml["hyp"] = {"obj": 0.0, "box": 0.1}
    model.criterion = None
    _, items = model.train().loss(toy_batch())
    assert items["obj_loss"] == 0 and items["box_loss"] > 0


def test_assignment_uses_the_anchor_ratio_threshold_and_the_two_nearest_neighbour_cells():
    from models.heads.loss import AnchorLoss

    model = with_args(build_model("yolov5n-anchor.yaml", nc=2))
    loss = AnchorLoss(model)
    anchors_p3 = model.model[-1].anchors[0] * 8  # pixels: (10,13), (16,30), (33,23)
    # one target on an 8x8 P3 grid (64 px image), centre at cell coordinates (3.3, 5.8), 20x20 px
    target = torch.tensor([[0.0, 1.0, 3.3 / 8, 5.8 / 8, 20 / 64, 20 / 64]])
    img, a, gj, gi, tbox, tcls, anchors = loss.assign(0, torch.Size((1, 3, 8, 8, 7)), target)
    ratio = torch.tensor([20.0, 20.0]) / anchors_p3
    expected_anchors = {k for k in range(3) if torch.max(ratio[k], 1 / ratio[k]).max() < 4.0}
    assert set(a.tolist()) == expected_anchors == {0, 1, 2}
    cells = {(int(x), int(y)) for x, y in zip(gi, gj)}
    assert cells == {(3, 5), (2, 5), (3, 6)}  # own cell, left neighbour (x frac 0.3), lower neighbour (y frac 0.8)
    assert len(a) == 3 * 3 and set(tcls.tolist()) == {1} and set(img.tolist()) == {0}
    assert ((tbox[:, :2] > -0.5) & (tbox[:, :2] < 1.5)).all()  # centre offsets stay in YOLOv5's (-0.5, 1.5) range
    # a 140x140 px object (320 px image, 40x40 P3 grid) is over 4x every P3 anchor in some side: not on P3
    big = torch.tensor([[0.0, 0.0, 0.5, 0.5, 140 / 320, 140 / 320]])
    assert loss.assign(0, torch.Size((1, 3, 40, 40, 7)), big)[0].numel() == 0
    assert loss.assign(2, torch.Size((1, 3, 10, 10, 7)), big)[0].numel() > 0  # P5 anchors (116,90)... take it


# ----------------------------------------------------------------------------------------------------------------------
# RepConv and IDetect fusion (deploy)


def _randomise_batchnorm(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def test_yolov7_repconv_and_idetect_fuse_to_single_convs_with_the_same_outputs():
    from ultralytics.nn.modules import RepConv

    model = build_model("yolov7.yaml", nc=2).eval()
    _randomise_batchnorm(model)
    reps = [m for m in model.modules() if isinstance(m, RepConv)]
    assert len(reps) == 3 and all(hasattr(m, "conv1") and hasattr(m, "conv2") for m in reps)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        feats = torch.rand(1, reps[0].c1, 8, 8)
        before_rep = reps[0](feats)
        _, raw_before = model(x)
        model.fuse(verbose=False)
        after_rep = reps[0](feats)
        _, raw_after = model(x)
    assert all(not hasattr(m, "conv1") and isinstance(m.conv, torch.nn.Conv2d) for m in reps)
    head = model.model[-1]
    assert isinstance(head, IDetect) and all(isinstance(m, torch.nn.Identity) for m in (*head.ia, *head.im))
    assert (after_rep - before_rep).abs().max() < 1e-4
    for a, b in zip(raw_before, raw_after):
        assert (a - b).abs().max() < 1e-4


# ----------------------------------------------------------------------------------------------------------------------
# AutoAnchor


def _labels_of_wide_boxes(n=40, seed=0):
    """Dataset-style labels (ultralytics dict form): 320x320 images with wide boxes of 100-200 x 20-40 px."""
    rng = np.random.default_rng(seed)
    labels = []
    for _ in range(n):
        w, h = rng.uniform(100, 200) / 320, rng.uniform(20, 40) / 320
        labels.append({"shape": (320, 320), "cls": np.zeros((1, 1)),
                       "bboxes": np.array([[0.5, 0.5, w, h]], dtype=np.float32)})
    return labels


def test_autoanchor_evolves_badly_sized_anchors_and_reports_both_bprs():
    from models.heads.autoanchor import anchor_fit, check_anchors

    d = load_config("yolov5n-anchor.yaml")
    d["anchors"] = [[4, 4, 5, 5, 6, 6]] * 3  # tiny squares: nothing like the wide boxes of the data
    head = build_model(d, nc=1).model[-1]
    labels = _labels_of_wide_boxes()
    result = check_anchors(head, labels, imgsz=320)
    assert result.bpr_before < 0.5
    assert result.replaced and result.bpr_after > 0.98 and result.bpr_after > result.bpr_before
    pixels = (head.anchors * head.stride.view(-1, 1, 1)).view(-1, 2).numpy()
    assert anchor_fit(pixels, np.array([[150.0, 30.0]]))[0] == 1.0
    assert (pixels[:, 0] > pixels[:, 1]).mean() > 0.5  # the new anchors are wide, like the data


def test_autoanchor_keeps_anchors_that_fit():
    from models.heads.autoanchor import check_anchors

    head = build_model("yolov5n-anchor.yaml", nc=1).model[-1]
    before = head.anchors.clone()
    labels = [{"shape": (320, 320), "bboxes": np.array([[0.5, 0.5, 0.1, 0.12], [0.3, 0.3, 0.4, 0.3]])}] * 5
    result = check_anchors(head, labels, imgsz=320)
    assert result.bpr_before > 0.98 and result.bpr_after is None and not result.replaced
    assert torch.equal(head.anchors, before)


def test_autoanchor_runs_from_the_trainer_hook_and_updates_the_ema_copy():
    from copy import deepcopy

    from models.heads.autoanchor import autoanchor_before_training

    d = load_config("yolov5n-anchor.yaml")
    d["anchors"] = [[4, 4, 5, 5, 6, 6]] * 3
    model = build_model(d, nc=1)
    ema = SimpleNamespace(ema=deepcopy(model))
    trainer = SimpleNamespace(model=model, ema=ema, args=SimpleNamespace(resume=False, imgsz=320),
                              train_loader=SimpleNamespace(dataset=SimpleNamespace(labels=_labels_of_wide_boxes())))
    autoanchor_before_training(trainer)
    assert trainer.autoanchor.replaced
    assert torch.equal(ema.ema.model[-1].anchors, model.model[-1].anchors)
    # resumed runs keep the checkpoint's anchors; anchor-free heads are left alone
    resumed = SimpleNamespace(**{**vars(trainer), "args": SimpleNamespace(resume="last.pt", imgsz=320)})
    del resumed.autoanchor
    autoanchor_before_training(resumed)
    assert not hasattr(resumed, "autoanchor")
    free = SimpleNamespace(**{**vars(resumed), "model": build_model("yolov5n.yaml"), "args": trainer.args})
    autoanchor_before_training(free)
    assert not hasattr(free, "autoanchor")


def test_anchor_count_in_yaml_means_anchors_computed_from_data():
    from models.heads.autoanchor import check_anchors

    d = load_config("yolov5n-anchor.yaml")
    d["anchors"] = 2
    head = build_model(d, nc=1).model[-1]
    assert isinstance(head, AnchorHead) and head.na == 2 and head.anchors_from_data
    result = check_anchors(head, _labels_of_wide_boxes(), imgsz=320, force=head.anchors_from_data)
    assert result.replaced and not head.anchors_from_data and result.bpr_after > 0.98


# ----------------------------------------------------------------------------------------------------------------------
# Training settings: --hyp loss keys and the AutoAnchor switch travel in the run's model YAML


def test_hyp_file_loss_keys_reach_the_run_model_yaml_only_in_yolov5_form(tmp_path):
    from models.engine.run_yaml import write_run_yaml
    from train import load_hyp

    v5 = tmp_path / "v5.yaml"
    v5.write_text("lr0: 0.02\nbox: 0.04\nobj: 0.7\ncls: 0.3\nanchor_t: 3.0\nanchors: 2\n")
    overrides, loss = load_hyp(str(v5))
    assert overrides == {"lr0": 0.02} and loss == {"box": 0.04, "obj": 0.7, "cls": 0.3, "anchor_t": 3.0, "anchors": 2}
    ultra = tmp_path / "ultra.yaml"
    ultra.write_text("lr0: 0.02\nbox: 7.5\ncls: 0.5\n")  # ultralytics form: its gains are not YOLOv5's
    assert load_hyp(str(ultra)) == ({"lr0": 0.02, "box": 7.5, "cls": 0.5}, {})

    path = write_run_yaml(tmp_path / "exp", cfg=str(ROOT_CONFIGS / "yolov5s-anchor.yaml"), hyp=loss, autoanchor=False)
    assert Path(path).name == "yolov5s-anchor.yaml" and (tmp_path / "exp" / "yolov5s-anchor.yaml").read_text() == Path(path).read_text()
    model = build_model(path)
    head = model.model[-1]
    assert model.model[0].conv.out_channels == 32  # scale s kept: 64 x width 0.5
    assert head.na == 2 and head.anchors_from_data
    assert model.yaml["hyp"] == {"box": 0.04, "obj": 0.7, "cls": 0.3, "anchor_t": 3.0} and model.yaml["autoanchor"] is False
    with pytest.raises(ValueError, match="hyp: obj must be a non-negative number"):
        write_run_yaml(tmp_path / "bad", cfg="yolov5n-anchor.yaml", hyp={"obj": "high"})
