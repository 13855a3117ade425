"""What each attention module costs inside a detector: yolov5s plus the module at its default position.

    python benchmarks/model_overhead.py                              # every module, batch 1 and 16, CPU (+ CUDA)
    python benchmarks/model_overhead.py --batches 1 --devices cpu    # a lighter CPU-only run
    python benchmarks/model_overhead.py --quick --modules SE --out /tmp/bench

For every registered module, ``configs/yolov5-<name>.yaml`` at scale s (the module after SPPF): parameters,
GFLOPs at --imgsz twice (ultralytics' own figure, from ultralytics-thop, as its model summary prints it; and
convolutions plus matrix products only, counted by torch.utils.flop_counter, attention maps included), and the
forward latency ratio against plain
yolov5s, unfused and after ``fuse()`` (Conv+BN folded), at each batch size and device. Every model of a column is
timed in the same rounds (median over rounds of the per-round ratio; 7 rounds, fewer but at least 3 where a column
would exceed --budget seconds), eval mode, fp32, under inference_mode.

Two controls run in the same rounds: our plain yolov5s is the baseline (ratio 1 by definition), and ultralytics'
own yolov5su (``ultralytics.nn.tasks.DetectionModel('yolov5s.yaml')``) must come out at 1.00 within noise.

Writes ``<out>/model_overhead.csv``, ``<out>/model_overhead.md``, ``<out>/model_overhead.summary.md`` and the
benchmarks page ``<out>.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import offline  # noqa: E402

offline.configure()

import torch  # noqa: E402

from tools import measure  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "benchmarks"
BASELINE = "yolov5s"
ULTRALYTICS = "yolov5su (ultralytics)"
COLUMNS = [
    "model", "module", "cfg", "params", "gflops", "gflops_all", "imgsz", "device", "device_name", "threads", "batch", "fused",
    "ms", "ratio", "ratio_q1", "ratio_q3", "rounds", "torch", "date",
]
KEY = ("model", "device", "batch", "fused", "imgsz")


def build_models(specs, scale: str) -> dict[str, tuple[str, str, torch.nn.Module]]:
    """{label: (module name, cfg, model)}: the baseline, ultralytics' yolov5su, then one model per module."""
    from ultralytics.nn.tasks import DetectionModel

    from models.yolo import build_model

    out = {
        BASELINE: ("", f"yolov5{scale}.yaml", build_model(f"yolov5{scale}.yaml")),
        ULTRALYTICS: ("", f"ultralytics yolov5{scale}.yaml", DetectionModel(f"yolov5{scale}.yaml", verbose=False)),
    }
    for s in specs:
        cfg = f"yolov5{scale}-{s.tag}.yaml"
        out[f"yolov5{scale} + {s.name}"] = (s.name, cfg, build_model(cfg))
    return out


