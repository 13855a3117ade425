"""benchmarks/gpu_check.py without a GPU: it runs ``pytest -m cuda`` (every test collected and skipped), skips the
benchmarks, writes its report and exits 0; the budget cuts benchmarks and stops an overrunning one; the outcome plugin
records every test as it finishes; the report renders every section from the JSON alone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check as gc
from benchmarks import gpu_report as gr
from benchmarks.pytest_outcomes import read_outcomes

ROOT = Path(__file__).resolve().parents[1]


def expected_cuda_tests() -> int:
    from tests.cuda import matrix, test_scripts
    from tests.golden import fixture_names
    from tests.test_attention_matrix import CASES

    checks_per_map = 1 + len(matrix.AMP_DTYPES) + 1 + 1  # fp32, autocast per dtype, half, deterministic
    return len(CASES) * len(matrix.MAPS) * checks_per_map + len(fixture_names()) + len(test_scripts.CONFIGS) * 5


def test_without_cuda_the_script_reports_every_gpu_part_skipped_and_exits_0(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the pytest it starts sees no GPU either, on any machine
    out = tmp_path / "report"
    assert gc.main(["--out", str(out), "--work", str(tmp_path / "work"), "--tests", "tests/cuda"]) == 0
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["cuda"] is False and report["environment"]["gpu"] == "no CUDA device"
    stages = {s["stage"]: s for s in report["stages"]}
    assert list(stages) == ["environment", "checks", "profile_b1", "train_speed", "dense_p3", "fp16", "overhead",
                            "profile_b32"]
    assert stages["checks"]["status"] == "ok", stages["checks"]
    assert stages["checks"]["note"] == f"pytest exit 0: {expected_cuda_tests()} skipped"
    for name in list(stages)[2:]:
        assert stages[name]["status"] == "skipped" and stages[name]["note"] == "no CUDA device"
    tests = report["tests"]
    assert len(tests) == expected_cuda_tests()  # collected (no pytest exit 5), every file marked cuda
    assert {(t["outcome"], t["message"]) for t in tests} == {("skipped", "no CUDA device")}
    assert {t["nodeid"].split("::")[0] for t in tests} == {"tests/cuda/test_golden.py", "tests/cuda/test_modules.py",
                                                            "tests/cuda/test_scripts.py"}
    md = (out / "gpu_check.md").read_text()
    assert "GPU: **no CUDA device**" in md and f"Skipped: no CUDA device ({len(tests)})" in md
    assert "| dense_p3 | skipped | 0 | no CUDA device |" in md
    assert report["dense_estimates"].keys() >= {"NonLocal", "DANet", "BoTMHSA", "DAttention"}


def test_every_benchmark_command_is_one_its_script_accepts(tmp_path):
    """The stages only run on a GPU: their arguments are checked here against each script's own parser."""
    import importlib

    stages = gc.benchmark_stages(tmp_path, ["NonLocal", "DANet"])
    assert [s[0] for s in stages] == ["profile_b1", "train_speed", "dense_p3", "fp16", "overhead", "profile_b32"]
    for name, estimate, cmd, outputs in stages:
        assert cmd[0] == sys.executable and (ROOT / cmd[1]).is_file() and estimate > 0, name
        args = importlib.import_module(f"benchmarks.{Path(cmd[1]).stem}").parse_opt(cmd[2:])
        assert all(p.parent == args.out for p in outputs.values()), name
    dense = importlib.import_module("benchmarks.profile_modules").parse_opt(stages[2][2][2:])
    assert (dense.levels, dense.channels, dense.modules) == (["P3"], [128], ["NonLocal", "DANet"])
    speed = importlib.import_module("benchmarks.train_speed").parse_opt(stages[1][2][2:])
    assert (speed.labels["ours"], speed.labels["ultralytics"]) == ("ours yolov5s-cbam (AttentionTrainer)",
                                                                   "ultralytics yolov5su (DetectionTrainer)")


