"""The generated configs of the newer families (tools/make_configs.py): one per attention module and family, current,
resolved by name with the scale letter, and each the family's ultralytics model plus exactly the module."""

from __future__ import annotations

import pytest
import torch

from models.registry import LAYERS, attention_specs
from models.yolo import build_model
from tools.families import model_dict
from tools.make_configs import FAMILIES, config_path, config_text

pytestmark = pytest.mark.usefixtures("one_thread")

NEW = [f for f in FAMILIES if f.stem != "yolov5"]
MODULES = attention_specs()


def count(m) -> int:
    return sum(p.numel() for p in m.parameters())


def test_every_module_has_a_current_config_in_every_family():
    stale = [config_path(s, f).name for f in NEW for s in MODULES
             if not config_path(s, f).is_file() or config_path(s, f).read_text() != config_text(s, f)]
    assert not stale, f"missing or stale: {stale[:10]} ... run python tools/make_configs.py"


@pytest.mark.parametrize("name, base, scale, module, channels", [
    ("yolov8s-cbam.yaml", "v8/yolov8.yaml", "s", "CBAM", 512),
    ("yolo11s-cbam.yaml", "11/yolo11.yaml", "s", "CBAM", 512),
    ("yolo12n-se.yaml", "12/yolo12.yaml", "n", "SE", 256),
    ("yolo26n-eca.yaml", "26/yolo26.yaml", "n", "ECA", 256),
    ("yolov10n-se.yaml", "v10/yolov10n.yaml", "n", "SE", 256),
    ("yolo11m-cbam.yaml", "11/yolo11.yaml", "m", "CBAM", 512),  # max_channels 512 at m
])
def test_config_is_the_ultralytics_model_plus_the_module(name, base, scale, module, channels):
    from ultralytics.nn.tasks import DetectionModel

    from tools.families import CFG_MODELS

    model = build_model(name)
    plain = DetectionModel(model_dict(CFG_MODELS / base, scale), verbose=False)
    assert model.yaml["scale"] == scale
    assert count(model) == count(plain) + count(LAYERS.get(module).cls(channels))
    att = [m for m in model.model if m.type == module]
    assert len(att) == 1 and att[0].i == len(plain.yaml["backbone"])  # right after the backbone


@pytest.mark.parametrize("spec", MODULES, ids=lambda s: s.name)
def test_yolo11_module_config_builds_and_trains_a_step(spec):
    model = build_model(f"yolo11n-{spec.tag}.yaml", nc=3)
    model.train()
    sum(f.float().mean() for f in model(torch.rand(2, 3, 64, 96))["feats"]).backward()
    assert model.model[11].type == spec.name and any(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("stem", [f.stem for f in NEW if f.stem != "yolo11"])
@pytest.mark.parametrize("module", ["CBAM", "NonLocal"])
def test_other_family_configs_build_and_run(stem, module):
    tag = LAYERS.get(module).tag
    name = f"{stem}-{tag}.yaml" if stem == "yolov10n" else f"{stem}n-{tag}.yaml"  # YOLOv10: one file per scale
    model = build_model(name, nc=3)
    with torch.no_grad():
        model.eval()(torch.rand(1, 3, 64, 96))
    assert sum(m.type == module for m in model.model) == 1


@pytest.mark.slow
@pytest.mark.parametrize("family", [f.stem for f in NEW])
@pytest.mark.parametrize("spec", MODULES, ids=lambda s: s.name)
def test_every_family_config_builds(family, spec):
    build_model(config_path(spec, next(f for f in NEW if f.stem == family)))
