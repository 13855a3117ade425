"""The GPU check's report: the machine it ran on, ``gpu_check.json`` (everything), ``gpu_check.md`` (rendered from
it) and the "GPU check" section of the benchmarks page (``<out>.md``, i.e. docs/benchmarks.md). Rendering needs only
the JSON, so a report copied back from a GPU machine is re-rendered anywhere (``gpu_check.py --render-only``)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import subprocess
import time
from collections import Counter
from pathlib import Path

from tools.measure import fnum, markdown_table

PAGE_SECTION = "## GPU check"
HOW_TO = """`python benchmarks/gpu_check.py` checks the project on a CUDA GPU and measures it there, in one command:

1. The cuda-marked tests, `python -m pytest -m cuda` (tests/cuda/; the default run leaves them out, and without a
   GPU they skip with "no CUDA device"): every registered module in every form in fp32, fp16 and bf16 autocast
   (close to fp32, finite on activations of ~10), under `.half()`, and twice under
   `torch.use_deterministic_algorithms(True)` (bit-equal); every golden fixture in float32 with TF32 off (within
   1e-4 of the official code's output); `train.py` 2 epochs with AMP at 320 px on the shapes dataset (our AMP check
   passes, nothing is downloaded), `val.py` in fp32 and `--half`, `detect.py` on images and a video, `export.py
   --include onnx` run in onnxruntime against PyTorch, for yolov5s-cbam and yolov5s-cbam-anchor.
2. The CUDA benchmarks, while the budget lasts: the module profiler's CUDA columns (batch 1), training throughput
   of yolov5s-cbam against ultralytics' yolov5su with AMP, the dense modules' memory at P3 against the estimate of
   the training-time memory check, fp16 latency of models and modules, the model-overhead table at batch 1 and 32,
   the profiler at batch 32.

Time: `--budget-s` (400 s by default, counted from the start) bounds the run; it cuts benchmarks, never tests
(`--checks-timeout-s`, 330 s, stops the tests); a benchmark still running when the budget is spent is stopped 20 s
later, its partial results kept. Expected on one H100: the tests in 3 to 4 minutes, the whole run in about 7 (an
estimate until a GPU run's stage table gives the seconds each part took). The report (`gpu_check.json`,
`gpu_check.md`) is rewritten after every stage and while the tests run, so a run killed part-way leaves one.
Without CUDA the command writes a report saying "no CUDA device" and exits 0. The tests alone: `pytest -m cuda`;
`pytest -m cuda --cuda-device cpu` runs them on the CPU (the scripts at 64 px) to check the tests themselves.

On a bare GPU machine: Python 3.10+ with a CUDA build of torch and torchvision, then `pip install -r
requirements-dev.txt` (ultralytics==8.4.190 brings polars, psutil and ultralytics-thop; scipy, cloudpickle, onnx,
onnxruntime, grad-cam, pytest, pytest-xdist, timm). Without network, download the wheels elsewhere for the same
platform and Python (`pip download -r requirements-dev.txt -d wheels`) and `pip install --no-index --find-links
wheels -r requirements-dev.txt`. onnxruntime-gpu in place of onnxruntime lets the export test use the CUDA
provider. Then `python benchmarks/gpu_check.py --out <folder>`; copy the folder's `gpu_check.json` into
`docs/benchmarks/` and `python benchmarks/gpu_check.py --render-only` renders the report and this section.
"""
CHECKS = ("fp32", "fp16", "bf16", "half", "deterministic")


def _sci(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "–"
    return f"{v:.1e}" if math.isfinite(v) else str(v)


def _jsonable(v):
    """Plain JSON: non-finite floats as the strings "inf" / "-inf" / "nan", other objects as text."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)


def _stage(report: dict, name: str) -> dict:
    return next((s for s in report.get("stages", []) if s["stage"] == name), {})


def _worst(values) -> float | None:
    nums = [float(v) for v in values if v is not None]
    return max(nums) if nums else None


# ------------------------------------------------------------------------------------------------- machine


