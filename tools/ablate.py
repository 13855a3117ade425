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
import csv
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import tools.common as common
from models.engine import run_folder  # noqa: E402  (offline environment first)

DONE = "ablate_done.json"
METRICS = {  # our short name -> ultralytics results.csv column
    "P": "metrics/precision(B)",
    "R": "metrics/recall(B)",
    "mAP50": "metrics/mAP50(B)",
    "mAP50-95": "metrics/mAP50-95(B)",
}
CURVES = ("train/box_loss", "val/box_loss", "metrics/mAP50-95(B)")
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


def read_results(run_dir: Path) -> list[dict]:
    path = run_dir / "results.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]


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
    """Run ``python train.py ARGS`` as a user would (its own process: nothing of one run leaks into the next)."""
    import subprocess

    done = subprocess.run([sys.executable, str(common.ROOT / "train.py"), *args], cwd=common.ROOT)
    if done.returncode:
        raise SystemExit(f"error: python train.py {' '.join(args)} failed (exit code {done.returncode})")


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
    from ultralytics.utils.torch_utils import get_flops

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


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else float("nan"))


def noise_verdict(v: list[float], b: list[float]) -> tuple[float, float, str]:
    """(difference of means, noise bound, 'outside noise' | 'inside noise' | 'one seed: unverified').

    Welch's test at the 5% level: the difference is outside the seed-to-seed noise when
    |mean_v - mean_b| > t(0.975, df) * SE, SE = sqrt(s_v^2/n_v + s_b^2/n_b), df by Welch-Satterthwaite.
    With 2 seeds per arm t is about 4.3 (12.7 at df = 1): two seeds rarely separate small gains, as they should not.
    """
    d = statistics.fmean(v) - statistics.fmean(b)
    if len(v) < 2 or len(b) < 2:
        return d, float("nan"), "one seed: unverified"
    a, c = statistics.variance(v) / len(v), statistics.variance(b) / len(b)
    se = math.sqrt(a + c)
    if se == 0:
        return d, 0.0, "outside noise" if d != 0 else "inside noise"
    df = (a + c) ** 2 / ((a * a / (len(v) - 1) if a else 0) + (c * c / (len(b) - 1) if c else 0))
    from scipy.stats import t as student_t

    bound = float(student_t.ppf(0.975, df)) * se
    return d, bound, "outside noise" if abs(d) > bound else "inside noise"


def summarise(records: list[dict], variants: list[tuple[str, str]], costs: dict) -> list[dict]:
    base = variants[0][0]
    by = {label: [r for r in records if r["variant"] == label] for label, _ in variants}
    rows = []
    for label, cfg in variants:
        rs = by[label]
        row = {"variant": label, "cfg": cfg, "seeds": " ".join(str(r["seed"]) for r in rs), "n": len(rs),
               **costs.get(label, {})}
        for k in METRICS:
            row[f"{k}_mean"], row[f"{k}_std"] = mean_std([r[k] for r in rs])
        for k in ("mAP50", "mAP50-95"):
            d, bound, verdict = noise_verdict([r[k] for r in rs], [r[k] for r in by[base]])
            row[f"d_{k}"], row[f"bound_{k}"], row[f"noise_{k}"] = d, bound, verdict if label != base else "baseline"
        rows.append(row)
    return rows


def _pm(mean: float, std: float) -> str:
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def _diff(row: dict, k: str) -> str:
    if row[f"noise_{k}"] == "baseline":
        return "–"
    b = row[f"bound_{k}"]
    bound = "" if math.isnan(b) else f", ±{b:.4f}"
    return f"{row[f'd_{k}']:+.4f} ({row[f'noise_{k}']}{bound})"


