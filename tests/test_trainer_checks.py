"""Checks the trainer runs when it builds a model: dense attention memory budget."""

from models.engine.checks import warn_dense_attention
from models.yolo import build_model


def test_dense_attention_over_budget_warns_naming_the_layer():
    model = build_model("yolov5n-botmhsa.yaml")  # BoTMHSA after SPPF: P5, C=256, 4 heads of d=64
    assert warn_dense_attention(model, 640, 16) == []  # 20x20: ~0.04 GiB working set
    assert warn_dense_attention(model, 2560, 16) == []  # 80x80: ~1.5 GiB (9 * 4 * 6400 * (64 + 160) * 16 * 2 B)
    msgs = warn_dense_attention(model, 3200, 16)  # 100x100: ~2.8 GiB
    assert len(msgs) == 1 and "layer 10 (BoTMHSA)" in msgs[0] and "100x100" in msgs[0] and "2.83 GiB" in msgs[0]
    assert "already at P5" in msgs[0] and "CrissCross" in msgs[0]
