"""The GPU check: the cuda-marked tests, then the CUDA benchmarks, in one report (``<out>/gpu_check.json`` and ``.md``).

    python benchmarks/gpu_check.py                          # a CUDA machine, about 7 min: docs/benchmarks/gpu_check.*
    python benchmarks/gpu_check.py --out /tmp/gpu --budget-s 300
    python benchmarks/gpu_check.py --stages environment checks --pytest-args="-k scripts"   # part of it again
    python benchmarks/gpu_check.py --render-only            # re-render docs/benchmarks/gpu_check.md from its JSON

1. ``environment``: GPU, driver, torch / CUDA / cuDNN, ultralytics, onnxruntime and its providers, timm.
2. ``checks``: ``python -m pytest -m cuda`` (tests/cuda/: every module in every form in fp32, fp16 and bf16 autocast,
   ``.half()`` and deterministic mode; the golden fixtures in float32; train/val/detect/export with AMP). Each test's
   outcome is recorded as it finishes. The budget never cuts the checks; --checks-timeout-s stops them.
3. The benchmarks, most wanted first, while --budget-s (counted from the start) lasts: a stage whose typical duration
   no longer fits is skipped with a note, one still running when the budget is spent (+GRACE_S) is stopped and what
   it wrote is kept. ``profile_b1``: the CUDA columns of profile_modules.py --quick; ``train_speed``: yolov5s-cbam
   against ultralytics' yolov5su, AMP; ``dense_p3``: the dense modules at P3 (C=128, 80x80), peak memory against
   the estimate the training-time memory check uses; ``fp16``: fp16_speed.py; ``overhead``: model_overhead.py at
   batch 1 and 32; ``profile_b32``.

The JSON and markdown are rewritten after every stage and every few seconds while the tests run, so a run killed
part-way leaves its report (rendered by benchmarks/gpu_report.py). Without CUDA the tests skip ("no CUDA device"),
the benchmarks are skipped with that note and the exit code is 0; it is 1 when a test failed, the tests were stopped
or a stage went wrong. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "benchmarks"
GRACE_S = 20
POLL_S = 5


def kill_tree(p: subprocess.Popen) -> None:
    import psutil

    for child in psutil.Process(p.pid).children(recursive=True):
        child.kill()
    p.kill()
    p.wait()


def run(cmd: list[str], log: Path, limit_s: float, tick=lambda: None) -> tuple[int | None, str]:
    """Run ``cmd`` from the project root, output to ``log``, ``tick()`` every POLL_S; stopped (None) past ``limit_s``."""
    deadline = time.monotonic() + limit_s
    with open(log, "w") as out:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
        while p.poll() is None and time.monotonic() < deadline:
            time.sleep(min(POLL_S, max(deadline - time.monotonic(), 0.1)))
            tick()
        stopped = p.poll() is None
        if stopped:
            kill_tree(p)
    return (None if stopped else p.returncode), "\n".join(log.read_text(errors="replace").strip().splitlines()[-15:])


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def benchmark_stages(work: Path, dense: list[str]) -> list[tuple[str, float, list[str], dict[str, Path]]]:
    """(name, typical seconds on an H100, command, CSV outputs) in the order they run."""
    py = sys.executable

    def profile(batch):
        return [py, "benchmarks/profile_modules.py", "--quick", "--devices", "cuda", "--batch", str(batch), "--out",
                str(work / f"profile_b{batch}")]

    return [
        ("profile_b1", 40, profile(1), {"rows": work / "profile_b1" / "modules.csv"}),
        ("train_speed", 90, [py, "benchmarks/train_speed.py", "--device", "0", "--ours", "yolov5s-cbam.yaml",
                             "--ultralytics", "yolov5s.yaml", "--rounds", "1", "--epochs", "3", "--no-inference",
                             "--out", str(work / "train_speed")], {"rows": work / "train_speed" / "train_speed.csv"}),
        ("dense_p3", 30, [py, "benchmarks/profile_modules.py", "--devices", "cuda", "--levels", "P3", "--channels", "128",
                          "--no-reference", "--repeats", "3", "--warmup", "1", "--min-block", "0.01", "--out",
                          str(work / "dense_p3"), "--modules", *dense], {"rows": work / "dense_p3" / "modules.csv"}),
        ("fp16", 60, [py, "benchmarks/fp16_speed.py", "--device", "cuda", "--out", str(work / "fp16")],
         {"models": work / "fp16" / "fp16_models.csv", "modules": work / "fp16" / "fp16_modules.csv"}),
        ("overhead", 150, [py, "benchmarks/model_overhead.py", "--devices", "cuda", "--batches", "1", "32", "--repeats",
                           "3", "--warmup", "1", "--min-block", "0.05", "--budget", "20", "--out", str(work / "overhead")],
         {"rows": work / "overhead" / "model_overhead.csv"}),
        ("profile_b32", 50, profile(32), {"rows": work / "profile_b32" / "modules.csv"}),
    ]


def dense_estimates(c: int = 128, hw: int = 80) -> dict[str, float]:
    """MiB per sample (fp32) the training-time check estimates for each dense module at ``c`` channels, hw x hw."""
    from models.registry import attention_specs

    return {s.name: round(s.cls(c).attention_map_elements(hw, hw) * 4 / 2**20, 2) for s in attention_specs() if s.dense}


def parse_opt(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-s", type=float, default=400, help="seconds for the whole run; cuts benchmarks, not checks")
    ap.add_argument("--checks-timeout-s", type=float, default=330, help="the tests are stopped after this long")
    ap.add_argument("--out", type=Path, help="report folder (default docs/benchmarks; without CUDA: the --work folder)")
    ap.add_argument("--work", type=Path, help="folder for logs, the tests' runs and the benchmarks' outputs (default: temporary)")
    ap.add_argument("--stages", nargs="+", help="run only these stages (environment, checks, profile_b1, ...)")
    ap.add_argument("--tests", nargs="+", default=["tests"], help="where pytest looks for the cuda-marked tests")
    ap.add_argument("--pytest-args", default="", help='more pytest arguments, one string: --pytest-args="-k CBAM"')
    ap.add_argument("--render-only", action="store_true", help="run nothing; re-render <out>/gpu_check.md from its JSON")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    import offline

    offline.configure()
    import torch

    from benchmarks.gpu_report import environment, write_report
    from benchmarks.pytest_outcomes import read_outcomes

    args = parse_opt(argv)
    if args.render_only:
        out = args.out or DEFAULT_OUT
        print(f"[gpu_check] rendered {write_report(out, json.loads((out / 'gpu_check.json').read_text()))[1]}")
        return 0
    t0, cuda = time.monotonic(), torch.cuda.is_available()
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    out = args.out or (DEFAULT_OUT if cuda else work)  # a CPU run never replaces the GPU report in the docs
    dense = dense_estimates()
    stages = benchmark_stages(work, sorted(dense))
    names = ["environment", "checks"] + [s[0] for s in stages]
    if set(args.stages or []) - set(names):
        raise SystemExit(f"error: --stages {' '.join(args.stages)}: the stages are {', '.join(names)}")
    report = {"command": "python benchmarks/gpu_check.py " + shlex.join(sys.argv[1:] if argv is None else argv),
              "budget_s": args.budget_s, "cuda": cuda, "work": str(work), "seconds": 0.0, "environment": {},
              "stages": [], "tests": [], "dense_estimates": dense}

    def save(record: dict | None = None):
        if record is not None:
            report["stages"].append(record)
            print(f"[gpu_check] {record['stage']}: {record['status']} ({record['seconds']:.0f} s) {record['note']}",
                  flush=True)
        report["seconds"] = round(time.monotonic() - t0, 1)
        write_report(out, report)

    def environment_stage() -> dict:
        report["environment"] = environment(cuda)
        return {"status": "ok"}

    def checks_stage() -> dict:
        jsonl = work / "tests.jsonl"
        jsonl.unlink(missing_ok=True)

        def tick():
            report["tests"] = read_outcomes(jsonl)
            save()

        cmd = [sys.executable, "-m", "pytest", *args.tests, "-m", "cuda", "-o", "addopts=", "-q", "-ra",
               "--strict-markers", "-p", "no:cacheprovider", "-p", "benchmarks.pytest_outcomes", "--outcomes",
               str(jsonl), "--continue-on-collection-errors", "--basetemp", str(work / "pytest"),  # runs, logs kept
               *shlex.split(args.pytest_args)]
        code, tail = run(cmd, work / "tests.log", args.checks_timeout_s, tick)
        tick()
        counts = Counter(t["outcome"] for t in report["tests"])
        note = (f"stopped after {args.checks_timeout_s:.0f} s" if code is None else f"pytest exit {code}") + ": " + \
            ", ".join(f"{n} {k}" for k, n in counts.items()) + ("" if code == 0 else f"; log {work / 'tests.log'}")
        return {"status": {0: "ok", 1: "failed", None: "stopped"}.get(code, "error"), "note": note,
                "tail": "" if code == 0 else tail}

    def benchmark(estimate: float, cmd: list[str], outputs: dict[str, Path], log: Path) -> dict:
        left = args.budget_s - (time.monotonic() - t0)
        if not cuda:
            return {"status": "skipped", "note": "no CUDA device"}
        if estimate > left:
            return {"status": "skipped",
                    "note": f"budget: needs about {estimate:.0f} s, {max(left, 0):.0f} s of {args.budget_s:.0f} s left"}
        code, tail = run(cmd, log, left + GRACE_S)
        return {"status": {0: "ok", None: "stopped"}.get(code, "error"), "tail": "" if code == 0 else tail,
                "note": "" if code == 0 else ("stopped: budget spent; partial results kept" if code is None
                                               else f"exit {code}; log {log}"),
                **{k: read_csv(p) for k, p in outputs.items() if p.is_file()}}

    jobs = [("environment", environment_stage), ("checks", checks_stage)] + [
        (name, lambda e=estimate, c=cmd, o=outputs, n=name: benchmark(e, c, o, work / f"{n}.log"))
        for name, estimate, cmd, outputs in stages]
    for name, job in jobs:
        if args.stages and name not in args.stages:
            continue
        t1 = time.monotonic()
        try:
            rec = job()
        except Exception as e:  # recorded, and the next stage runs
            rec = {"status": "error", "note": f"{type(e).__name__}: {e}"[:500]}
        save({"stage": name, "seconds": round(time.monotonic() - t1, 1), "note": "", **rec})
    bad = [s["stage"] for s in report["stages"]
           if s["status"] in ("failed", "error") or (s["stage"], s["status"]) == ("checks", "stopped")]
    print(f"[gpu_check] wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'} in {report['seconds']:.0f} s"
          + (f"; not ok: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
