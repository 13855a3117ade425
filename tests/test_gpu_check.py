"""benchmarks/gpu_check.py without a GPU: steps isolated, budget enforced, "no CUDA" reported, checks that can fail;
and the trainer's own AMP check, which replaces ultralytics' (that one loads, and may download, yolo26n.pt)."""

from __future__ import annotations

import json
import logging
import types

import pytest
import torch
from torch import nn

from benchmarks import gpu_check as gc

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def fake_step(name, clock, seconds, result=None, error=None, **kw):
    def run(ctx):
        clock.t += seconds
        if error:
            raise error
        return result or {}

    return gc.Step(name, run, kw.pop("estimate_s", 1), needs_cuda=kw.pop("needs_cuda", False), **kw)


# ------------------------------------------------------------------------------------------- step machinery


def test_a_failing_step_is_recorded_and_the_next_one_runs_until_the_budget_is_spent(tmp_path):
    clock = FakeClock()
    steps = [
        fake_step("a", clock, 10, {"value": 1}),
        fake_step("b", clock, 5, error=ValueError("boom")),
        fake_step("c", clock, 5, {"failures": ["c: output differs"]}),
        fake_step("d", clock, 1, needs=("b",)),          # its prerequisite failed
        fake_step("e", clock, 1, estimate_s=500),        # would not fit in what is left
        fake_step("gpu", clock, 1, needs_cuda=True),     # no CUDA in this context
        fake_step("f", clock, 80),                       # runs, and spends the rest of the budget
        fake_step("g", clock, 1),
    ]
    ctx = gc.Context(budget_s=100, cuda=False, work=tmp_path, clock=clock)
    seen = []
    records = gc.run_steps(steps, ctx, seen.append)
    by = {r["step"]: r for r in records}
    assert [r["step"] for r in seen] == list("abcde") + ["gpu", "f", "g"]  # reported one by one, as they finish
    assert by["a"]["status"] == "ok" and by["a"]["value"] == 1 and by["a"]["seconds"] == 10
    assert by["b"]["status"] == "error" and by["b"]["failures"] == ["ValueError: boom"] and "boom" in by["b"]["traceback"]
    assert by["c"]["status"] == "failed" and by["c"]["failures"] == ["c: output differs"]
    assert by["d"]["status"] == "skipped" and by["d"]["note"] == "needs b (error)"
    assert by["e"]["status"] == "skipped" and by["e"]["note"] == "budget: needs about 500 s, 80 s of 100 s left"
    assert by["gpu"]["status"] == "skipped" and by["gpu"]["note"] == "no CUDA device"
    assert by["f"]["status"] == "ok"
    assert by["g"]["status"] == "skipped" and by["g"]["note"].startswith("budget of 100 s used up")


