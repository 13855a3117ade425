"""benchmarks/fp16_speed.py on the CPU: the models, train steps and library comparisons it times all run, and the
ratios are taken round by round (the interleaved timer itself is tools.measure's, tested with the profilers)."""

from __future__ import annotations

import csv

import pytest

from benchmarks import fp16_speed

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def timed_once(monkeypatch):
    """time_interleaved replaced by one call of each callable and made-up rounds (1, 2, 3 ms for the first, ...)."""
    from tools import measure

    calls = []

    def once(fns, device, repeats=7, warmup=2, min_block_s=0.05, budget_s=None):
        out = {}
        for k, (name, fn) in enumerate(fns.items()):
            fn()
            calls.append(name)
            out[name] = measure.Timing([1.0 + k, 2.0 + k, 3.0 + k])
        return out

    monkeypatch.setattr(measure, "time_interleaved", once)
    return calls


def test_models_and_modules_are_timed_against_their_references(timed_once):
    models = fp16_speed.fp16_models(batches=(1,), imgsz=64, device="cpu", scale="n")
    assert [r["model"] for r in models] == ["yolov5n", "yolov5nu (ultralytics)", "yolov5n-cbam"]
    assert [r["fp16_fwd_ratio"] for r in models] == [1.0, 1.5, 2.0] and models[2]["amp_train_ms"] == 4.0
    assert timed_once == [r["model"] for r in models] * 2  # train steps, then fp16 forwards
    pytest.importorskip("timm")
    mods = fp16_speed.fp16_modules(batches=(1,), c=32, hw=8, device="cpu")
    assert {r["module"] for r in mods} >= {"SE", "CBAM", "ECA", "SK"}
    se = [r for r in mods if r["module"] == "SE"]
    assert [r["library"] for r in se] == ["torchvision SqueezeExcitation", "timm SEModule"]
    assert [r["ratio_fwd"] for r in se] == [2 / 3, 0.5]  # medians of per-round ratios


def test_quick_run_writes_both_tables(timed_once, tmp_path):
    pytest.importorskip("timm")
    assert fp16_speed.main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "fp16_models.csv", newline="") as f:
        assert [r["model"] for r in csv.DictReader(f)] == ["yolov5n", "yolov5nu (ultralytics)", "yolov5n-cbam"]
    with open(tmp_path / "fp16_modules.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == set(fp16_speed.MODULE_COLUMNS)


def test_without_cuda_it_says_so(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device"):
        fp16_speed.main([])
