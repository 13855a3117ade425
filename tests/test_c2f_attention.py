"""C2fAtt / C3k2Att: attention inside the bottlenecks of YOLOv8's C2f and YOLO11's C3k2, as one row."""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch
from ultralytics.nn.modules import C2f, C3k2

from models.layers.c2f_attention import C2fAtt, C3k2Att
from models.registry import LAYERS, ConfigError
from models.weights.transfer import transfer_weights
from models.yolo import build_model
from tools.families import detection_yamls, model_dict, tensors

pytestmark = pytest.mark.usefixtures("one_thread")
YAMLS = {p.stem: p for p in detection_yamls()}


def count(m) -> int:
    return sum(p.numel() for p in m.parameters())


def att(name: str, c: int) -> int:
    return count(LAYERS.get(name).cls(c))


# (row after the output width, the plain block's arguments, attention widths by the docstring's formula) for c2=128
C3K2_ROWS = [
    ((2, False, 0.25, "CBAM"), (2, False, 0.25), [32] * 2),  # h = 32, plain bottlenecks
    ((2, True, "SE"), (2, True), [32] * 4),  # h = 64, c3k: 2n attentions at h // 2
    ((1, True, 0.5, True, "ECA"), (1, True, 0.5, True), [64]),  # attn: bottleneck + PSABlock
    ((3, "GCBlock", {"e": 0.25, "shortcut": False}), (3, False, 0.25, False, 1, False), [32] * 3),
]


@pytest.mark.parametrize("row, plain, widths", C3K2_ROWS, ids=["plain", "c3k", "attn", "by-name"])
def test_c3k2att_parameters_follow_the_formula(row, plain, widths):
    m = C3k2Att(64, 128, *row)
    name = next(a for a in row if isinstance(a, str))
    assert count(m) == count(C3k2(64, 128, *plain)) + sum(att(name, c) for c in widths)
    assert set(C3k2(64, 128, *plain).state_dict()) <= set(m.state_dict())  # keys extend C3k2's


@pytest.mark.parametrize("name", ["CBAM", "SE", "ECA", "CoordAtt"])
def test_c2fatt_parameters_follow_the_formula(name):
    m = C2fAtt(64, 96, 3, True, name)
    assert count(m) == count(C2f(64, 96, 3, True)) + 3 * att(name, 48)
    assert set(C2f(64, 96, 3, True).state_dict()) <= set(m.state_dict())


@pytest.mark.parametrize("row, match", [
    ((2, False, 0.25), "name the attention module after C3k2's own arguments"),
    ((2, False, 0.5, False, 1, True, 3, "SE"), "6 arguments before the attention name; C3k2 takes at most 5"),
    ((2, True, "SE", {"c3k": False}), "'c3k' given twice"),
    ((2, "SE", 3), "only one dict of keywords may follow"),
])
def test_bad_rows_say_what_to_write(row, match):
    with pytest.raises(ValueError, match=match):
        C3k2Att(64, 128, *row)


def _swap(d: dict, old: str, new: str, attention: str) -> dict:
    d = deepcopy(d)
    for row in d["backbone"] + d["head"]:
        if row[2] == old:
            row[2], row[3] = new, [*row[3], attention]
    return d


@pytest.mark.parametrize("stem, scale, old, new", [("yolo11", "n", "C3k2", "C3k2Att"), ("yolo11", "m", "C3k2", "C3k2Att"),
                                                   ("yolo26", "n", "C3k2", "C3k2Att"), ("yolov8", "n", "C2f", "C2fAtt")])
def test_every_block_swapped_keeps_the_model_and_its_weights(stem, scale, old, new):
    """Every C3k2 (C2f) of the family YAML written as the attention block: the same head (the legacy rule follows
    C3k2Att as it follows C3k2), C3k inner blocks at scale m, every base tensor transferred, and with the attention
    at the identity the base model's outputs exactly."""
    d = model_dict(YAMLS[stem], scale)
    torch.manual_seed(0)
    base = build_model(deepcopy(d))
    model = build_model(_swap(d, old, new, "GCBlock"))
    blocks = [m for m in model.model if isinstance(m, (C2fAtt, C3k2Att))]
    assert len(blocks) == sum(isinstance(m, (C2f, C3k2)) and type(m).__name__ == old for m in base.model)
    head_keys = lambda m: {k for k in m.state_dict() if k.startswith(f"model.{len(m.model) - 1}.")}  # noqa: E731
    assert head_keys(model) == head_keys(base)
    plain = [m for m in base.model if type(m).__name__ == old]
    inner = lambda blocks: [type(b).__name__.replace("Att", "") for m in blocks for b in m.m]  # noqa: E731
    assert inner(blocks) == inner(plain)  # C3k where C3k2 has C3k (every block at scale m), PSA where it has PSA
    assert (scale == "m") <= all(i == "C3k" for i in inner(blocks))
    report = transfer_weights(model, base, verbose=False)
    assert report.transferred == len(base.state_dict()) and not report.not_identity, report.details()
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
    base.eval(), model.eval()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(tensors(base(x)), tensors(model(x))))


def test_the_issue_row_builds_in_yolo11():
    d = model_dict(YAMLS["yolo11"], "s")
    d["backbone"][2] = [-1, 2, "C3k2Att", [256, False, 0.25, "CBAM"]]
    m = build_model(d)
    assert m.model[2].type == "C3k2Att" and m.model[2].label == "C3k2Att(CBAM)"
    with pytest.raises(ConfigError, match=r"layer 2 \(C3k2Att\).*unknown layer 'CBAMM'"):
        d["backbone"][2] = [-1, 2, "C3k2Att", [256, False, 0.25, "CBAMM"]]
        build_model(d)
