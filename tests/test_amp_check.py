"""The trainer's own AMP check (models/engine/checks.py), which replaces ultralytics' (that one loads, and may
download, yolo26n.pt): fp32 against fp16 autocast on the model being trained."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.usefixtures("one_thread")


def test_amp_check_compares_the_users_own_model_and_passes_a_healthy_one():
    from models.engine.checks import AMP_TOLERANCE, amp_disagreement
    from models.yolo import build_model

    model = build_model("yolov5n-cbam.yaml", nc=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    worst, where = amp_disagreement(model, imgsz=128, dtype=torch.float16)
    assert 0 < worst < AMP_TOLERANCE, (worst, where)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched


class OverflowingDetector(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.stride = torch.tensor([8.0])

    def forward(self, x):
        f = self.conv(x).flatten(2) * 100
        return [f @ f.transpose(1, 2)]  # energies of ~1e5 and more: inf in fp16


def test_amp_check_disables_amp_when_fp16_overflows(caplog):
    from models.engine.checks import amp_disagreement, amp_verdict

    worst, where = amp_disagreement(OverflowingDetector(), 64)
    assert worst == float("inf") and where == "output 0 (2, 8, 8)"
    from ultralytics.utils import LOGGER

    LOGGER.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING):
            assert amp_verdict(OverflowingDetector(), 64) is False
    finally:
        LOGGER.removeHandler(caplog.handler)
    assert "AMP: checks failed: autocast changes this model's output 0 (2, 8, 8) by inf" in caplog.text


def test_amp_check_that_cannot_run_keeps_amp(monkeypatch):
    import models.engine.checks as trainer

    def broken(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(trainer, "amp_disagreement", broken)
    assert trainer.amp_verdict(nn.Conv2d(3, 3, 1), 64) is True


def test_trainer_uses_its_own_amp_check_and_never_ultralytics(monkeypatch):
    """ultralytics' check_amp would load yolo26n.pt (downloading it when absent); the trainer swaps in its own."""
    import ultralytics.engine.trainer as engine
    from ultralytics.models.yolo.detect import DetectionTrainer

    from models.engine.trainer import AttentionTrainer

    original = engine.check_amp
    seen = {}

    def fake_setup(self):  # what ultralytics' _setup_train does with the name, at the point it does it
        seen["result"] = engine.check_amp(self.model)

    monkeypatch.setattr(DetectionTrainer, "_setup_train", fake_setup)
    monkeypatch.setattr(AttentionTrainer, "print_plan", lambda self: "")  # needs the loaders the stub does not make
    trainer = object.__new__(AttentionTrainer)
    trainer.model = nn.Conv2d(3, 3, 1)  # on CPU: AMP is off, as in ultralytics, and nothing is loaded
    trainer._setup_train()
    assert seen["result"] is False
    assert engine.check_amp is original  # restored afterwards
