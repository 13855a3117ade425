"""benchmarks/train_speed.py: interleaved training runs, ours vs ultralytics' own trainer, and the report."""

from __future__ import annotations

import csv
import math

import pytest

from benchmarks import train_speed as ts

OURS, THEIRS = ts.TRAINERS["ours"], ts.TRAINERS["ultralytics"]


def test_runs_alternate_and_the_first_epoch_is_not_timed():
    assert ts.round_orders(3) == [["ours", "ultralytics"], ["ultralytics", "ours"], ["ours", "ultralytics"]]
    assert ts.timed_epochs([9.0, 2.0, 2.2]) == [2.0, 2.2]
    assert ts.timed_epochs([5.0]) == [5.0]


def test_ratio_is_the_median_of_per_round_ratios_and_the_report_shows_it():
    rows = [{"measure": "train_epoch_s", "model": m, "round": r, "order": 0, "value": v, "epochs_timed": 2,
             "params": 2_503_919, "device": "cpu", "device_name": "test CPU", "threads": 2, "torch": "2.x",
             "ultralytics": "8.4.190", "date": "2026-12-01"}
            for r, (a, b) in enumerate([(2.0, 2.0), (3.3, 3.0), (2.2, 2.0)]) for m, v in ((OURS, a), (THEIRS, b))]
    rows += [{"measure": "fused_fwd_ms", "model": m, "batch": 1, "imgsz": 640, "value": v, "ratio": q, "params": p}
             for m, v, q, p in (("yolov5s", 20.0, 1.0, 9_100_000), ("yolov5s-cbam", 21.0, 1.05, 9_200_000))]
    ratio, per_round = ts.train_ratio(rows)
    assert per_round == pytest.approx([1.0, 1.1, 1.1]) and ratio == pytest.approx(1.1)
    args = ts.parse_opt(["--rounds", "3"])
    md = ts.render(rows, args, 125.0)
    assert "**ours / ultralytics: 1.100**" in md and "per round 1.000, 1.100, 1.100" in md
    assert "Same parameter count." in md and "| yolov5s-cbam | 1 | 9,200,000 | 21.00 | 1.050 |" in md
    assert "the run took 2.1 min" in md


def test_other_configs_get_their_own_labels_and_ratio():
    """The GPU check's throughput run: our yolov5s-cbam against ultralytics' yolov5su."""
    args = ts.parse_opt(["--ours", "yolov5s-cbam.yaml", "--ultralytics", "yolov5s.yaml", "--no-inference"])
    assert args.labels == {"ours": "ours yolov5s-cbam (AttentionTrainer)",
                           "ultralytics": "ultralytics yolov5su (DetectionTrainer)"} and args.no_inference
    rows = [{"measure": "train_epoch_s", "model": args.labels[k], "round": 0, "order": i, "value": v, "epochs_timed": 2,
             "params": p} for i, (k, v, p) in enumerate((("ours", 3.3, 9_186_564), ("ultralytics", 3.0, 9_153_152)))]
    assert ts.train_ratio(rows, args.labels) == (pytest.approx(1.1), [pytest.approx(1.1)])
    assert math.isnan(ts.train_ratio(rows)[0])  # the default labels (yolov5n) name other runs
    md = ts.render(rows, args, 60.0)
    assert "**ours / ultralytics: 1.100**" in md and "Parameters differ" in md


@pytest.mark.slow
def test_quick_run_trains_both_trainers_on_the_same_data_and_writes_csv_and_markdown(tmp_path, tiny_data):
    """About a minute on 2 cores: two training processes and a small inference timing."""
    out = tmp_path / "speed"
    assert ts.main(["--quick", "--data", tiny_data, "--out", str(out)]) == 0
    with open(out / "train_speed.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["measure"] == "train_epoch_s"]
    assert [r["model"] for r in train] == [OURS, THEIRS]
    assert train[0]["params"] == train[1]["params"]  # the same architecture, built by two parsers
    assert all(float(r["value"]) > 0 and r["epochs_timed"] == "1" for r in train)
    infer = {r["model"]: r for r in rows if r["measure"] == "fused_fwd_ms"}
    assert set(infer) == {"yolov5s", "yolov5s-cbam"} and float(infer["yolov5s"]["ratio"]) == 1.0
    assert math.isfinite(float(infer["yolov5s-cbam"]["ratio"]))
    assert int(infer["yolov5s-cbam"]["params"]) > int(infer["yolov5s"]["params"])
    md = (out / "train_speed.md").read_text()
    assert "## Training epoch time" in md and "ours / ultralytics:" in md and "## Inference" in md
