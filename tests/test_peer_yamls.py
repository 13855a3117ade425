"""YOLOv5 / YOLOv7 YAMLs build exactly as the peers' own code builds them.

The YAMLs in tests/fixtures/peer_yamls/ are this project's, written in each peer's format. Their parameter
counts and their eval-mode outputs under deterministic weights (tests/peer_weights.py) were produced by the
peers' own code (ultralytics/yolov5 v3.0, v3.1, v5.0, v7.0; WongKinYiu/yolov7; repo@commit in each entry of
tests/fixtures/peer_outputs.pt). Here our parser builds the same YAMLs, gets the same weights by state-dict key,
and must give the same numbers.
"""

from pathlib import Path

import pytest
import torch

from tests.peer_weights import fill, probe_image

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "fixtures"
YAMLS = FIXTURES / "peer_yamls"
ENTRIES = torch.load(FIXTURES / "peer_outputs.pt", weights_only=True)["entries"]
LEAKY = "nn.LeakyReLU(0.1)"
# what the YAML files of those releases cannot say: the code's activations (models/layers/yolov5.py)
RELEASE_KEYS = {"v3.0": {"activation": LEAKY, "csp_activation": LEAKY},
                "v3.1": {"activation": "nn.Hardswish()", "csp_activation": LEAKY},
                "v5.0": {"csp_activation": LEAKY}}


def release(entry) -> str:
    return entry["source"].split("(")[1].split(")")[0] if "(" in entry["source"] else "yolov7"


def build(name, **keys):
    from models.parse.read import load_config
    from models.yolo import build_model

    d = load_config(YAMLS / name)
    d.update(keys)
    return build_model(d)


def entry_id(e):
    return f"{e['yaml'].removesuffix('.yaml')}@{release(e)}"


