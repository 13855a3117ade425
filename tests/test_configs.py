"""Every shipped config builds; every attention module has a yolov5s config that probes, runs at 640 and trains a step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.registry import attention_specs
from models.yolo import build_model

ROOT = Path(__file__).resolve().parents[1]
# YOLOv5 and YOLOv7 configs; the newer families' generated configs are tested in tests/test_family_configs.py
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("yolov[57]*.yaml"))
MODULES = [s for s in attention_specs()]


def fake_batch(b: int, size: int, nc: int) -> dict:
    g = torch.Generator().manual_seed(0)
    n = 3 * b
    xy = torch.rand(n, 2, generator=g) * 0.6 + 0.2
    wh = torch.rand(n, 2, generator=g) * 0.2 + 0.05
    return {
        "img": torch.rand(b, 3, size, size, generator=g),
        "batch_idx": torch.arange(b).repeat_interleave(3).float(),
        "cls": torch.randint(0, nc, (n, 1), generator=g).float(),
        "bboxes": torch.cat([xy, wh], 1),
    }


def train_step(model, size: int = 256) -> float:
    from ultralytics.cfg import get_cfg

    model.args = get_cfg()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss, _ = model.loss(fake_batch(2, size, model.yaml["nc"]))
    loss = loss.sum()
    assert torch.isfinite(loss), "loss is not finite"
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss)


def test_every_attention_module_has_a_config():
    missing = [s.name for s in MODULES if not (ROOT / "configs" / f"yolov5-{s.tag}.yaml").is_file()]
    assert not missing, f"no config for {missing}: run python tools/make_configs.py"


@pytest.mark.parametrize("cfg", CONFIGS)
def test_config_builds_and_runs_forward_backward(cfg):
    model = build_model(cfg, nc=3)
    model.train()
    out = model(torch.rand(2, 3, 64, 96))
    feats = out["feats"] if isinstance(out, dict) else out
    sum(f.float().mean() for f in (feats if isinstance(feats, (list, tuple)) else [feats])).backward()
    assert any(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("spec", MODULES, ids=lambda s: s.name)
def test_yolov5s_module_config_probes_runs_640_and_trains_a_step(spec):
    model = build_model(f"yolov5s-{spec.tag}.yaml", nc=5)  # the stride probe runs while building
    assert model.model[10].type == spec.name
    assert torch.equal(model.stride, torch.tensor([8.0, 16.0, 32.0]))
    model.eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 640, 640))
    y = y[0] if isinstance(y, (list, tuple)) else y
    assert y.shape == (1, 4 + 5, 80 * 80 + 40 * 40 + 20 * 20) and torch.isfinite(y).all()
    train_step(model)


def test_docs_module_table_lists_every_registered_module():
    text = (ROOT / "docs" / "modules.md").read_text()
    missing = [s.name for s in MODULES if f"| {s.name} |" not in text and f"| [{s.name}](papers/{s.name}.md) |" not in text]
    assert not missing, f"docs/modules.md lacks {missing}: run python tools/gen_docs.py"