def write_table(rows: list[dict], opt, root: Path) -> str:
    from tools import measure

    header = ["Variant", "Config", "Seeds", "P", "R", "mAP50", "mAP50-95", "Δ mAP50 vs baseline",
              "Δ mAP50-95 vs baseline", "Params", f"GFLOPs@{opt.imgsz}", "Latency ms", "Latency ratio"]
    t = []
    for r in rows:
        t.append([r["variant"], f"`{r['cfg']}`", r["seeds"], _pm(r["P_mean"], r["P_std"]), _pm(r["R_mean"], r["R_std"]),
                  _pm(r["mAP50_mean"], r["mAP50_std"]), _pm(r["mAP50-95_mean"], r["mAP50-95_std"]), _diff(r, "mAP50"),
                  _diff(r, "mAP50-95"), f"{r.get('params', 0):,}", measure.fsig(r.get("gflops")),
                  measure.fnum(r.get("latency_ms"), 2), measure.fnum(r.get("latency_ratio"), 2)])
    lat_dev = next((r["latency_device"] for r in rows if r.get("latency_device")), "not measured")
    text = (
        f"# Ablation {opt.name}\n\nGenerated by `python tools/ablate.py`. Data `{opt.data}`, {opt.epochs} epochs at "
        f"{opt.imgsz} px, batch {opt.batch_size}, seeds {' '.join(map(str, opt.seeds))}; identical train.py flags for "
        f"every run: `{' '.join(opt.train_args) or '(defaults)'}`. Metrics: the best epoch of each run (ultralytics' "
        "results.csv; best = highest mAP50-95), mean ± sample std over seeds. A difference from the baseline is "
        "*outside noise* only when Welch's test says so at the 5% level: |Δ| > t(0.975, df)·SE, SE = "
        "sqrt(s_v²/n_v + s_b²/n_b), df by Welch–Satterthwaite (the ± after each verdict is that bound); with one "
        f"seed a difference cannot be told from seed-to-seed noise. Latency: fused model, batch 1, {opt.imgsz} px, median of interleaved rounds on "
        f"{lat_dev}; ratio to the baseline measured in the same rounds.\n\n"
    ) + measure.markdown_table(header, t, "lllrrrrllrrrr")
    (root / "ablation.md").write_text(text)
    cols = ["variant", "cfg", "seeds", "n"] + [f"{k}_{s}" for k in METRICS for s in ("mean", "std")] + [
        f"{p}_{k}" for k in ("mAP50", "mAP50-95") for p in ("d", "bound", "noise")] + [
        "params", "gflops", "latency_ms", "latency_ratio", "latency_device"]
    measure.write_csv(root / "ablation.csv", rows, cols)
    return text


def write_runs(records: list[dict], root: Path) -> None:
    from tools import measure

    cols = ["variant", "cfg", "seed", "epochs", "best_epoch", "seconds", *METRICS]
    measure.write_csv(root / "runs.csv", records, cols)


# ------------------------------------------------------------------------------------------------ plots


def plot_tradeoff(rows: list[dict], xkey: str, xlabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    for i, r in enumerate(rows):
        x = r.get(xkey)
        if x is None or (isinstance(x, float) and math.isnan(x)):
            continue
        err = 0 if math.isnan(r["mAP50-95_std"]) else r["mAP50-95_std"]
        ax.errorbar(x, r["mAP50-95_mean"], yerr=err, fmt="s" if i == 0 else "o", capsize=3,
                    color="black" if i == 0 else f"C{i % 10}", label=r["variant"])
        ax.annotate(r["variant"], (x, r["mAP50-95_mean"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mAP50-95 (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_curves(variants: list[tuple[str, str]], records: list[dict], root: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 4), dpi=110)
    for i, (label, _) in enumerate(variants):
        runs = [read_results(root / f"{label}-s{r['seed']}") for r in records if r["variant"] == label]
        runs = [r for r in runs if r]
        if not runs:
            continue
        n = min(len(r) for r in runs)
        for ax, col in zip(axes, CURVES):
            ys = np.array([[float(row[col]) for row in r[:n]] for r in runs])
            epochs = np.arange(1, n + 1)
            color = "black" if i == 0 else f"C{i % 10}"
            ax.plot(epochs, ys.mean(0), color=color, label=label, marker="o" if n < 3 else None)
            if len(runs) > 1:
                ax.fill_between(epochs, ys.min(0), ys.max(0), color=color, alpha=0.15)
    from matplotlib.ticker import MaxNLocator

    for ax, col in zip(axes, CURVES):
        ax.set_title(col + " (mean; band = min-max over seeds)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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


if __name__ == "__main__":
    raise SystemExit(main())
