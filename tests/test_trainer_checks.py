"""Checks the trainer runs when it builds a model: dense attention memory budget."""

from models.trainer import warn_dense_attention
from models.yolo import build_model


def test_dense_attention_over_budget_warns_naming_the_layer():
    model = build_model("yolov5n-botmhsa.yaml")
    assert warn_dense_attention(model, 640, 16) == []  # 20x20 at P5: fine
    msgs = warn_dense_attention(model, 2560, 16)  # 80x80 at P5: ~4.9 GiB per attention map
    assert len(msgs) == 1 and "layer 10 (BoTMHSA)" in msgs[0] and "80x80" in msgs[0] and "CrissCross" in msgs[0]
