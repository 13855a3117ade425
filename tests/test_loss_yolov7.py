"""YOLOv7's losses: ours (models/heads/loss.py, models/heads/loss_ota.py) against YOLOv7's own on fixed inputs.

tests/fixtures/loss_yolov7.pt holds seeded predictions (lead maps, then auxiliary maps for the P6 cases),
targets, anchors and hyperparameters, and what YOLOv7's ``utils/loss.py`` (WongKinYiu/yolov7, commit recorded
in the file) ComputeLoss, ComputeLossOTA and ComputeLossAuxOTA returned for them, with YOLOv7 train.py's gain
scaling. Three images of 64 px, the last one without targets; one target centre on the right edge.
"""

import pytest
import torch

from tests.test_loss_yolov5 import _Model, batch_of, load_cases

CASES = load_cases("loss_yolov7.pt")


def criterion(case, model):
    from models.heads.loss import AnchorLoss
    from models.heads.loss_ota import AuxOTALoss, OTALoss

    return {"ComputeLoss": AnchorLoss, "ComputeLossOTA": OTALoss, "ComputeLossAuxOTA": AuxOTALoss}[case["loss_class"]](model)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_loss_equals_yolov7(case):
    loss, items = criterion(case, _Model(case))(case["preds"], batch_of(case))
    ours = torch.stack([items["box_loss"], items["obj_loss"], items["cls_loss"]])
    torch.testing.assert_close(ours, case["items"][:3], rtol=2e-5, atol=1e-7)
    torch.testing.assert_close(loss.view(()), case["loss"].view(()), rtol=2e-5, atol=1e-7)


def test_ota_assigns_differently_from_yolov5():
    """On the same inputs the OTA loss is not YOLOv5's (the comparison above would catch a silent fallback)."""
    from models.heads.loss import AnchorLoss
    from models.heads.loss_ota import OTALoss

    case = next(c for c in CASES if c["name"] == "ComputeLossOTA-nc3")
    model = _Model(case)
    _, ota = OTALoss(model)(case["preds"], batch_of(case))
    _, v5 = AnchorLoss(model)(case["preds"], batch_of(case))
    assert abs(float(ota["box_loss"]) - float(v5["box_loss"])) > 1e-3


def test_aux_loss_on_eval_outputs_is_the_lead_part():
    """The validator passes eval-mode outputs (decoded, lead maps): the loss is then the lead terms alone."""
    from models.heads.loss_ota import AuxOTALoss

    case = next(c for c in CASES if c["loss_class"] == "ComputeLossAuxOTA")
    model = _Model(case)
    lead = case["preds"][:4]
    _, full = AuxOTALoss(model)(case["preds"], batch_of(case))
    _, lead_only = AuxOTALoss(model)((None, lead), batch_of(case))
    assert 0 < float(lead_only["obj_loss"]) < float(full["obj_loss"])


def test_ota_is_selected_by_the_hyp_key_and_rejects_other_values():
    from models.heads.loss import loss_hyp

    assert loss_hyp({"hyp": {"loss_ota": 1}})["loss_ota"] == 1
    assert loss_hyp({})["loss_ota"] == 0
    with pytest.raises(ValueError, match="loss_ota"):
        loss_hyp({"hyp": {"loss_ota": 2}})


def test_a_yolov7_hyp_file_switches_train_py_to_ota(tmp_path):
    """``--hyp`` with YOLOv7's ``loss_ota: 1`` reaches the run's model YAML, and the model then trains with OTA."""
    from types import SimpleNamespace

    from models.heads.loss_ota import OTALoss
    from models.engine.run_yaml import write_run_yaml
    from models.yolo import build_model
    from train import load_hyp

    hyp = tmp_path / "hyp.scratch.p5.yaml"
    hyp.write_text("lr0: 0.01\nbox: 0.05\ncls: 0.3\nobj: 0.7\nanchor_t: 4.0\nloss_ota: 1\n")
    overrides, loss = load_hyp(str(hyp))
    assert loss["loss_ota"] == 1 and "loss_ota" not in overrides
    model = build_model(write_run_yaml(tmp_path / "exp", cfg="yolov7-tiny.yaml", hyp=loss), nc=2)
    model.args = SimpleNamespace(imgsz=64)
    assert model.yaml["hyp"]["loss_ota"] == 1 and type(model.init_criterion()) is OTALoss
