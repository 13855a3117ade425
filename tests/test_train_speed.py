"""benchmarks/train_speed.py: interleaved training runs, ours vs ultralytics' own trainer, and the report."""

from __future__ import annotations

import csv
import math

import pytest

from benchmarks import train_speed as ts

V5, V11 = ts.PAIRS["yolov5n"], ts.PAIRS["yolo11n-cbam"]
OURS, THEIRS = V5.label("ours"), V5.label("ultralytics")


def test_runs_alternate_and_the_first_epoch_is_not_timed():
    assert ts.round_orders(3) == [["ours", "ultralytics"], ["ultralytics", "ours"], ["ours", "ultralytics"]]
    assert ts.timed_epochs([9.0, 2.0, 2.2]) == [2.0, 2.2]
    assert ts.timed_epochs([5.0]) == [5.0]


def _env() -> dict:
    return {"device": "cpu", "device_name": "test CPU", "threads": 2, "torch": "2.x", "ultralytics": "8.4.190",
            "date": "2026-12-01"}


def test_ratio_is_the_median_of_per_round_ratios_per_pair_and_the_report_shows_it():
    rows = [{"measure": "train_epoch_s", "pair": pair, "model": p.label(impl), "round": r, "order": 0, "value": v,
             "epochs_timed": 2, "params": params[impl], **_env()}
            for pair, p, times, params in (
                ("yolov5n", V5, [(2.0, 2.0), (3.3, 3.0), (2.2, 2.0)], {"ours": 2_503_919, "ultralytics": 2_503_919}),
                ("yolo11n-cbam", V11, [(4.2, 4.0), (4.0, 4.0), (4.4, 4.0)], {"ours": 2_596_066, "ultralytics": 2_590_035}))
            for r, (a, b) in enumerate(times) for impl, v in (("ours", a), ("ultralytics", b))]
    rows += [{"measure": "fused_fwd_ms", "pair": "yolov5s", "model": m, "batch": 1, "imgsz": 640, "value": v,
              "ratio": q, "params": p} for m, v, q, p in (("yolov5s", 20.0, 1.0, 9_100_000),
                                                           ("yolov5s-cbam", 21.0, 1.05, 9_200_000))]
    rows += [{"measure": "fused_fwd_ms", "pair": "yolo11n", "model": m, "batch": 1, "imgsz": 640, "value": v,
              "ratio": 1.0, "params": 1, "per_repeat": reps}
             for m, v, reps in (("ultralytics yolo11n", 30.0, "30 31 29 30 32"), ("ours yolo11n", 30.0, "30 30 30 30 30"),
                                ("ours yolo11n-cbam", 31.0, "31 32 30 31 33"), ("CBAM alone", 0.5, "0.5 0.5 0.5 0.5 0.5"))]
    ratio, per_round = ts.train_ratio(rows, "yolov5n")
    assert per_round == pytest.approx([1.0, 1.1, 1.1]) and ratio == pytest.approx(1.1)
    assert ts.train_ratio(rows, "yolo11n-cbam") == (pytest.approx(1.05), pytest.approx([1.05, 1.0, 1.1]))
    excess, noise, own = ts.module_cost_check(rows, 1)
    assert (excess, own) == (pytest.approx(0.5), 0.5) and noise == pytest.approx(2.0)  # quartiles 29.5, 31.5
    md = ts.render(rows, ts.parse_opt(["--rounds", "3"]), 125.0)
    assert "**yolov5n: ours / ultralytics epoch time 1.100, throughput 0.909x**" in md
    assert "per round 1.000, 1.100, 1.100" in md and "Same parameter count." in md
    assert "**yolo11n-cbam: ours / ultralytics epoch time 1.050, throughput 0.952x**" in md
    assert "Parameters: ours yolo11n-cbam (AttentionTrainer) 2,596,066" in md
    assert "| yolov5s | yolov5s-cbam | 1 | 9,200,000 | 21.00 | 1.050 |" in md
    assert "yolo11n-cbam - (ultralytics yolo11n + CBAM alone) = +0.50 ms" in md and "within the noise" in md
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
    assert "**yolov5s-cbam: ours / ultralytics epoch time 1.100, throughput 0.909x**" in md
    assert "Parameters: ours yolov5s-cbam (AttentionTrainer) 9,186,564; ultralytics yolov5su (DetectionTrainer) 9,153,152" in md


@pytest.mark.slow
def test_quick_run_trains_both_pairs_on_the_same_data_and_writes_csv_and_markdown(tmp_path, tiny_data):
    """A few minutes on 2 cores: four training processes and small inference timings."""
    out = tmp_path / "speed"
    assert ts.main(["--quick", "--data", tiny_data, "--out", str(out)]) == 0
    with open(out / "train_speed.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["measure"] == "train_epoch_s"]
    assert [r["model"] for r in train] == [OURS, THEIRS, V11.label("ours"), V11.label("ultralytics")]
    assert train[0]["params"] == train[1]["params"]  # the same architecture, built by two parsers
    assert int(train[2]["params"]) > int(train[3]["params"])  # yolo11n plus CBAM
    assert all(float(r["value"]) > 0 and r["epochs_timed"] == "1" for r in train)
    infer = {r["model"]: r for r in rows if r["measure"] == "fused_fwd_ms"}
    assert set(infer) == {"yolov5s", "yolov5s-cbam", "ultralytics yolo11n", "ours yolo11n", "ours yolo11n-cbam",
                          "CBAM alone"}
    assert float(infer["yolov5s"]["ratio"]) == 1.0 and math.isfinite(float(infer["yolov5s-cbam"]["ratio"]))
    assert infer["ours yolo11n"]["params"] == infer["ultralytics yolo11n"]["params"]
    md = (out / "train_speed.md").read_text()
    assert "## Training epoch time" in md and "yolo11n-cbam: ours / ultralytics" in md and "CBAM alone" in md