@pytest.mark.parametrize("entry", ENTRIES, ids=entry_id)
def test_yaml_builds_the_peers_model_with_equal_outputs(entry):
    assert "@" in entry["source"]
    model = build(entry["yaml"], **RELEASE_KEYS.get(release(entry), {}))
    assert sum(p.numel() for p in model.parameters()) == entry["params"]
    assert fill(model) == entry["keys"]  # same state-dict names as the peer's (YOLOv7 RepConv renamed)
    model.eval()
    with torch.no_grad():
        y, raw = model(probe_image())
    assert len(raw) == len(entry["raw"])
    for ours, theirs in zip(raw, entry["raw"]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    z = entry["z"][0]  # peer decoded: (N, xywh + obj + classes)
    torch.testing.assert_close(y[0, :4].T, z[:, :4], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(y[0, 4:].T, z[:, 5:] * z[:, 4:5], rtol=1e-5, atol=1e-5)


def test_the_release_keys_matter():
    """Without YOLOv5 v3.1's activations the same weights give other outputs (the comparison can fail)."""
    entry = next(e for e in ENTRIES if release(e) == "v3.1")
    model = build(entry["yaml"])
    fill(model)
    with torch.no_grad():
        raw = model.eval()(probe_image())[1]
    assert not torch.allclose(raw[0], entry["raw"][0], atol=1e-3)


@pytest.mark.parametrize("name", sorted({e["yaml"] for e in ENTRIES}))
def test_full_width_parameter_count_equals_the_peers(name):
    from models.parse.read import load_config
    from models.yolo import build_model

    expected = {e["params_width_1"] for e in ENTRIES if e["yaml"] == name}
    assert len(expected) == 1  # every peer release agrees
    d = load_config(YAMLS / name)
    d["width_multiple"] = 1.0
    with torch.device("meta"):
        skeleton = build_model_skeleton(d)
    assert sum(p.numel() for p in skeleton.parameters()) == expected.pop()


def build_model_skeleton(d):
    """The layers alone (no shape probe, no weight init): enough for a parameter count, fast on the meta device."""
    from models.parse.build import parse_model

    layers, _ = parse_model(d, ch=3, verbose=False)
    return layers


def test_bottleneck_rule_yolov5_without_scales_ultralytics_with_scales():
    from ultralytics.nn.modules import Bottleneck as UltralyticsBottleneck

    from models.layers.yolov5 import Bottleneck, BottleneckCSP

    classic = build("yolov3-bottleneck.yaml")
    b = classic.model[2]
    assert type(b) is Bottleneck and b.cv1.conv.kernel_size == (1, 1)
    assert isinstance(build("yolov5-csp-focus.yaml").model[2], BottleneckCSP)
    from models.parse.read import load_config
    from models.yolo import build_model

    d = load_config(YAMLS / "yolov3-bottleneck.yaml")
    d.pop("depth_multiple"), d.pop("width_multiple")
    d["scales"] = {"n": [1.0, 0.0625, 1024]}
    b = build_model(d).model[2]
    assert type(b) is UltralyticsBottleneck and b.cv1.conv.kernel_size == (3, 3)


def test_bad_csp_activation_names_the_layer():
    from models.registry import ConfigError

    with pytest.raises(ConfigError, match=r"layer 2 \(BottleneckCSP\): csp_activation: 'nn.ReLU\(\)'"):
        build("yolov5-csp-focus.yaml", csp_activation="nn.ReLU()")


def test_focus_models_report_gflops():
    from models.yolo import model_flops

    model = build("yolov5-csp-focus.yaml")
    assert model.model[0].conv.conv.in_channels == 12  # what fooled ultralytics' probe
    flops = model_flops(model)
    assert 0.05 < flops < 1.0
    assert model.info(verbose=True)[3] == pytest.approx(flops)


def test_yolov7_repconv_has_the_identity_branch_only_where_yolov7_has_it():
    model = build("yolov7-p6-aux.yaml")
    rep = model.model[24]
    assert rep.bn is not None and rep.conv1.conv.in_channels == rep.conv1.conv.out_channels
    from models.yolo import build_model

    plain = build_model("yolov7.yaml", nc=2)  # 128->256, 256->512, 512->1024: no identity branch, as YOLOv7's
    assert all(m.bn is None for m in plain.modules() if type(m).__name__ == "RepConv")


def test_yolov7_layer_rows_are_checked():
    from models.registry import ConfigError
    from models.yolo import build_model

    from models.parse.read import load_config

    d = load_config(YAMLS / "yolov7-p6-aux.yaml")
    d["backbone"][6] = [[-1, 0], 1, "Shortcut", [1]]  # 8 channels + the 12 of ReOrg
    with pytest.raises(ConfigError, match=r"layer 6 \(Shortcut\).*equal width"):
        build_model(d)
    d = load_config(YAMLS / "yolov7-p6-aux.yaml")
    d["head"][-1] = [[24, 25, 26, 27, 28, 29, 30], 1, "IAuxDetect", ["nc", "anchors"]]
    with pytest.raises(ConfigError, match="IAuxDetect"):
        build_model(d)


def test_reparameterize_aux_model_into_deploy_model_keeps_outputs(tmp_path):
    from tools.reparameterize import deploy_model, max_difference

    trained = build("yolov7-p6-aux.yaml")
    fill(trained)
    trained.eval()
    deploy = deploy_model(trained, YAMLS / "yolov7-p6-deploy.yaml")
    assert sum(p.numel() for p in deploy.parameters()) == next(
        e["params"] for e in ENTRIES if e["yaml"] == "yolov7-p6-deploy.yaml")
    assert max_difference(trained, deploy) < 1e-3  # pixels, on boxes of up to 128 px
    assert not hasattr(deploy.model[-1], "m2") and not hasattr(deploy.model[-1], "ia")


# ----------------------------------------------------------------------------------------------------------------------
# Training the YOLOv7 heads through the ultralytics criterion hook


def _toy(model, imgsz=64):
    from types import SimpleNamespace

    model.args = SimpleNamespace(imgsz=imgsz)
    return {"img": torch.rand(2, 3, imgsz, imgsz), "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
            "cls": torch.tensor([[0.0], [1.0], [1.0]]),
            "bboxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.2, 0.7, 0.1, 0.1], [0.6, 0.4, 0.5, 0.4]])}


def test_aux_model_trains_both_heads_with_aux_ota_and_validates_on_the_lead():
    from models.heads.loss_ota import AuxOTALoss

    model = build("yolov7-p6-aux.yaml")
    batch = _toy(model)
    model.train()
    loss, items = model.loss(batch)
    assert isinstance(model.criterion, AuxOTALoss) and list(items) == ["box_loss", "obj_loss", "cls_loss"]
    loss.sum().backward()
    head = model.model[-1]
    assert head.m[0].weight.grad.abs().sum() > 0 and head.m2[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        _, eval_items = model.loss(batch, model(batch["img"]))
    assert all(torch.isfinite(v) for v in eval_items.values())


def test_p5_heads_switch_to_ota_with_the_hyp_key():
    from models.heads.loss import AnchorLoss
    from models.heads.loss_ota import OTALoss

    plain = build("yolov5-csp-focus.yaml")
    _toy(plain)
    assert type(plain.init_criterion()) is AnchorLoss
    model = build("yolov5-csp-focus.yaml", hyp={"loss_ota": 1})
    batch = _toy(model)
    assert type(model.init_criterion()) is OTALoss
    loss, items = model.train().loss(batch)
    assert float(items["box_loss"]) > 0


def test_reparameterize_cli_writes_a_loadable_deploy_checkpoint_and_never_overwrites(tmp_path):
    from models.weights.checkpoint import load_model
    from tools import reparameterize

    trained = build("yolov7-p6-aux.yaml")
    fill(trained)
    torch.save({"model": trained.eval(), "train_args": {"imgsz": 64}}, tmp_path / "best.pt")
    out = tmp_path / "deploy.pt"
    args = [str(tmp_path / "best.pt"), str(YAMLS / "yolov7-p6-deploy.yaml"), "-o", str(out)]
    assert reparameterize.main(args) == 0
    deploy = load_model(out)
    assert type(deploy.model[-1]).__name__ == "AnchorDetect"
    assert reparameterize.max_difference(trained, deploy) < 1e-3
    before = out.read_bytes()
    with pytest.raises(SystemExit, match="exists"):
        reparameterize.main(args)
    assert out.read_bytes() == before