def environment(cuda: bool) -> dict:
    """The machine and library versions the report starts with."""
    import platform

    import torch
    import ultralytics

    from tools.measure import cpu_name

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda_build": torch.version.cuda or "",
           "ultralytics": ultralytics.__version__, "cpu": cpu_name(), "cpu_count": os.cpu_count(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "gpu": "no CUDA device"}
    for pkg in ("torchvision", "onnx", "onnxruntime", "timm", "cv2"):
        try:
            env[pkg] = __import__(pkg).__version__
        except Exception:
            env[pkg] = ""
    env["onnxruntime_providers"] = __import__("onnxruntime").get_available_providers() if env["onnxruntime"] else []
    if cuda:
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   compute_capability=f"{p.major}.{p.minor}", cudnn=torch.backends.cudnn.version(),
                   gpu_count=torch.cuda.device_count(), driver="?")
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)
            env["driver"] = (q.stdout.strip().splitlines() or ["?"])[0]
    return env


# -------------------------------------------------------------------------------------------------- sections


def header(report: dict) -> list[str]:
    env = report.get("environment") or {}
    lines = ["# GPU check\n", "Generated by `python benchmarks/gpu_check.py`; do not edit by hand.\n"]
    if env:
        lines.append(f"- GPU: **{env.get('gpu', '?')}**" + (
            f", {env['gpu_memory_gib']} GiB, compute capability {env.get('compute_capability')}, driver "
            f"{env.get('driver', '?')}" if "gpu_memory_gib" in env else ""))
        lines.append(f"- torch {env.get('torch')} (CUDA {env.get('cuda_build') or '–'}, cuDNN {env.get('cudnn', '–')}), "
                     f"torchvision {env.get('torchvision') or '–'}, ultralytics {env.get('ultralytics')}, onnxruntime "
                     f"{env.get('onnxruntime') or '–'} ({', '.join(env.get('onnxruntime_providers', [])) or '–'}), "
                     f"timm {env.get('timm') or '–'}, Python {env.get('python')}")
        lines.append(f"- CPU: {env.get('cpu')} ({env.get('cpu_count')} cores); {env.get('date')}")
    lines.append(f"- Command: `{report.get('command', '')}`; budget {report.get('budget_s')} s, total "
                 f"{report.get('seconds', 0):.0f} s\n")
    stages = report.get("stages", [])
    lines += ["## Stages\n", markdown_table(["Stage", "Status", "Seconds", "Note"], [
        [s["stage"], s["status"], f"{s.get('seconds', 0):.0f}", s.get("note", "")] for s in stages], "llrl")]
    return lines


def tests_section(tests: list[dict]) -> list[str]:
    counts = Counter(t["outcome"] for t in tests)
    lines = ["\n## Tests (`pytest -m cuda`)\n", f"{len(tests)} collected: " + ", ".join(
        f"{counts[k]} {k}" for k in ("passed", "failed", "error", "skipped", "not run") if counts[k]) + ".\n"]
    bad = [t for t in tests if t["outcome"] in ("failed", "error")]
    if bad:
        lines.append("Failed or errored:\n")
        lines += [f"- `{t['nodeid']}`: " + " / ".join(str(t.get("message", "")).strip().splitlines()[:3])[:400]
                  for t in bad]
        lines.append("")
    skips = Counter(t.get("message", "") for t in tests if t["outcome"] == "skipped")
    if skips:
        lines.append("Skipped: " + "; ".join(f"{reason or '?'} ({n})" for reason, n in skips.most_common()) + ".\n")
    not_run = [t["nodeid"] for t in tests if t["outcome"] == "not run"]
    if not_run:
        lines.append(f"Not run (the tests were stopped): {len(not_run)}, from `{not_run[0]}`.\n")
    return lines