def test_a_subprocess_is_killed_when_it_outlives_its_share(tmp_path):
    import sys

    ctx = gc.Context(budget_s=10, cuda=False, work=tmp_path, step_limit_s=1)
    with pytest.raises(TimeoutError, match="ran past its 1 s"):
        gc.run_command([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"], ctx,
                       tmp_path / "log.txt")
    assert "started" in (tmp_path / "log.txt").read_text()
    with pytest.raises(RuntimeError, match="exited 3"):
        gc.run_command([sys.executable, "-c", "raise SystemExit(3)"], ctx, tmp_path / "log2.txt")


def test_without_cuda_the_report_says_so_and_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "report"
    code = gc.main(["--out", str(out), "--work", str(tmp_path / "work"), "--steps", "environment", "module_matrix",
                    "train:*", "export:*", "overhead"])
    assert code == 0  # nothing failed: the GPU steps were skipped, not failed
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["cuda"] is False
    by = {s["step"]: s for s in report["steps"]}
    assert set(by) == {"environment", "module_matrix", "train:yolov5s-cbam", "train:yolov5s-cbam-anchor",
                       "export:yolov5s-cbam", "export:yolov5s-cbam-anchor", "overhead"}
    env = by["environment"]["environment"]
    assert by["environment"]["status"] == "ok" and env["gpu"] == "no CUDA device" and env["torch"] == torch.__version__
    assert env["cublas_workspace_config"] == ":4096:8"
    for name in set(by) - {"environment"}:
        assert by[name]["status"] == "skipped" and by[name]["note"] == "no CUDA device", by[name]
    md = (out / "gpu_check.md").read_text()
    assert "GPU: **no CUDA device**" in md and "| module_matrix | skipped | 0 | no CUDA device |" in md
    # --append keeps the other steps' results
    gc.main(["--out", str(out), "--work", str(tmp_path / "work"), "--steps", "environment", "--append"])
    again = json.loads((out / "gpu_check.json").read_text())
    assert {s["step"] for s in again["steps"]} == set(by)


def test_a_cpu_run_never_replaces_the_gpu_report_in_the_docs(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gc, "DEFAULT_OUT", tmp_path / "docs" / "benchmarks")
    gc.main(["--work", str(tmp_path / "work"), "--steps", "module_matrix"])
    assert not (tmp_path / "docs").exists()
    assert json.loads((tmp_path / "work" / "gpu_check.json").read_text())["steps"][0]["note"] == "no CUDA device"


def test_unknown_step_names_list_the_steps():
    with pytest.raises(SystemExit, match="no step matches; steps are environment, module_matrix"):
        gc.build_steps(["trian:*"])


# -------------------------------------------------------------------------------------------- module matrix


def test_module_matrix_passes_real_modules_on_cpu():
    result = gc.module_matrix(None, names=["SE", "CBAM"], device="cpu")
    assert result["failures"] == []
    rows = result["modules"]
    assert [(r["module"], r["hw"]) for r in rows] == [("CBAM", "20x20"), ("CBAM", "13x31"), ("SE", "20x20"),
                                                       ("SE", "13x31")]
    for r in rows:
        assert r["fp32"] == "ok" and r["half"] == "ok" and r["deterministic"] == "bit-equal"
        assert 0 < r["fp16_out"] < gc.TOLERANCE["fp16"][0] and 0 < r["bf16_out"] < gc.TOLERANCE["bf16"][0]
        assert r["fp16_out"] < r["bf16_out"]  # 11 bits of mantissa against 8


class HotEnergies(nn.Module):
    """Self-attention energies without scaling or an fp32 softmax: q.k of activations ~10 overflows fp16."""

    def __init__(self, c):
        super().__init__()
        self.q = nn.Conv2d(c, c, 1)

    def forward(self, x):
        q = self.q(x).flatten(2)
        energy = q.transpose(1, 2) @ q * 1e3
        return x + (energy.softmax(-1) @ x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(x.shape)


class Float32Constant(nn.Module):
    """Builds a float32 constant in forward (as many ports do): under .half() the output silently becomes fp32."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return x * torch.ones(1, self.c, 1, 1, device=x.device)


class Noisy(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return self.conv(x) + 1e-3 * torch.rand_like(x)


class NoDeterministicKernel(nn.Module):
    """Stands for a CUDA kernel without a deterministic implementation (adaptive max pooling's backward)."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x):
        if torch.are_deterministic_algorithms_enabled():
            raise RuntimeError("adaptive_max_pool2d_backward_cuda does not have a deterministic implementation")
        return self.conv(x)


@pytest.mark.parametrize("cls, expected", [
    (HotEnergies, "fp16 autocast forward on activations of ~10 is not finite"),
    (Float32Constant, ".half() forward on activations of ~10: torch.float32"),
    (Noisy, "deterministic mode: differs: "),
    (NoDeterministicKernel, "deterministic mode: error: adaptive_max_pool2d_backward_cuda does not have"),
])
def test_module_matrix_names_each_kind_of_failure(cls, expected):
    spec = types.SimpleNamespace(name=cls.__name__, cls=cls)
    row = gc.module_case(spec, "cpu", c=16, hw=(8, 8))
    assert any(expected in f for f in row["failures"]), row["failures"]
    assert all(f.startswith(cls.__name__ + ": ") for f in row["failures"])
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the deterministic runs


def test_determinism_audit_flags_operations_that_raise_on_cuda():
    m = nn.Sequential(nn.AdaptiveMaxPool2d(3), nn.Upsample(size=(12, 20), mode="bilinear"))
    assert gc.dispatched_ops(m, torch.randn(2, 4, 12, 20)) & gc.CUDA_NONDETERMINISTIC_OPS == {
        "adaptive_max_pool2d_backward", "upsample_bilinear2d_backward"}
    assert not gc.dispatched_ops(nn.AdaptiveAvgPool2d(1), torch.randn(2, 4, 12, 20)) & gc.CUDA_NONDETERMINISTIC_OPS
    audit = gc.determinism_audit(None, names=["CoordAtt", "ECA"])
    assert [r["module"] for r in audit["audit"]] == ["CoordAtt", "ECA"] and audit["predicted_to_raise"] == {}


# ------------------------------------------------------------------------------------------------- reports


def test_report_renders_every_section_and_names_every_failure(tmp_path):
    report = {"command": "python benchmarks/gpu_check.py", "budget_s": 480, "seconds": 300, "steps": [
        {"step": "environment", "status": "ok", "seconds": 1, "note": "", "failures": [],
         "environment": {"gpu": "NVIDIA H200", "gpu_memory_gib": 139.8, "compute_capability": "9.0", "driver": "580",
                         "torch": "2.11.0", "cuda_build": "13.0", "cudnn": 91000, "ultralytics": "8.4.190",
                         "onnxruntime": "1.30.0", "onnxruntime_providers": ["CPUExecutionProvider"], "python": "3.12"}},
        {"step": "module_matrix", "status": "failed", "seconds": 40, "note": "", "tolerance": gc.TOLERANCE,
         "failures": ["CBAM: deterministic mode: error: adaptive_max_pool2d_backward_cuda does not have ..."],
         "modules": [{"module": "CBAM", "hw": "20x20", "fp32": "ok", "fp16_out": 4e-4, "fp16_grad": 6e-4,
                      "bf16_out": float("inf"), "bf16_grad": None, "half": "ok", "deterministic": "error: x",
                      "failures": ["x"]}]},
        {"step": "train:yolov5s-cbam", "status": "ok", "seconds": 50, "note": "", "failures": [], "epochs": 2,
         "map50": 0.123, "amp_log": ["AMP: checks passed on this model"],
         "nondeterministic_warnings": ["UserWarning: upsample_x_backward does not have a deterministic implementation"]},
        {"step": "export:yolov5s-cbam", "status": "ok", "seconds": 9, "note": "", "failures": [],
         "providers": ["CUDAExecutionProvider"], "max_abs_diff": 2e-3},
        {"step": "fp16_models", "status": "ok", "seconds": 20, "note": "", "failures": [], "rows": [
            {"model": "yolov5s", "batch": 32, "fp16_fwd_ms": 5.0, "fp16_fwd_ratio": 1.0, "amp_train_ms": 30.0,
             "amp_train_ratio": 1.0}]},
        {"step": "fp16_modules", "status": "ok", "seconds": 9, "note": "", "failures": [], "rows": [
            {"module": "SE", "library": "timm SEModule", "batch": 1, "ours_fwd_ms": 0.05, "ratio_fwd": 0.97,
             "ours_fwdbwd_ms": 0.2, "ratio_fwdbwd": 1.01}]},
        {"step": "profile_b1", "status": "ok", "seconds": 30, "note": "", "failures": [], "rows": [
            {"module": "SE", "impl": "ours", "batch": "1", "fwd_ms": "0.04", "fwdbwd_ms": "0.2", "peak_mb": "0.3",
             "status": "ok"},
            {"module": "SE", "impl": "timm", "batch": "1", "ratio_fwd": "0.98", "ratio_fwdbwd": "1.02", "status": "ok"}]},
        {"step": "overhead", "status": "ok", "seconds": 90, "note": "", "failures": [], "rows": [
            {"model": "yolov5s", "batch": "1", "fused": "False", "ms": "4.5", "ratio": "1"},
            {"model": "yolov5s + SE", "batch": "1", "fused": "False", "ms": "4.6", "ratio": "1.021"}]},
        {"step": "profile_b32", "status": "skipped", "seconds": 0, "note": "budget: needs about 45 s, 10 s of 480 s left",
         "failures": []},
    ]}
    jp, mp = gc.write_report(tmp_path, report)
    md = mp.read_text()
    assert json.loads(jp.read_text())["steps"][1]["modules"][0]["bf16_out"] == "inf"  # JSON has no Infinity
    for text in ("GPU: **NVIDIA H200**, 139.8 GiB, compute capability 9.0", "## Failures (1)",
                 "- CBAM: deterministic mode: error: adaptive_max_pool2d_backward_cuda", "| CBAM | 20x20 | ok | 4.0e-04 |",
                 "| inf |", "| yolov5s-cbam | ok | 2 | 0.123 | AMP: checks passed on this model |",
                 "CUDAExecutionProvider, max diff 2.0e-03",
                 "while training (ultralytics sets `warn_only=True`): `UserWarning: upsample_x_backward does not have", "| yolov5s | 32 | 5.00 | 1.00 | 30.00 | 1.00 |",
                 "| SE | timm SEModule | 1 | 0.050 | 0.97 |", "| SE | 1 | 0.040 | 0.200 | 0.3 | timm 0.98 / 1.02 | ok |",
                 "| yolov5s | 4.50 ms |", "| yolov5s + SE | 1.021 |",
                 "| profile_b32 | skipped | 0 | budget: needs about 45 s, 10 s of 480 s left |"):
        assert text in md, text


def test_the_benchmarks_page_gets_one_gpu_check_section_with_the_last_result(tmp_path):
    page = tmp_path / "bench.md"
    page.write_text("# Benchmarks\n\n## Module profiler\n\ntable\n")
    report = {"steps": [{"step": "environment", "status": "ok", "failures": [],
                         "environment": {"gpu": "NVIDIA H200", "torch": "2.11.0", "cuda_build": "13.0", "date": "d"}},
                        {"step": "module_matrix", "status": "failed", "failures": ["a", "b"]}]}
    gc.write_report(tmp_path / "bench", report)
    gc.write_report(tmp_path / "bench", report)  # rewritten, not appended twice
    page.write_text(page.read_text() + "\n## Later section\n\nkept\n")
    gc.write_report(tmp_path / "bench", {"steps": []})
    text = page.read_text()
    assert text.count("## GPU check") == 1 and "## Module profiler\n\ntable" in text and "## Later section\n\nkept" in text
    assert "Not run on a GPU yet" in text
    gc.write_report(tmp_path / "bench", report)
    text = page.read_text()
    assert "Last run: **NVIDIA H200**, torch 2.11.0 (CUDA 13.0), d: 1 steps ok, 1 failed, 0 errors, 0 skipped; " \
           "2 failure(s) named in [`bench/gpu_check.md`](bench/gpu_check.md)" in text
    assert (tmp_path / "bench" / "gpu_check.summary.md").read_text().startswith("## GPU check")
    # a report copied back from a GPU machine is re-rendered in place, nothing run
    (tmp_path / "bench" / "gpu_check.md").unlink()
    assert gc.main(["--render-only", "--out", str(tmp_path / "bench")]) == 0
    assert "| module_matrix | failed |" in (tmp_path / "bench" / "gpu_check.md").read_text()


def test_a_rendering_bug_still_leaves_the_json(tmp_path, monkeypatch):
    monkeypatch.setattr(gc, "render_markdown", lambda report: 1 / 0)
    jp, mp = gc.write_report(tmp_path, {"steps": []})
    assert json.loads(jp.read_text()) == {"steps": []}
    assert "could not be rendered (ZeroDivisionError" in mp.read_text()


def test_fp16_benchmark_steps_run_on_cpu(monkeypatch):
    """The fp16 latency steps' models, train steps and library comparisons run (each callable once; the interleaved
    timer itself is tools.measure's, tested with the profilers)."""
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
    models = gc.fp16_models(None, batches=(1,), imgsz=64, device="cpu", scale="n")["rows"]
    assert [r["model"] for r in models] == ["yolov5n", "yolov5nu (ultralytics)", "yolov5n-cbam"]
    assert [r["fp16_fwd_ratio"] for r in models] == [1.0, 1.5, 2.0] and models[2]["amp_train_ms"] == 4.0
    assert calls == [r["model"] for r in models] * 2  # train steps, then fp16 forwards
    pytest.importorskip("timm")
    mods = gc.fp16_modules(None, batches=(1,), c=32, hw=8, device="cpu")["rows"]
    assert {r["module"] for r in mods} >= {"SE", "CBAM", "ECA"}
    se = [r for r in mods if r["module"] == "SE"]
    assert [r["library"] for r in se] == ["torchvision SqueezeExcitation", "timm SEModule"]
    assert [r["ratio_fwd"] for r in se] == [2 / 3, 0.5]  # medians of per-round ratios


@pytest.mark.slow
def test_train_val_detect_export_steps_chain_on_cpu(tmp_path, tiny_data):
    """The GPU run's train -> val -> detect -> export steps, on CPU with a tiny dataset (about a minute)."""
    steps = gc.build_steps(["dataset", "*:yolov5n-cbam-anchor"], configs=("yolov5n-cbam-anchor.yaml",), data=tiny_data,
                           imgsz=64, epochs=1, batch=8)
    ctx = gc.Context(budget_s=600, cuda=True, work=tmp_path, device="cpu")  # pretend: run the GPU steps on CPU
    records = {r["step"]: r for r in gc.run_steps(steps, ctx)}
    assert {k: r["status"] for k, r in records.items()} == {
        "dataset": "ok", "train:yolov5n-cbam-anchor": "ok", "val:yolov5n-cbam-anchor": "ok",
        "detect:yolov5n-cbam-anchor": "ok", "export:yolov5n-cbam-anchor": "ok"}, [r["failures"] for r in records.values()]
    assert records["train:yolov5n-cbam-anchor"]["epochs"] == 1
    assert records["val:yolov5n-cbam-anchor"]["metrics_lines"]["fp32"].startswith("all ")
    assert records["detect:yolov5n-cbam-anchor"]["outputs"]["video"]
    assert records["export:yolov5n-cbam-anchor"]["output_shape"][1] == 4 + 5


# ------------------------------------------------------------------------------------- the trainer's AMP check


def test_amp_check_compares_the_users_own_model_and_passes_a_healthy_one():
    from models.engine.checks import AMP_TOLERANCE, amp_disagreement
    from models.yolo import build_model

    model = build_model("yolov5n-cbam.yaml", nc=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    worst, where = amp_disagreement(model, imgsz=128, dtype=torch.float16)
    assert 0 < worst < AMP_TOLERANCE, (worst, where)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched


class OverflowingDetector(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.stride = torch.tensor([8.0])

    def forward(self, x):
        f = self.conv(x).flatten(2) * 100
        return [f @ f.transpose(1, 2)]  # energies of ~1e5 and more: inf in fp16


def test_amp_check_disables_amp_when_fp16_overflows(caplog):
    from models.engine.checks import amp_disagreement, amp_verdict

    worst, where = amp_disagreement(OverflowingDetector(), 64)
    assert worst == float("inf") and where == "output 0 (2, 8, 8)"
    from ultralytics.utils import LOGGER

    LOGGER.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING):
            assert amp_verdict(OverflowingDetector(), 64) is False
    finally:
        LOGGER.removeHandler(caplog.handler)
    assert "AMP: checks failed: autocast changes this model's output 0 (2, 8, 8) by inf" in caplog.text


def test_amp_check_that_cannot_run_keeps_amp(monkeypatch):
    import models.engine.checks as trainer

    def broken(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(trainer, "amp_disagreement", broken)
    assert trainer.amp_verdict(nn.Conv2d(3, 3, 1), 64) is True


def test_trainer_uses_its_own_amp_check_and_never_ultralytics(monkeypatch):
    """ultralytics' check_amp would load yolo26n.pt (downloading it when absent); the trainer swaps in its own."""
    import ultralytics.engine.trainer as engine
    from ultralytics.models.yolo.detect import DetectionTrainer

    from models.engine.trainer import AttentionTrainer

    original = engine.check_amp
    seen = {}

    def fake_setup(self):  # what ultralytics' _setup_train does with the name, at the point it does it
        seen["result"] = engine.check_amp(self.model)

    monkeypatch.setattr(DetectionTrainer, "_setup_train", fake_setup)
    monkeypatch.setattr(AttentionTrainer, "print_plan", lambda self: "")  # needs the loaders the stub does not make
    trainer = object.__new__(AttentionTrainer)
    trainer.model = nn.Conv2d(3, 3, 1)  # on CPU: AMP is off, as in ultralytics, and nothing is loaded
    trainer._setup_train()
    assert seen["result"] is False
    assert engine.check_amp is original  # restored afterwards


def test_golden_step_compares_every_fixture_in_float32_and_names_a_departure(monkeypatch):
    """The golden step on CPU (the same code runs on CUDA): float32 against the official float64 outputs passes, a
    fixture whose module departs is named, and the report renders its table."""
    from tests import golden

    monkeypatch.setattr(golden, "fixture_names", lambda: ["SE", "ECA"])
    result = gc.golden_check(None, device="cpu")
    assert result["failures"] == [], result["failures"]
    assert set(result["fixtures"]) == {"SE", "ECA"}
    for row in result["fixtures"].values():
        assert 0 <= row["rel"] <= gc.GOLDEN_RTOL and row["form"] == "official"
    real = golden.max_differences
    monkeypatch.setattr(golden, "max_differences", lambda fx, **kw: {k: v + 1.0 for k, v in real(fx, **kw).items()})
    bad = gc.golden_check(None, device="cpu")
    assert len(bad["failures"]) == 2 and bad["failures"][0].startswith("golden SE: float32 on cpu differs")
    md = gc.render_markdown({"steps": [{"step": "golden", "status": "failed", "seconds": 1, "note": "",
                                        "failures": bad["failures"], **bad}]})
    assert "## Golden fixtures (CUDA, float32, TF32 off)" in md and "| SE | SE | official |" in md and "FAIL" in md
