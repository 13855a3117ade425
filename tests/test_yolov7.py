"""YOLOv7 family from YOLOv7-layout YAMLs: exact parameter counts, ELAN wiring, every config trains a step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from ultralytics.nn.modules import Detect

from models.heads.anchor import IDetect
from models.yolo import build_model

V7_ANCHOR = ["yolov7-tiny", "yolov7", "yolov7x"]
V7_ANCHOR_FREE = ["yolov7-tiny-af", "yolov7-af", "yolov7x-af"]
V7_ATTENTION = ["yolov7-tiny-cbam", "yolov7-cbam", "yolov7-ca", "yolov7-simam", "yolov5s-cbam-anchor"]


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def implicit_params(model) -> int:
    head = model.model[-1]
    return n_params(head.ia) + n_params(head.im)


def test_yolov7_at_one_class_has_yolov7s_training_parameter_count():
    model = build_model("yolov7.yaml", nc=1)
    assert isinstance(model.model[-1], IDetect)
    assert n_params(model) == 37_196_556


def test_yolov7_family_without_implicit_layers_matches_yolov7s_deploy_summaries():
    # YOLOv7's deploy configs use Detect (no ImplicitA/M): yolov7 37,620,125 at nc=80; yolov7-tiny 6,022,129 at nc=4
    v7 = build_model("yolov7.yaml", nc=80)
    assert n_params(v7) - implicit_params(v7) == 37_620_125
    tiny = build_model("yolov7-tiny.yaml", nc=4)
    assert n_params(tiny) - implicit_params(tiny) == 6_022_129


def test_elan_rows_join_relative_and_absolute_from_indices():
    model = build_model("yolov7.yaml", nc=1)
    layers = model.model
    assert layers[10].f == [-1, -3, -5, -6] and layers[11].conv.in_channels == 4 * 64  # ELAN concat of 4 branches
    assert layers[80].f == [-1, -3, 63] and layers[81].conv.in_channels == 128 + 128 + 256  # absolute index 63
    assert layers[105].f == [102, 103, 104]
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert [type(m).__name__ for m in layers[102:105]] == ["RepConv"] * 3
    assert type(layers[51]).__name__ == "SPPCSPC" and type(layers[12]).__name__ == "MP"


def test_yolov7_tiny_builds_its_spp_from_sp_rows_with_leaky_relu_everywhere():
    model = build_model("yolov7-tiny.yaml", nc=1)
    assert [type(model.model[i]).__name__ for i in (31, 32, 33)] == ["SP"] * 3
    acts = {type(m.act) for m in model.modules() if hasattr(m, "act") and hasattr(m, "conv")}
    assert acts == {torch.nn.LeakyReLU}


def test_attention_variants_sit_after_sppcspc_or_at_the_neck_outputs():
    cbam = build_model("yolov7-cbam.yaml", nc=1).model
    assert cbam[52].type == "CBAM" and type(cbam[51]).__name__ == "SPPCSPC"
    assert 52 in cbam[94].f  # the P5 concat of the PAN path reads the attended features
    assert build_model("yolov7-ca.yaml", nc=1).model[52].type == "CoordAtt"
    tiny = build_model("yolov7-tiny-cbam.yaml", nc=1).model
    assert tiny[38].type == "CBAM" and 38 in tiny[68].f
    simam = build_model("yolov7-simam.yaml", nc=1).model
    assert [simam[i].type for i in (105, 106, 107)] == ["SimAM"] * 3 and simam[108].f == [105, 106, 107]
    v5 = build_model("yolov5s-cbam-anchor.yaml", nc=1).model
    assert v5[10].type == "CBAM" and type(v5[-1]).__name__ == "AnchorDetect"


@pytest.mark.parametrize("name", V7_ANCHOR + V7_ANCHOR_FREE + V7_ATTENTION)
def test_every_config_builds_and_trains_one_step_at_small_size(name):
    torch.manual_seed(0)
    model = build_model(f"{name}.yaml", nc=2).train()
    anchor_based = name not in V7_ANCHOR_FREE
    assert isinstance(model.model[-1], Detect) != anchor_based
    model.args = SimpleNamespace(imgsz=64, box=7.5, cls=0.5, dfl=1.5)  # the trainer's args (ultralytics gains too)
    batch = {
        "img": torch.rand(2, 3, 64, 64),
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[0.0], [1.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.4], [0.3, 0.6, 0.2, 0.2]]),
    }
    loss, items = model.loss(batch)
    loss = loss.sum()  # as the trainer does (ultralytics' criterion returns one value per loss item)
    assert torch.isfinite(loss)
    assert ("obj_loss" in items) == anchor_based  # YOLOv5's loss vs ultralytics' (box, cls, dfl)
    loss.backward()
    grads = [p.grad for p in model.model[0].parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