def module_section(report: dict) -> list[str]:
    """One row per module and form: the checks (both maps), autocast against fp32, and the profiler's CUDA columns."""
    cases: dict[str, dict] = {}
    for t in report.get("tests", []):
        p = t.get("props") or {}
        if "case" not in p or t["outcome"] == "skipped":
            continue
        row = cases.setdefault(p["case"], {"bad": [], "diffs": {}})
        if t["outcome"] != "passed":
            row["bad"].append(f"{p.get('check')} {p.get('hw')}: {t['outcome']}")
        for key in ("out", "grad"):
            if key in p:
                row["diffs"].setdefault(f"{p['check']} {key}", []).append(p[key])
    prof = {b: {r["module"]: r for r in _stage(report, f"profile_b{b}").get("rows", []) if r.get("impl") == "ours"}
            for b in (1, 32)}
    refs: dict[str, list[str]] = {}
    for r in _stage(report, "profile_b1").get("rows", []):
        if r.get("impl") != "ours" and r.get("status") == "ok":
            refs.setdefault(r["module"], []).append(f"{r['impl']} {fnum(r['ratio_fwd'])} / {fnum(r['ratio_fwdbwd'])}")
    names = sorted(set(cases) | set(prof[1]), key=str.lower)
    if not names:
        return []
    lines = ["\n## Modules on CUDA\n",
             "Checks (tests/cuda/test_modules.py, C=64, batch 2, maps 20x20 and 13x31): fp32, fp16 and bf16 autocast, "
             "`.half()`, deterministic mode; autocast columns: relative L2 difference from fp32 of the output / input "
             "gradient, worst of the two maps (limits fp16 1e-2 / 5e-2, bf16 5e-2 / 2e-1). Profiler (default form, "
             "`profile_modules.py --quick`: C=64, 20x20, fp32): ms per call and peak MiB of a forward+backward; "
             "ours/theirs against timm or torchvision, forward / forward+backward.\n"]
    rows = []
    for n in names:
        c, p1, p32 = cases.get(n, {"bad": [], "diffs": {}}), prof[1].get(n, {}), prof[32].get(n, {})
        checks = ("–" if n not in cases else "; ".join(c["bad"]) or "ok")
        rows.append([n, checks] + [_sci(_worst(c["diffs"].get(k, []))) for k in
                                   ("fp16 out", "fp16 grad", "bf16 out", "bf16 grad")]
                    + [fnum(p1.get("fwd_ms"), 3), fnum(p1.get("fwdbwd_ms"), 3), fnum(p1.get("peak_mb"), 1),
                       fnum(p32.get("fwdbwd_ms"), 3), "; ".join(refs.get(n, [])) or "–"])
    lines.append(markdown_table(["Module", "Checks", "fp16 out", "fp16 grad", "bf16 out", "bf16 grad", "fwd ms",
                                 "fwd+bwd ms", "peak MiB", "b32 fwd+bwd ms", "vs library"], rows, "lllllllrrrl"))
    return lines


def golden_section(tests: list[dict]) -> list[str]:
    rows = [[t["props"]["fixture"], t["props"].get("module", ""), t["props"].get("form", ""),
             _sci(t["props"].get("max_abs")), _sci(t["props"].get("rel")), t["outcome"]]
            for t in tests if "fixture" in (t.get("props") or {}) and t["outcome"] != "skipped"]
    if not rows:
        return []
    return ["\n## Golden fixtures (CUDA, float32, TF32 off)\n",
            "tests/cuda/test_golden.py: max |ours - official| over eval and train mode, and that relative to the "
            "largest official output (limit 1e-4).\n",
            markdown_table(["Fixture", "Module", "Form", "max abs", "relative", "outcome"], rows, "llllll")]