def test_the_budget_cuts_benchmarks_and_stops_one_that_overruns_keeping_what_it_wrote(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # only the benchmark stages run, all fake
    monkeypatch.setattr(gc, "GRACE_S", 1)
    monkeypatch.setattr(gc, "POLL_S", 0.2)

    def stage(name, estimate, rows, sleep):
        csv = tmp_path / f"{name}.csv"
        code = (f"import time; open({str(csv)!r}, 'w').write('module,ms\\n' + 'SE,1.5\\n' * {rows}); "
                f"time.sleep({sleep})")
        return name, estimate, [sys.executable, "-c", code], {"rows": csv}

    fake = [stage("quick", 1, 2, 0), ("broken", 0, [str(tmp_path / "no-such-program")], {}),
            stage("too_long", 500, 1, 0), stage("overrun", 1, 1, 60), stage("after", 0, 1, 0)]
    monkeypatch.setattr(gc, "benchmark_stages", lambda work, dense: fake)
    t0 = time.monotonic()
    code = gc.main(["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--budget-s", "4",
                    "--stages", "quick", "broken", "too_long", "overrun", "after"])
    assert code == 1 and time.monotonic() - t0 < 30  # 1: a stage went wrong
    by = {s["stage"]: s for s in json.loads((tmp_path / "out" / "gpu_check.json").read_text())["stages"]}
    assert by["quick"]["status"] == "ok" and by["quick"]["rows"] == [{"module": "SE", "ms": "1.5"}] * 2
    assert by["broken"]["status"] == "error" and by["broken"]["note"].startswith("FileNotFoundError")  # and on it goes
    assert by["too_long"]["status"] == "skipped" and by["too_long"]["note"].startswith("budget: needs about 500 s, ")
    assert by["overrun"]["status"] == "stopped" and by["overrun"]["rows"] == [{"module": "SE", "ms": "1.5"}]
    assert by["overrun"]["note"] == "stopped: budget spent; partial results kept"
    assert by["after"]["status"] == "skipped" and by["after"]["note"] == "budget: needs about 0 s, 0 s of 4 s left"
    with pytest.raises(SystemExit, match="the stages are environment, checks, quick"):
        gc.main(["--stages", "quick", "typo"])


def test_a_stopped_command_takes_its_children_with_it(tmp_path):
    import psutil

    child_pid = tmp_path / "child.pid"
    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(child_pid)!r}, 'w').write(str(p.pid)); print('started', flush=True); time.sleep(60)")
    ticks = []
    returncode, tail = gc.run([sys.executable, "-c", code], tmp_path / "log.txt", 2, lambda: ticks.append(1))
    assert returncode is None and tail == "started" and ticks
    child = int(child_pid.read_text())

    def alive():
        try:
            return psutil.Process(child).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:  # SIGKILL is delivered asynchronously
        time.sleep(0.1)
    assert not alive()
    assert gc.run([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "log2.txt", 30) == (3, "")


def test_the_outcome_plugin_records_each_test_with_what_it_measured(tmp_path):
    (tmp_path / "test_sample.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("no fixture for you")

        @pytest.fixture
        def leaky():
            yield
            raise RuntimeError("teardown went wrong")

        def test_passes(record_property):
            record_property("case", "SE")
            record_property("out", 1e-3)

        def test_fails(record_property):
            record_property("case", "CBAM")
            assert 1 == 2, "one is not two"

        def test_skips():
            pytest.skip("no CUDA device")

        def test_setup_error(broken):
            pass

        def test_teardown_error(leaky, record_property):
            record_property("case", "ECA")
    """))
    jsonl = tmp_path / "out.jsonl"
    p = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path / "test_sample.py"), "-o", "addopts=", "-q",
                        "-p", "no:cacheprovider", "-p", "benchmarks.pytest_outcomes", "--outcomes", str(jsonl)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    with open(jsonl, "a") as f:  # a run killed part-way: a cut line, a test collected but never reported
        f.write('{"collected": ' + json.dumps([json.loads(jsonl.read_text().splitlines()[0])["collected"][0]
                                                .replace("test_passes", "test_never")]) + "}\n" + '{"nodeid": "x')
    assert [t["outcome"] for t in read_outcomes(jsonl)] == ["not run", "passed", "failed", "skipped", "error", "error"]
    by = {t["nodeid"].split("::")[-1]: t for t in read_outcomes(jsonl)}
    assert by["test_passes"]["props"] == {"case": "SE", "out": 1e-3} and by["test_passes"]["seconds"] >= 0
    assert by["test_fails"]["props"] == {"case": "CBAM"} and "one is not two" in by["test_fails"]["message"]
    assert by["test_skips"]["message"] == "no CUDA device"
    assert "no fixture for you" in by["test_setup_error"]["message"]
    # passed, then failed at teardown: the worse outcome, with what the call recorded
    assert by["test_teardown_error"]["when"] == "teardown" and by["test_teardown_error"]["props"] == {"case": "ECA"}


def sample_report() -> dict:
    def t(nodeid, outcome, message="", **props):
        return {"nodeid": nodeid, "outcome": outcome, "seconds": 12.0, "message": message, "props": props}

    return {"command": "python benchmarks/gpu_check.py", "budget_s": 400, "seconds": 300, "cuda": True,
            "environment": {"gpu": "NVIDIA H100 80GB HBM3", "gpu_memory_gib": 79.1, "compute_capability": "9.0",
                            "driver": "580.1", "torch": "2.11.0", "cuda_build": "13.0", "cudnn": 91000,
                            "ultralytics": "8.4.190", "onnxruntime": "1.30.0",
                            "onnxruntime_providers": ["CPUExecutionProvider"], "python": "3.12", "date": "d"},
            "stages": [{"stage": "environment", "status": "ok", "seconds": 1, "note": ""},
                       {"stage": "checks", "status": "failed", "seconds": 250, "note": "pytest exit 1"},
                       {"stage": "profile_b1", "status": "ok", "seconds": 30, "note": "", "rows": [
                           {"module": "SE", "impl": "ours", "fwd_ms": "0.04", "fwdbwd_ms": "0.2", "peak_mb": "0.3",
                            "status": "ok"},
                           {"module": "SE", "impl": "timm", "ratio_fwd": "0.98", "ratio_fwdbwd": "1.02",
                            "status": "ok"}]},
                       {"stage": "profile_b32", "status": "ok", "seconds": 30, "note": "", "rows": [
                           {"module": "SE", "impl": "ours", "fwdbwd_ms": "1.25", "status": "ok"}]},
                       {"stage": "train_speed", "status": "ok", "seconds": 80, "note": "", "rows": [
                           {"measure": "train_epoch_s", "model": "ours yolov5s-cbam (AttentionTrainer)", "round": "0",
                            "value": "3.3", "params": "9186564", "imgsz": "320", "batch": "16", "epochs_timed": "2"},
                           {"measure": "train_epoch_s", "model": "ultralytics yolov5su (DetectionTrainer)",
                            "round": "0", "value": "3.0", "params": "9153152", "imgsz": "320", "batch": "16",
                            "epochs_timed": "2"}]},
                       {"stage": "dense_p3", "status": "ok", "seconds": 20, "note": "", "rows": [
                           {"module": "NonLocal", "c": "128", "h": "80", "w": "80", "peak_mb": "120.0",
                            "fwdbwd_ms": "2.5", "status": "ok"}]},
                       {"stage": "fp16", "status": "ok", "seconds": 40, "note": "",
                        "models": [{"model": "yolov5s", "batch": "32", "fp16_fwd_ms": "5.0", "fp16_fwd_ratio": "1.0",
                                    "amp_train_ms": "30.0", "amp_train_ratio": "1.0"}],
                        "modules": [{"module": "SE", "library": "timm SEModule", "batch": "1", "ours_fwd_ms": "0.05",
                                     "ratio_fwd": "0.97", "ours_fwdbwd_ms": "0.2", "ratio_fwdbwd": "1.01"}]},
                       {"stage": "overhead", "status": "stopped", "seconds": 60,
                        "note": "stopped: budget spent; partial results kept", "rows": [
                            {"model": "yolov5s", "batch": "1", "fused": "False", "ms": "4.5", "ratio": "1"},
                            {"model": "yolov5s + SE", "batch": "1", "fused": "False", "ms": "4.6", "ratio": "1.021"}]}],
            "dense_estimates": {"NonLocal": 100.0},
            "tests": [
                t("tests/cuda/test_modules.py::test_fp32[20x20-SE]", "passed", case="SE", hw="20x20", check="fp32"),
                t("tests/cuda/test_modules.py::test_autocast[fp16-20x20-SE]", "passed", case="SE", hw="20x20",
                  check="fp16", out=4e-4, grad=6e-4),
                t("tests/cuda/test_modules.py::test_autocast[fp16-13x31-SE]", "passed", case="SE", hw="13x31",
                  check="fp16", out=5e-4, grad=7e-4),
                t("tests/cuda/test_modules.py::test_autocast[bf16-20x20-SK-official]", "failed",
                  "AssertionError: bf16 autocast differs from fp32", case="SK-official", hw="20x20", check="bf16",
                  out=8.6e-3, grad=float("inf")),
                t("tests/cuda/test_golden.py::test_float32_matches_the_official_code[ECA]", "passed", fixture="ECA",
                  module="ECA", form="official", max_abs=3e-7, rel=3e-7),
                t("tests/cuda/test_scripts.py::test_train[yolov5s-cbam]", "passed", config="yolov5s-cbam",
                  check="train", map50=0.123, amp="AMP: checks passed on this model (1.0e-03) ✅",
                  nondeterministic=["UserWarning: upsample_x_backward does not have a deterministic implementation"]),
                t("tests/cuda/test_scripts.py::test_export_onnx[yolov5s-cbam]", "passed", config="yolov5s-cbam",
                  check="export", providers=["CUDAExecutionProvider", "CPUExecutionProvider"], max_abs_diff=2e-3),
                t("tests/cuda/test_scripts.py::test_val[yolov5s-cbam-anchor-half]", "skipped",
                  "train.py failed for yolov5s-cbam-anchor.yaml (see test_train[yolov5s-cbam-anchor])",
                  config="yolov5s-cbam-anchor", check="val half"),
                t("tests/cuda/test_scripts.py::test_detect[yolov5s-cbam]", "not run"),
            ]}


def test_the_report_renders_every_section_from_the_json(tmp_path):
    jp, mp = gr.write_report(tmp_path, sample_report())
    md = mp.read_text()
    saved = json.loads(jp.read_text())
    assert saved["tests"][3]["props"]["grad"] == "inf"  # JSON has no Infinity
    assert gr.render_markdown(saved) == md  # the JSON alone renders the same page (--render-only)
    for text in ("GPU: **NVIDIA H100 80GB HBM3**, 79.1 GiB, compute capability 9.0, driver 580.1",
                 "| checks | failed | 250 | pytest exit 1 |",
                 "9 collected: 6 passed, 1 failed, 1 skipped, 1 not run.",
                 "- `tests/cuda/test_modules.py::test_autocast[bf16-20x20-SK-official]`: AssertionError: bf16 autocast",
                 "Not run (the tests were stopped): 1, from `tests/cuda/test_scripts.py::test_detect[yolov5s-cbam]`.",
                 "| SE | ok | 5.0e-04 | 7.0e-04 | – | – | 0.040 | 0.200 | 0.3 | 1.250 | timm 0.98 / 1.02 |",
                 "| SK-official | bf16 20x20: failed | – | – | 8.6e-03 | inf | – |",
                 "| ECA | ECA | official | 3.0e-07 | 3.0e-07 | passed |",
                 "| yolov5s-cbam | train | passed | 12 | mAP50 0.123; AMP: checks passed on this model",
                 "| yolov5s-cbam | export | passed | 12 | CUDAExecutionProvider, CPUExecutionProvider; max diff 2.0e-03 |",
                 "| yolov5s-cbam-anchor | val half | skipped | 12 | train.py failed for yolov5s-cbam-anchor.yaml",
                 "`UserWarning: upsample_x_backward does not have a deterministic implementation`",
                 "**ours / ultralytics epoch time: 1.100**",
                 "| NonLocal | 128, 80x80 | 120.0 | 100.0 | 1.20 | 2.50 | ok |",
                 "| yolov5s | 32 | 5.00 | 1.00 | 30.00 | 1.00 |", "| SE | timm SEModule | 1 | 0.050 | 0.97 |",
                 "| yolov5s | 4.50 ms |", "| yolov5s + SE | 1.021 |"):
        assert text in md, text


def test_the_benchmarks_page_gets_one_gpu_check_section_with_the_last_result(tmp_path):
    page = tmp_path / "bench.md"
    page.write_text("# Benchmarks\n\n## Module profiler\n\ntable\n")
    gr.write_report(tmp_path / "bench", {"stages": []})
    assert "Not run on a GPU yet" in page.read_text()
    page.write_text(page.read_text() + "\n## Later section\n\nkept\n")
    gr.write_report(tmp_path / "bench", sample_report())
    gr.write_report(tmp_path / "bench", sample_report())  # rewritten, not appended twice
    text = page.read_text()
    assert text.count("## GPU check") == 1 and "## Module profiler\n\ntable" in text and "## Later section\n\nkept" in text
    assert "pip install -r\nrequirements-dev.txt" in text and "Not run on a GPU yet" not in text
    assert ("Last run: **NVIDIA H100 80GB HBM3**, torch 2.11.0 (CUDA 13.0), d: 9 tests, 6 passed, 1 failed, "
            "1 skipped, 1 not run; stages environment ok, checks failed") in text
    assert "[`bench/gpu_check.md`](bench/gpu_check.md)" in text
    assert (tmp_path / "bench" / "gpu_check.summary.md").read_text().startswith("## GPU check")
    (tmp_path / "bench" / "gpu_check.md").unlink()  # a report copied back from a GPU machine renders in place
    assert gc.main(["--render-only", "--out", str(tmp_path / "bench")]) == 0
    assert "| checks | failed |" in (tmp_path / "bench" / "gpu_check.md").read_text()


def test_a_rendering_bug_still_leaves_the_json(tmp_path, monkeypatch):
    monkeypatch.setattr(gr, "render_markdown", lambda report: 1 / 0)
    jp, mp = gr.write_report(tmp_path, {"stages": []})
    assert json.loads(jp.read_text()) == {"stages": []}
    assert "could not be rendered (ZeroDivisionError" in mp.read_text()
