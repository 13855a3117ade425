"""The benchmark scripts a user runs to fill the docs tables: profiler and model overhead, in their quick modes."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_module_profiler_quick_writes_csv_and_markdown_with_positive_figures(tmp_path):
    from benchmarks import profile_modules

    out = tmp_path / "bench"
    assert profile_modules.main(["--quick", "--modules", "SE", "CBAM", "--devices", "cpu", "--out", str(out)]) == 0
    table = rows(out / "modules.csv")
    assert set(profile_modules.COLUMNS) <= set(table[0])
    ours = [r for r in table if r["impl"] == "ours"]
    assert sorted(r["module"] for r in ours) == ["CBAM", "SE"]
    for r in ours:
        assert r["status"] == "ok" and r["device"] == "cpu" and r["threads"] == "1"
        assert (int(r["c"]), r["level"], int(r["h"])) == (64, "P5", 20)
        for k in ("params", "mflops", "mops_other", "fwd_ms", "fwdbwd_ms", "peak_mb"):
            assert float(r[k]) > 0, (r["module"], k, r[k])
    # SE's parameter count is the module's own (two 1x1 convs with biases, hidden 8 at C=64)
    se = next(r for r in ours if r["module"] == "SE")
    assert int(se["params"]) == 64 * 8 + 8 + 8 * 64 + 64
    # the library comparisons come from the same run, with a ratio per cell
    refs = {(r["module"], r["impl"]) for r in table if r["impl"] != "ours"}
    assert ("SE", "torchvision") in refs
    for r in (r for r in table if r["impl"] != "ours"):
        assert math.isfinite(float(r["ratio_fwd"])) and float(r["ratio_fwd"]) > 0
    md = (out / "modules.md").read_text()
    assert "| SE | 64 | P5 20x20 |" in md
    summary = (out / "modules.summary.md").read_text()
    assert "ours/theirs" in summary and "torch " in summary
    page = (tmp_path / "bench.md").read_text()
    assert "## Module profiler" in page and "bench/modules.csv" in page


def test_profiler_rejects_unknown_module(tmp_path):
    from benchmarks import profile_modules

    with pytest.raises(SystemExit, match="NoSuchGate"):
        profile_modules.main(["--quick", "--modules", "NoSuchGate", "--out", str(tmp_path)])


def test_profiler_append_keeps_other_rows(tmp_path):
    from benchmarks import profile_modules

    out = tmp_path / "b"
    base = ["--quick", "--devices", "cpu", "--no-reference", "--out", str(out)]
    profile_modules.main(base + ["--modules", "SE"])
    profile_modules.main(base + ["--modules", "ECA", "--append"])
    assert sorted(r["module"] for r in rows(out / "modules.csv")) == ["ECA", "SE"]
    meta = json.loads((out / "modules.meta.json").read_text())["cpu"]
    assert "--modules SE" in meta["command"]  # the first run's record is kept, the re-measurement noted
    assert [u["modules"] for u in meta["updates"]] == [["ECA"]]
    assert "Re-measured" in (out / "modules.summary.md").read_text()


def test_model_overhead_quick_reports_ratios_and_the_ultralytics_control(tmp_path):
    from benchmarks import model_overhead

    out = tmp_path / "bench"
    assert model_overhead.main(["--quick", "--modules", "SE", "--devices", "cpu", "--out", str(out)]) == 0
    table = rows(out / "model_overhead.csv")
    models = {r["model"] for r in table}
    assert models == {"yolov5s", "yolov5su (ultralytics)", "yolov5s + SE"}
    assert {r["fused"] for r in table} == {"False", "True"}
    by = {(r["model"], r["fused"]): r for r in table}
    base = by[("yolov5s", "False")]
    assert int(base["params"]) == 9_153_152  # the published yolov5su count at nc=80
    assert int(by[("yolov5su (ultralytics)", "False")]["params"]) == int(base["params"])
    assert int(by[("yolov5s + SE", "False")]["params"]) > int(base["params"])
    for r in table:
        assert float(r["ms"]) > 0 and float(r["ratio"]) > 0 and float(r["gflops"]) > 0
    assert float(base["ratio"]) == 1.0
    # conv+matmul count: the same for our yolov5s and ultralytics', a little more with SE (two 1x1 convs on a vector)
    g = {m: float(by[(m, "False")]["gflops_all"]) for m in models}
    assert g["yolov5s"] == g["yolov5su (ultralytics)"] > 0 and g["yolov5s + SE"] > g["yolov5s"]
    assert "ultralytics yolov5su / our yolov5s" in (out / "model_overhead.summary.md").read_text()


def test_benchmarks_index_keeps_sections_it_does_not_write(tmp_path):
    """Re-generating docs/benchmarks.md from the profiler summaries keeps the GPU-check section another script owns."""
    from tools import measure

    out = tmp_path / "benchmarks"
    out.mkdir()
    (out / "modules.summary.md").write_text("module figures v1\n")
    page = out.with_suffix(".md")
    page.write_text("intro\n\n## Module profiler\n\nold figures\n\n## GPU check\n\nran on an H200\n")
    measure.write_index(out)
    text = page.read_text()
    assert "module figures v1" in text and "old figures" not in text
    assert text.count("## GPU check") == 1 and text.rstrip().endswith("ran on an H200")