def scripts_section(tests: list[dict]) -> list[str]:
    rows, warned = [], set()
    for t in tests:
        p = t.get("props") or {}
        if "config" not in p or t["outcome"] == "skipped" and "train.py failed" not in str(t.get("message")):
            continue
        detail = {"train": lambda: f"mAP50 {fnum(p.get('map50'), 3)}; {p.get('amp', '')}",
                  "detect": lambda: f"{len(p.get('outputs', []))} files",
                  "export": lambda: f"{', '.join(p.get('providers', []))}; max diff {_sci(p.get('max_abs_diff'))}",
                  }.get(p.get("check"), lambda: p.get("metrics", ""))()
        rows.append([p["config"], p.get("check", ""), t["outcome"], fnum(t.get("seconds"), 0),
                     (detail if t["outcome"] == "passed" else str(t.get("message", "")).splitlines()[0])[:200]])
        warned |= set(p.get("nondeterministic") or [])
    if not rows:
        return []
    return ["\n## Scripts with AMP (tests/cuda/test_scripts.py: shapes dataset, 2 epochs, 320 px)\n",
            markdown_table(["Config", "Check", "Outcome", "Seconds", "Details"], rows, "lllrl"),
            "\nDeterministic-mode warnings while training (ultralytics sets `warn_only=True`): "
            + ("; ".join(f"`{w}`" for w in sorted(warned)) if warned else "none") + ".\n"]


def train_speed_section(report: dict) -> list[str]:
    rows = [r for r in _stage(report, "train_speed").get("rows", []) if r.get("measure") == "train_epoch_s"]
    if not rows:
        return []
    by = {(r["round"], r["model"].split()[0]): float(r["value"]) for r in rows}
    ratios = [by[(k, "ours")] / by[(k, "ultralytics")] for k in sorted({k for k, _ in by})
              if (k, "ours") in by and (k, "ultralytics") in by]
    r0 = rows[0]
    return ["\n## Training throughput with AMP (`train_speed.py`)\n",
            markdown_table(["Round", "Trainer", "Params", "s / epoch", "epochs timed"],
                           [[r["round"], r["model"], f"{int(r['params']):,}", fnum(r["value"], 3), r.get("epochs_timed")]
                            for r in rows], "rlrrr"),
            f"\n**ours / ultralytics epoch time: {fnum(statistics.median(ratios), 3) if ratios else '–'}** (the "
            f"shapes dataset at {r0.get('imgsz')} px, batch {r0.get('batch')}, first epoch of each run dropped).\n"]


def dense_section(report: dict) -> list[str]:
    rows = _stage(report, "dense_p3").get("rows", [])
    est = report.get("dense_estimates", {})
    if not rows:
        return []
    t = []
    for r in rows:
        e, peak = est.get(r["module"]), r.get("peak_mb")
        ratio = fnum(float(peak) / e, 2) if e and peak not in (None, "") else "–"
        t.append([r["module"], f"{r.get('c')}, {r.get('h')}x{r.get('w')}", fnum(peak, 1), fnum(e, 1), ratio,
                  fnum(r.get("fwdbwd_ms"), 2), r.get("status", "")])
    return ["\n## Dense modules at P3 (640 px input: 80x80, C=128, batch 1, fp32 forward+backward)\n",
            "Measured: the CUDA allocator's peak above parameters and input. Estimate: what the training-time memory "
            "check assumes (`attention_map_elements` x 4 bytes).\n",
            markdown_table(["Module", "C, map", "peak MiB", "estimate MiB", "measured / estimate", "fwd+bwd ms",
                            "status"], t, "llrrrrl")]


def fp16_section(report: dict) -> list[str]:
    st, lines = _stage(report, "fp16"), []
    if st.get("models"):
        lines += ["\n## fp16 latency: models (ratios to our yolov5s, same rounds, 640 px)\n", markdown_table(
            ["Model", "Batch", "fp16 fwd ms (fused)", "ratio", "AMP train step ms", "ratio"],
            [[r["model"], r["batch"], fnum(r["fp16_fwd_ms"]), fnum(r["fp16_fwd_ratio"]), fnum(r["amp_train_ms"]),
              fnum(r["amp_train_ratio"])] for r in st["models"]])]
    if st.get("modules"):
        lines += ["\n## fp16 autocast latency: ours vs timm / torchvision (ours/theirs, < 1 = ours faster)\n",
                  markdown_table(["Module", "Library", "Batch", "fwd ours ms", "fwd ratio", "fwd+bwd ours ms",
                                  "fwd+bwd ratio"],
                                 [[r["module"], r["library"], r["batch"], fnum(r["ours_fwd_ms"], 3),
                                   fnum(r["ratio_fwd"]), fnum(r["ours_fwdbwd_ms"], 3), fnum(r["ratio_fwdbwd"])]
                                  for r in st["modules"]], "llrrrrr")]
    return lines


