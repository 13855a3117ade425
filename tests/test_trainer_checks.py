"""Checks the trainer runs when it builds a model: dense attention memory budget."""

import os

from models.engine.checks import warn_dense_attention
from models.yolo import build_model


def test_dense_attention_over_budget_warns_naming_the_layer():
    model = build_model("yolov5n-botmhsa.yaml")  # BoTMHSA after SPPF: P5, C=256, 4 heads of d=64
    assert warn_dense_attention(model, 640, 16) == []  # 20x20: ~0.04 GiB working set
    assert warn_dense_attention(model, 2560, 16) == []  # 80x80: ~1.5 GiB (9 * 4 * 6400 * (64 + 160) * 16 * 2 B)
    msgs = warn_dense_attention(model, 3200, 16)  # 100x100: ~2.8 GiB
    assert len(msgs) == 1 and "layer 10 (BoTMHSA)" in msgs[0] and "100x100" in msgs[0] and "2.83 GiB" in msgs[0]
    assert "already at P5" in msgs[0] and "CrissCross" in msgs[0]


def test_cpu_training_uses_every_core_unless_omp_says_otherwise(monkeypatch, tiny_data, tmp_path):
    """ultralytics' device selection leaves torch one thread short of the cores (1 on a 2-core machine) while its CPU
    trainer loads data in the main process: our trainer trains on every core, or on OMP_NUM_THREADS when set."""
    import torch

    from models.engine.trainer import AttentionTrainer, cpu_training_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_training_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_training_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    before = torch.get_num_threads()
    try:
        AttentionTrainer(overrides={"model": "yolov5n.yaml", "data": tiny_data, "device": "cpu",
                                    "project": str(tmp_path), "name": "t"})
        assert torch.get_num_threads() == 2  # ultralytics' select_device alone would leave cpu_count - 1
    finally:
        torch.set_num_threads(before)
