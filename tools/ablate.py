"""Ablation runner: train a baseline and a list of attention variants under identical settings, then tabulate.

    python tools/ablate.py --demo                     # built-in shapes dataset, CPU, a few minutes per run
    python tools/ablate.py --name coco-s --scale s --variants se cbam eca ca --data coco.yaml --epochs 300 \\
        --img 640 --batch-size 64 --device 0,1 --seeds 0 1 2

Every run is ``python train.py ...`` in its own process, as a user would type it, with the same data,
hyperparameters, epochs and seed; only ``--cfg`` differs. Any other
train.py flag (``--hyp``, ``--optimizer``, ``--cos-lr``, ``--workers`` ...) is passed to every run unchanged.

Runs go to ``runs/ablate/<name>/<variant>-s<seed>`` (seed by seed, the baseline first). A finished run is skipped
on a re-run; an interrupted one resumes from its ``last.pt``. Metrics are read from ultralytics' ``results.csv``
(the epoch ultralytics saved as best.pt: highest mAP50-95, its fitness). Then the runner measures, for each
variant, parameters, GFLOPs and fused batch-1 latency at the training image size (all variants timed in the same
rounds; ratio to the baseline), and writes to ``runs/ablate/<name>/``:

- ``ablation.md`` / ``ablation.csv``: one row per variant, mean ± std over seeds, and the difference from the
  baseline marked ``outside noise`` only when Welch's t-test finds it at the 5% level
  (``|diff| > t(0.975, df) * sqrt(s_v^2/n_v + s_b^2/n_b)``, s = sample standard deviation over seeds); with one
  seed the difference is reported as unverifiable;
- ``runs.csv``: one row per run;
- ``map_vs_gflops.png``, ``map_vs_latency.png``, ``training_curves.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import tools.common as common
from models.engine import run_folder  # noqa: E402  (offline environment first)
from tools.ablate_report import (METRICS, plot_curves, plot_tradeoff, read_results, summarise,  # noqa: E402
                                 write_runs, write_table)

DONE = "ablate_done.json"
OWN_FLAGS = {"--cfg", "--name", "--project", "--seed", "--resume", "--exist-ok"}  # set per run by the runner
DEMO = dict(name="demo", scale="n", variants=["se", "cbam"], data="shapes.yaml", epochs=8, imgsz=192,
            batch_size=8, seeds=[0, 1], device="cpu", train_args=["--optimizer", "AdamW", "--hyp", "hyp.quick.yaml",
                                                                  "--workers", "2"])


# ------------------------------------------------------------------------------------------------ setup


def parse_opt(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Unrecognised flags are train.py flags, passed to every run.")
    ap.add_argument("--demo", action="store_true",
                    help="preset: yolov5n baseline, se and cbam, shapes.yaml, 8 epochs at 192 px, seeds 0 1, CPU")
    ap.add_argument("--name", default="exp", help="ablation name: results under <project>/<name>")
    ap.add_argument("--project", default=None, help="default runs/ablate")
    ap.add_argument("--scale", default="s", choices=list("nsmlx"), help="model scale of the baseline and variants")
    ap.add_argument("--baseline", default=None, help="baseline config (default yolov5<scale>.yaml)")
    ap.add_argument("--variants", nargs="+", default=[],
                    help="attention modules (registry names or config tags: se, cbam, ca, CoordAtt) or model YAMLs")
    ap.add_argument("--data", default="shapes.yaml")
    ap.add_argument("--epochs", type=int, default=100)
    common.add_imgsz(ap)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    common.add_device(ap)
    ap.add_argument("--latency-device", default=None, help="device for the latency column (default: cpu or --device's first GPU)")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    opt, train_args = ap.parse_known_args(argv)
    opt.train_args = train_args
    if opt.demo:
        for k, v in DEMO.items():
            if k == "train_args":
                opt.train_args = v + opt.train_args
            elif k == "name" and opt.name != "exp":
                continue
            else:
                setattr(opt, k, v)
    bad = sorted({a.split("=")[0] for a in opt.train_args if a.startswith("--")} & OWN_FLAGS)
    if bad:
        ap.error(f"{', '.join(bad)}: set by the ablation runner for each run (use --variants/--name/--project/--seeds)")
    if not opt.variants and not opt.demo:
        ap.error("give --variants (e.g. --variants se cbam eca) or --demo")
    return opt


def resolve_variant(v: str, scale: str) -> tuple[str, str]:
    """(label, cfg) of a --variants entry: a registry name or config tag, or a model YAML."""
    from models.registry import attention_specs

    if v.endswith((".yaml", ".yml")):
        return Path(v).stem, v
    for s in attention_specs():
        if v.lower() in (s.name.lower(), s.tag):
            return s.tag, f"yolov5{scale}-{s.tag}.yaml"
    names = ", ".join(sorted(s.tag for s in attention_specs()))
    raise SystemExit(f"error: --variants {v}: not a registered attention module or a .yaml file. Known: {names}")


def check_config(cfg: str) -> None:
    from models.registry import ConfigError
    from models.yolo import build_model

    try:
        build_model(cfg)
    except (ConfigError, FileNotFoundError, KeyError) as e:
        raise SystemExit(f"error: ablation config {cfg}: {e}") from None


# ------------------------------------------------------------------------------------------------- runs

SHARED = ("data", "epochs", "imgsz", "batch_size", "device", "scale", "baseline", "train_args")  # same for every run


def check_same_settings(opt, saved: Path) -> None:
    """Finished runs are only reused under the settings they were trained with (variants and seeds may grow)."""
    if not saved.exists():
        return
    before = json.loads(saved.read_text())
    changed = [k for k in SHARED if k in before and before[k] != getattr(opt, k)]
    if changed:
        diff = ", ".join(f"{k}: {before[k]!r} -> {getattr(opt, k)!r}" for k in changed)
        raise SystemExit(f"error: {saved.parent} holds runs trained with other settings ({diff}); "
                         "use another --name (or --project) for a new ablation")


def best_row(rows: list[dict]) -> dict:
    """The epoch ultralytics kept as best.pt: the highest fitness, which in ultralytics 8.4 is mAP50-95."""
    return max(rows, key=lambda r: float(r[METRICS["mAP50-95"]]))


def train_args(opt, cfg: str, run_dir: Path, seed: int) -> list[str]:
    args = ["--cfg", cfg, "--data", opt.data, "--epochs", str(opt.epochs), "--imgsz", str(opt.imgsz),
            "--batch-size", str(opt.batch_size), "--seed", str(seed), "--project", str(run_dir.parent),
            "--name", run_dir.name, "--exist-ok"]
    if opt.device:
        args += ["--device", opt.device]
    return args + opt.train_args


def train(args: list[str]) -> None:
    """Run ``python train.py ARGS`` as a user would (its own process: nothing of one run leaks into the next).

    The run gets its own session, so a Ctrl-C in the terminal reaches the runner only, which passes it on and waits:
    train.py then stops as it does on a Ctrl-C (one line, its last.pt intact) and the runner says how to continue."""
    import signal
    import subprocess

    proc = subprocess.Popen([sys.executable, str(common.ROOT / "train.py"), *args], cwd=common.ROOT,
                            start_new_session=True)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):  # a second Ctrl-C, or a run that does not stop
            proc.kill()
            proc.wait()
        raise
    if code:
        raise SystemExit(f"error: python train.py {' '.join(args)} failed (exit code {code})")


def run_one(opt, label: str, cfg: str, seed: int, run_dir: Path) -> dict:
    """Train (or resume) one run with train.py; return its record (also written to DONE)."""
    last = run_dir / "weights" / "last.pt"
    t0 = time.perf_counter()
    if last.exists() and len(read_results(run_dir)) >= opt.epochs:
        print(f"    {run_dir}: all {opt.epochs} epochs are in results.csv (stopped before the runner's record)")
    elif last.exists():
        print(f"    resuming {run_dir} from {last}", flush=True)
        train(["--resume", str(last)])
    else:
        train(train_args(opt, cfg, run_dir, seed))
    rows = read_results(run_dir)
    if not rows:
        raise SystemExit(f"error: {run_dir}: training wrote no results.csv")
    best = best_row(rows)
    record = {
        "variant": label, "cfg": cfg, "seed": seed, "epochs": len(rows), "best_epoch": int(float(best["epoch"])),
        "seconds": round(float(rows[-1].get("time") or time.perf_counter() - t0), 1),  # results.csv: cumulative
        **{k: float(best[c]) for k, c in METRICS.items()},
    }
    (run_dir / DONE).write_text(json.dumps(record, indent=1) + "\n")
    return record


def run_all(opt, plan: list[tuple[str, str, int]], root: Path) -> list[dict]:
    records, trained_seconds, trained = [], 0.0, 0
    todo = [p for p in plan if not (root / f"{p[0]}-s{p[2]}" / DONE).exists()]
    print(f"ablation {root}: {len(plan)} runs ({len(plan) - len(todo)} finished earlier), "
          f"{len(plan) // len(opt.seeds)} variants x {len(opt.seeds)} seed(s), {opt.epochs} epochs at {opt.imgsz} px",
          flush=True)
    for k, (label, cfg, seed) in enumerate(plan, 1):
        run_dir = root / f"{label}-s{seed}"
        tag = f"[{k}/{len(plan)}] {label} seed {seed}"
        if (run_dir / DONE).exists():
            rec = json.loads((run_dir / DONE).read_text())
            print(f"{tag}: finished earlier, skipped (mAP50-95 {rec['mAP50-95']:.4f})", flush=True)
            records.append(rec)
            continue
        print(f"{tag}: training {cfg} -> {run_dir}", flush=True)
        t0 = time.perf_counter()
        rec = run_one(opt, label, cfg, seed, run_dir)
        records.append(rec)
        trained_seconds += time.perf_counter() - t0
        trained += 1
        left = sum(1 for p in plan[k:] if not (root / f"{p[0]}-s{p[2]}" / DONE).exists())
        eta = trained_seconds / trained * left
        print(f"{tag}: done in {_hms(time.perf_counter() - t0)}, mAP50 {rec['mAP50']:.4f}, mAP50-95 "
              f"{rec['mAP50-95']:.4f}; {left} run(s) left, about {_hms(eta)} to go", flush=True)
    return records


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# ---------------------------------------------------------------------------------------------- summary


def dataset_nc(data: str) -> int:
    import yaml

    from data.datasets import prepare_data

    d = yaml.safe_load(Path(prepare_data(data)).read_text())
    names = d.get("names")
    return len(names) if names is not None else int(d["nc"])


def cost(variants: list[tuple[str, str]], opt) -> dict[str, dict]:
    """Params, GFLOPs and fused batch-1 latency at the training size of every variant, timed in the same rounds."""
    import torch
    from models.yolo import model_flops as get_flops  # a zero probe image (ultralytics probes torch.empty)

    from tools import measure
    from models.yolo import build_model

    nc = dataset_nc(opt.data)
    models = {label: build_model(cfg, nc=nc) for label, cfg in variants}
    out = {label: {"params": sum(p.numel() for p in m.parameters()), "gflops": get_flops(m, opt.imgsz)}
           for label, m in models.items()}
    if opt.no_latency:
        return out
    device = opt.latency_device or ("cpu" if not opt.device or opt.device == "cpu" else f"cuda:{opt.device.split(',')[0]}")
    x = torch.randn(1, 3, opt.imgsz, opt.imgsz, device=device)
    fns = {}
    for label, m in models.items():
        m = m.to(device).eval().fuse(verbose=False)

        def run(m=m):
            with torch.inference_mode():
                m(x)

        fns[label] = run
    t = measure.time_interleaved(fns, device, repeats=7, warmup=2, min_block_s=0.1)
    base = variants[0][0]
    for label in models:
        out[label].update(latency_ms=t[label].median, latency_ratio=measure.median_ratio(t[label], t[base]),
                          latency_device=measure.device_name(device))
    return out


# ------------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    opt = parse_opt(argv)
    root = Path(run_folder.run_dir(opt.project, "ablate")) / opt.name
    baseline = opt.baseline or f"yolov5{opt.scale}.yaml"
    variants = [("baseline", baseline)] + [resolve_variant(v, opt.scale) for v in opt.variants]
    labels = [v[0] for v in variants]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"error: --variants: duplicate variant names {labels}")
    for _, cfg in variants:
        check_config(cfg)
    check_same_settings(opt, root / "ablate_args.json")
    root.mkdir(parents=True, exist_ok=True)
    (root / "ablate_args.json").write_text(json.dumps({k: v for k, v in vars(opt).items()}, indent=1) + "\n")
    plan = [(label, cfg, seed) for seed in opt.seeds for label, cfg in variants]
    t0 = time.perf_counter()
    records = run_all(opt, plan, root)
    print(f"training finished in {_hms(time.perf_counter() - t0)}; measuring params, GFLOPs and latency", flush=True)
    rows = summarise(records, variants, cost(variants, opt))
    write_runs(records, root)
    table = write_table(rows, opt, root)
    plot_tradeoff(rows, "gflops", f"GFLOPs at {opt.imgsz} px", root / "map_vs_gflops.png")
    if not opt.no_latency:
        plot_tradeoff(rows, "latency_ms", f"latency ms (fused, batch 1, {opt.imgsz} px)", root / "map_vs_latency.png")
    plot_curves(variants, records, root, root / "training_curves.png")
    print("\n" + table)
    print(f"wrote {root / 'ablation.md'}, ablation.csv, runs.csv and plots in {root}")
    return 0


def cli(argv=None) -> int:
    """:func:`main` with a Ctrl-C as one line: finished runs are kept, the same command continues."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        command = " ".join(["python", "tools/ablate.py", *(sys.argv[1:] if argv is None else argv)])
        raise SystemExit(f"ablation interrupted (Ctrl-C): finished runs are kept and the interrupted one continues "
                         f"from its last.pt; to go on, run the same command again: {command}") from None


if __name__ == "__main__":
    raise SystemExit(cli())