def all_gflops(model: torch.nn.Module, imgsz: int) -> float:
    """GFLOPs of a batch-1 forward counted by torch.utils.flop_counter: convolutions and matrix products only,
    including those a module computes as functions (attention maps); 2 FLOPs per multiply-add like ultralytics'."""
    p = next(model.parameters())
    x = torch.zeros(1, 3, imgsz, imgsz, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        dense, _ = measure.count_flops(lambda: model(x))
    model.train(was_training)
    return dense / 1e9


def ratio_quartiles(a: measure.Timing, b: measure.Timing) -> tuple[float, float, float]:
    r = [x / y for x, y in zip(a.per_repeat, b.per_repeat)]
    if len(r) < 4:
        m = statistics.median(r)
        return m, min(r), max(r)
    q = statistics.quantiles(r, n=4)
    return statistics.median(r), q[0], q[2]


def measure_column(models: dict, device: str, batch: int, imgsz: int, args) -> dict[str, measure.Timing]:
    x = torch.randn(batch, 3, imgsz, imgsz, device=device)

    def fwd(m):
        def run():
            with torch.inference_mode():
                m(x)

        return run

    return measure.time_interleaved({k: fwd(m) for k, (_, _, m) in models.items()}, device, args.repeats,
                                    args.warmup, args.min_block, args.budget)


# ---------------------------------------------------------------------------------------------- reports


def _col(device, batch, fused):
    return f"{device} b{batch}" + (" fused" if str(fused) in ("1", "True", "true") else "")


def render(rows: list[dict], meta: dict, out: Path) -> None:
    cols = sorted({(r["device"], int(r["batch"]), r["fused"] in ("1", "True", "true", True)) for r in rows},
                  key=lambda c: (c[0], c[1], c[2]))
    labels = list(dict.fromkeys(r["model"] for r in rows))
    labels = [BASELINE, ULTRALYTICS] + sorted((m for m in labels if m not in (BASELINE, ULTRALYTICS)), key=str.lower)
    by = {(r["model"], r["device"], int(r["batch"]), r["fused"] in ("1", "True", "true", True)): r for r in rows}
    imgsz = next(iter(rows))["imgsz"]
    env = []
    for dev, m in sorted(meta.items()):
        threads = f", {m['threads']} thread(s)" if m.get("threads") else ""
        env.append(f"- **{dev}**: {m.get('device_name', '?')}{threads}; torch {m.get('torch', '?')}, ultralytics "
                   f"{m.get('ultralytics', '?')}; {m.get('date', '?')}; took {float(m.get('seconds', 0)) / 60:.1f} min.")
        env += measure.update_lines(m)
    intro = (
        f"yolov5s (nc=80) with each module after SPPF (`configs/yolov5-<name>.yaml`), input {imgsz}x{imgsz}, fp32, eval "
        "mode. GFLOPs: ultralytics' figure (ultralytics-thop, as its model summary prints it; besides convolutions it "
        "counts normalisation and some per-element work). GFLOPs conv+matmul: torch.utils.flop_counter over one "
        "forward, convolutions and matrix products only (attention maps included), 2 FLOPs per multiply-add. Latency: forward time over plain yolov5s measured in the "
        "same rounds (median of per-round ratios; `fused` = after `model.fuse()`); the first row gives plain "
        "yolov5s in ms. The second row is ultralytics' own yolov5su, the check that our model code adds nothing.\n\n"
        + "\n".join(env) + "\n"
    )
    header = ["Model", "Params", "GFLOPs", "GFLOPs conv+matmul"] + [_col(*c) for c in cols]
    t = []
    for label in labels:
        any_row = next((by[(label, *c)] for c in cols if (label, *c) in by), None)
        if any_row is None:
            continue
        g_all = next((by[(label, *c)].get("gflops_all") for c in cols
                      if (label, *c) in by and measure.fnum(by[(label, *c)].get("gflops_all")) != "–"), None)
        line = [label, f"{int(any_row['params']):,}", measure.fnum(any_row["gflops"], 1), measure.fnum(g_all, 1)]
        for c in cols:
            r = by.get((label, *c))
            if r is None:
                line.append("–")
            elif label == BASELINE:
                line.append(f"{measure.fnum(r['ms'], 1)} ms")
            else:
                line.append(measure.fnum(r["ratio"]))
        t.append(line)
    table = measure.markdown_table(header, t, "l" + "r" * (len(header) - 1))
    ul = [by[(ULTRALYTICS, *c)] for c in cols if (ULTRALYTICS, *c) in by]
    check = "; ".join(f"{_col(r['device'], r['batch'], r['fused'] in ('1', 'True', 'true', True))}: "
                      f"{float(r['ratio']):.3f} (spread over rounds {float(r['ratio_q1']):.3f}–{float(r['ratio_q3']):.3f})"
                      for r in ul)
    summary = intro + "\n" + table + f"\nultralytics yolov5su / our yolov5s: {check}.\n"
    (out / "model_overhead.summary.md").write_text(summary)
    full = ["# Model overhead: full table\n\nGenerated by `python benchmarks/model_overhead.py`; do not edit by hand.\n\n",
            intro, "\n"]
    ft = []
    for label in labels:
        for c in cols:
            r = by.get((label, *c))
            if r:
                ft.append([label, r["cfg"], _col(*c), measure.fnum(r["ms"], 2), measure.fnum(r["ratio"], 3),
                           f"{measure.fnum(r['ratio_q1'], 3)}–{measure.fnum(r['ratio_q3'], 3)}", r.get("rounds", "")])
    full.append(measure.markdown_table(["Model", "Config", "Column", "ms", "Ratio", "Ratio spread over rounds (IQR; min–max under 4 rounds)",
                                        "Rounds"], ft, "lllrrrr"))
    (out / "model_overhead.md").write_text("".join(full))


# ------------------------------------------------------------------------------------------------- main


def parse_opt(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modules", nargs="+", help="registry names (default: every attention module)")
    ap.add_argument("--scale", default="s", choices=list("nsmlx"))
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default); recorded")
    ap.add_argument("--no-fuse", action="store_true", help="skip the fused columns")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-block", type=float, default=0.2, help="seconds of calls per model per round")
    ap.add_argument("--budget", type=float, default=600,
                    help="seconds per column: slow columns (CPU, batch 16) get fewer rounds, at least 3")
    ap.add_argument("--quick", action="store_true", help="img 128, batch 1, 3 short rounds (for tests)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--append", action="store_true", help="merge into <out>/model_overhead.csv")
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.imgsz, args.batches, args.repeats, args.min_block, args.warmup = 128, [1], 3, 0.01, 1
    return args


def main(argv=None) -> int:
    args = parse_opt(argv)
    out: Path = args.out
    csv_path, meta_path = out / "model_overhead.csv", out / "model_overhead.meta.json"
    keep = args.append or args.render_only
    rows = measure.read_csv(csv_path) if keep and csv_path.exists() else []
    meta = measure.load_meta(meta_path) if keep else {}
    if not args.render_only:
        import ultralytics
        from models.yolo import model_flops as get_flops  # a zero probe image (ultralytics probes torch.empty)

        from benchmarks.profile_modules import select_specs

        if args.threads:
            torch.set_num_threads(args.threads)
        specs = select_specs(args.modules)
        t_build = time.perf_counter()
        models = build_models(specs, args.scale)
        static = {k: (sum(p.numel() for p in m.parameters()), get_flops(m, args.imgsz), all_gflops(m, args.imgsz))
                  for k, (_, _, m) in models.items()}
        print(f"built {len(models)} models in {time.perf_counter() - t_build:.0f}s")
        new = []
        for device in measure.resolve_devices(args.devices):
            t_dev = time.perf_counter()
            env = {**measure.environment(device), "ultralytics": ultralytics.__version__}
            for _, _, m in models.values():
                m.to(device).eval()
            for fused in ([False] if args.no_fuse else [False, True]):
                if fused:
                    for _, _, m in models.values():
                        m.fuse(verbose=False)
                for batch in args.batches:
                    t0 = time.perf_counter()
                    timings = measure_column(models, device, batch, args.imgsz, args)
                    for label, (module, cfg, _) in models.items():
                        med, q1, q3 = ratio_quartiles(timings[label], timings[BASELINE])
                        new.append({"model": label, "module": module, "cfg": cfg, "params": static[label][0],
                                    "gflops": static[label][1], "gflops_all": static[label][2], "imgsz": args.imgsz, "batch": batch, "fused": fused,
                                    "ms": timings[label].median, "ratio": med, "ratio_q1": q1, "ratio_q3": q3,
                                    "rounds": len(timings[label].per_repeat), **env})
                    measure.write_csv(csv_path, measure.merge_rows(rows, new, KEY), COLUMNS)  # survives a kill
                    u = new[-len(models) + 1]
                    print(f"[{_col(device, batch, fused)}] yolov5s {timings[BASELINE].median:.2f} ms; ultralytics "
                          f"yolov5su ratio {u['ratio']:.3f} ({u['ratio_q1']:.3f}-{u['ratio_q3']:.3f}); "
                          f"{time.perf_counter() - t0:.0f}s", flush=True)
            # fused models stay fused: rebuild for the next device
            measure.record_run(meta, device, env, time.perf_counter() - t_dev, "model_overhead.py", argv, args.append,
                               {"batches": args.batches, "fused": [False] if args.no_fuse else [False, True],
                                "modules": args.modules or "all"})
            if not args.no_fuse:
                models = build_models(specs, args.scale)
        rows = measure.merge_rows(rows, new, KEY)
    return measure.finish(csv_path, rows, COLUMNS, meta_path, meta, render, out, "model_overhead")


if __name__ == "__main__":
    raise SystemExit(main())
