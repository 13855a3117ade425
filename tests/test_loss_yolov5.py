"""AnchorLoss (models/heads/loss.py) against YOLOv5's own ComputeLoss on fixed inputs.

tests/fixtures/loss_yolov5.pt holds seeded predictions, targets, anchors and hyperparameters, and the numbers
YOLOv5's ``utils/loss.py`` ComputeLoss (ultralytics/yolov5 v7.0, commit recorded in the file) gave for them,
with YOLOv5 train.py's gain scaling (box x 3/nl, cls x nc/80 x 3/nl, obj x (imgsz/640)^2 x 3/nl).
"""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

FIXTURES = Path(__file__).parent / "fixtures"


class _Head(nn.Module):
    """The attributes the anchor losses read from a head."""

    def __init__(self, case):
        super().__init__()
        self.nc, self.nl, self.na = case["nc"], case["nl"], 3
        self.register_buffer("anchors", case["anchors_grid"].clone())
        self.register_buffer("stride", case["strides"].clone())


class _Model(nn.Module):
    """A stand-in model: the loss reads model.model[-1], model.yaml['hyp'], model.args.imgsz and a parameter."""

    def __init__(self, case, hyp=None):
        super().__init__()
        self.model = nn.ModuleList([nn.Conv2d(1, 1, 1), _Head(case)])
        self.yaml = {"hyp": hyp if hyp is not None else case["hyp"]}
        self.args = SimpleNamespace(imgsz=case["imgsz"])


def batch_of(case):
    t = case["targets"]
    return {"batch_idx": t[:, 0], "cls": t[:, 1:2], "bboxes": t[:, 2:6],
            "img": torch.zeros(case["bs"], 3, case["imgsz"], case["imgsz"])}


def load_cases(name):
    data = torch.load(FIXTURES / name, weights_only=True)
    assert "@" in data["source"]  # repo@commit of the code that produced the numbers
    return data["cases"]


@pytest.mark.parametrize("case", load_cases("loss_yolov5.pt"), ids=lambda c: c["name"])
def test_anchor_loss_equals_yolov5_compute_loss(case):
    from models.heads.loss import AnchorLoss

    loss, items = AnchorLoss(_Model(case))(case["preds"], batch_of(case))
    ours = torch.stack([items["box_loss"], items["obj_loss"], items["cls_loss"]])
    torch.testing.assert_close(ours, case["items"].view(-1)[:3], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss.view(()), case["loss"].view(()), rtol=1e-5, atol=1e-7)
    assert case["items"][0] > 0.05 and case["items"][1] > 0.01  # the case has matched targets


def test_anchor_loss_changes_when_a_target_moves():
    """The fixture comparison can fail: a shifted target gives a different loss."""
    from models.heads.loss import AnchorLoss

    case = load_cases("loss_yolov5.pt")[0]
    batch = batch_of(case)
    batch["bboxes"] = batch["bboxes"].clone()
    batch["bboxes"][2:6, :2] = 1 - batch["bboxes"][2:6, :2]
    _, items = AnchorLoss(_Model(case))(case["preds"], batch)
    ours = torch.stack([items["box_loss"], items["obj_loss"], items["cls_loss"]])
    assert not torch.allclose(ours, case["items"].view(-1)[:3], rtol=1e-3, atol=0)
