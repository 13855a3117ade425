"""dense_attention_check: finds dense attention modules, sizes their maps at imgsz, reports over-budget ones."""

from __future__ import annotations

import torch
from torch import nn

from models.dense_memory import dense_attention_check
from models.attention.bot_mhsa import BoTMHSA
from models.attention.criss_cross import CrissCross
from models.attention.danet import DANet
from models.attention.non_local import NonLocal


def _down(c1, c2):
    return nn.Sequential(nn.Conv2d(c1, c2, 3, 2, 1), nn.SiLU())


class Nested(nn.Module):
    """A layer that hides its dense module one level down (like an attention inside a C3 block)."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)
        self.attn = BoTMHSA(c)

    def forward(self, x):
        return self.attn(self.conv(x))


class StandIn(nn.Module):
    """Detector-like: layers in ``self.model`` (nn.Sequential) tagged with ``.i`` and ``.type``."""

    def __init__(self):
        super().__init__()
        layers = [
            _down(3, 16),  # 0  P1/2
            _down(16, 16),  # 1  P2/4
            NonLocal(16),  # 2  at P2: 160x160 at 640 -> over budget
            _down(16, 32),  # 3  P3/8
            Nested(32),  # 4  BoTMHSA at P3 (nested) -> over budget
            CrissCross(32),  # 5  sparse: never reported
            _down(32, 32),  # 6  P4/16
            _down(32, 32),  # 7  P5/32
            DANet(32),  # 8  at P5: fine
        ]
        for i, m in enumerate(layers):
            m.i, m.type = i, type(m).__name__
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def test_reports_only_dense_modules_over_budget():
    model = StandIn().train()
    msgs = dense_attention_check(model, 640, batch=16, budget_gib=2.0)
    assert len(msgs) == 2, msgs
    nl = next(m for m in msgs if "NonLocal" in m)
    assert "layer 2 (NonLocal)" in nl and "160x160" in nl and "stride 4" in nl
    assert "4.88 GiB" in nl  # 25600 * 6400 * 16 * 2 bytes
    bot = next(m for m in msgs if "BoTMHSA" in m)
    assert "layer 4 (Nested)" in bot and "80x80" in bot and "4.88 GiB" in bot  # 4 heads * 6400^2 * 16 * 2 B
    for m in msgs:
        assert "P5" in m and "CrissCross" in m and "BiLevelRoutingAttention" in m
    assert all(mod.training for mod in model.modules())  # train mode restored


def test_budget_batch_and_non_square_sizes():
    model = StandIn()
    assert dense_attention_check(model, 640, budget_gib=100.0) == []
    assert dense_attention_check(model, 320, batch=1) == []
    msgs = dense_attention_check(model, (640, 384), batch=16, budget_gib=2.0, dtype_bytes=4)
    assert any("160x96" in m for m in msgs) and any("80x48" in m for m in msgs)


def test_plain_sequential_and_no_dense_modules():
    seq = nn.Sequential(_down(3, 8), _down(8, 8), _down(8, 16), DANet(16))  # stride 8, no .i tags
    msgs = dense_attention_check(seq, 1280, batch=8, budget_gib=1.0)
    assert len(msgs) == 1 and "DANet" in msgs[0] and "160x160" in msgs[0] and "layer 3 (DANet)" in msgs[0]
    assert dense_attention_check(nn.Sequential(_down(3, 8), CrissCross(8)), 1280) == []


def test_module_already_at_p5_gets_other_advice():
    seq = nn.Sequential(*[_down(3 if i == 0 else 8, 8) for i in range(5)], NonLocal(8))  # stride 32
    msgs = dense_attention_check(seq, 2560, batch=64, budget_gib=0.5)
    assert len(msgs) == 1 and "80x80" in msgs[0] and "already at P5" in msgs[0] and "CrissCross" in msgs[0]


def test_eval_mode_and_parameters_untouched():
    model = StandIn().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dense_attention_check(model, 640)
    assert not any(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