def overhead_section(report: dict) -> list[str]:
    ov = _stage(report, "overhead").get("rows", [])
    if not ov:
        return []
    cols = sorted({(int(r["batch"]), r["fused"]) for r in ov})
    cell = {(r["model"], int(r["batch"]), r["fused"]): r for r in ov}
    t = [[m] + ["–" if (r := cell.get((m, b, f))) is None else (f"{fnum(r['ms'])} ms" if m == "yolov5s"
                                                               else fnum(r["ratio"], 3)) for b, f in cols]
         for m in dict.fromkeys(r["model"] for r in ov)]
    return ["\n## Model overhead on CUDA (`model_overhead.py`: yolov5s + module / plain yolov5s, fp32, 640 px)\n",
            markdown_table(["Model"] + [f"b{b}{' fused' if f in ('True', True) else ''}" for b, f in cols], t)]


def render_markdown(report: dict) -> str:
    tests = report.get("tests", [])
    lines = header(report) + tests_section(tests) + module_section(report) + golden_section(tests) + \
        scripts_section(tests) + train_speed_section(report) + dense_section(report) + fp16_section(report) + \
        overhead_section(report)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- files


def summary_section(report: dict | None, rel: str = "benchmarks") -> str:
    """The "GPU check" section of the benchmarks page: what the check does and the last result."""
    tests = (report or {}).get("tests", [])
    if report and report.get("stages"):
        env, counts = report.get("environment") or {}, Counter(t["outcome"] for t in tests)
        last = (f"Last run: **{env.get('gpu', '?')}**, torch {env.get('torch', '?')} (CUDA {env.get('cuda_build') or '–'}), "
                f"{env.get('date', '?')}: {len(tests)} tests, " + ", ".join(
                    f"{counts[k]} {k}" for k in ("passed", "failed", "error", "skipped", "not run") if counts[k])
                + "; stages " + ", ".join(f"{s['stage']} {s['status']}" for s in report["stages"])
                + f". Report: [`{rel}/gpu_check.md`]({rel}/gpu_check.md) (data: [`{rel}/gpu_check.json`]"
                  f"({rel}/gpu_check.json)).")
    else:
        last = "Not run on a GPU yet: the report appears here after the first run."
    return f"{PAGE_SECTION}\n\n{HOW_TO}\n{last}\n"


def update_page(out: Path, section: str) -> Path | None:
    """Put ``section`` into the benchmarks page ``<out>.md`` (replacing an earlier GPU-check section), if it exists."""
    page = out.with_suffix(".md")
    if not page.is_file():
        return None
    text = page.read_text()
    start = text.find(PAGE_SECTION + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(PAGE_SECTION))
        text = text[:start] + section + (text[end:] if end >= 0 else "")
    page.write_text(text)
    return page


def write_report(out: Path, report: dict) -> tuple[Path, Path]:
    """``<out>/gpu_check.json`` (atomically), ``gpu_check.md``, ``gpu_check.summary.md`` and the page's section."""
    out.mkdir(parents=True, exist_ok=True)
    jp, mp = out / "gpu_check.json", out / "gpu_check.md"
    tmp = jp.with_name(jp.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(report), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, jp)
    try:
        text = render_markdown(report)
    except Exception as e:  # the JSON has everything; a rendering bug must not lose the run
        text = f"# GPU check\n\nThe markdown could not be rendered ({type(e).__name__}: {e}); see {jp.name}.\n"
    mp.write_text(text)
    section = summary_section(report, out.name)
    (out / "gpu_check.summary.md").write_text(section)
    update_page(out, section)
    return jp, mp
