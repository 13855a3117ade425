"""Training speed of our model code against ultralytics' own, and what CBAM costs at inference.

    python benchmarks/train_speed.py                       # 3 rounds x 2 trainers, 3 epochs, 320 px, shapes dataset
    python benchmarks/train_speed.py --device 0 --rounds 5 --epochs 4
    python benchmarks/train_speed.py --quick --data tiny.yaml --out /tmp/speed     # a smoke run (tests)
    python benchmarks/train_speed.py --device 0 --ours yolov5s-cbam.yaml --ultralytics yolov5s.yaml --rounds 1 \
        --no-inference                                     # the GPU check's throughput: yolov5s-cbam vs yolov5su

Training: our yolov5n (``configs/yolov5.yaml`` at scale n, built by our parser, trained by ``AttentionTrainer``) and
ultralytics' own yolov5nu (``yolov5n.yaml`` built and trained by its ``DetectionTrainer``): the same architecture,
data, optimizer (SGD, lr0 0.01, momentum 0.937, weight decay 5e-4), seed, batch, image size and epochs (``--ours``
and ``--ultralytics`` name other configs, e.g. yolov5s-cbam against yolov5su: then the architectures differ by the
module). AMP on CUDA; ultralytics' trainer gets our AMP check in place of its own, which loads (and would download)
yolo26n.pt; the check runs before the timed epochs. Each run is a fresh process; runs alternate (ours, theirs, then
theirs, ours, ...) so a drift of a shared machine hits both.
An epoch's time is its training loop (``on_train_epoch_start`` to ``on_train_epoch_end``, CUDA synchronised),
without validation; the first epoch (workers starting, cuDNN autotuning) is dropped and a run's figure is the
median of the others. The reported ratio is the median over rounds of ours/theirs within a round.

Inference: yolov5s-cbam against yolov5s, both fused (Conv+BN folded), eval mode, fp32, timed in the same
interleaved rounds (tools/measure.py), ratio = median of per-round ratios.

Writes ``<out>/train_speed.csv`` and ``<out>/train_speed.md`` (default ``docs/benchmarks/``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
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


def trainer_labels(ours: str = "yolov5n.yaml", theirs: str = "yolov5n.yaml") -> dict[str, str]:
    """Row labels of the two trainers; ultralytics' YOLOv5 configs build its 'u' (anchor-free) models."""
    return {"ours": f"ours {Path(ours).stem} (AttentionTrainer)",
            "ultralytics": f"ultralytics {Path(theirs).stem}u (DetectionTrainer)"}


TRAINERS = trainer_labels()
RESULT_TAG = "TRAIN_SPEED_RESULT "
COLUMNS = ["measure", "model", "round", "order", "value", "unit", "epochs_timed", "params", "imgsz", "batch", "device",
           "device_name", "threads", "torch", "ultralytics", "date"]
OPTIMIZER = {"optimizer": "SGD", "lr0": 0.01, "momentum": 0.937, "weight_decay": 0.0005}


# --------------------------------------------------------------------------------------------- one training run


def train_once(impl: str, data: str, epochs: int, imgsz: int, batch: int, device: str, workers: int,
               save_dir: Path, cfg: str = "yolov5n.yaml") -> dict:
    """Train ``impl`` ('ours' or 'ultralytics') on ``cfg`` once in this process; per-epoch training-loop seconds and
    params."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    from data.datasets import prepare_data
    from models.patches import trainer_amp_check
    from models.engine.trainer import AttentionTrainer
    from models.parse.read import resolve_config

    if impl == "ours":
        path, _ = resolve_config(cfg)
        model, cls = str(path.with_name(Path(cfg).name)), AttentionTrainer  # the scale letter rides in the name
    elif impl == "ultralytics":
        model, cls = cfg, DetectionTrainer  # ultralytics' own YAML and parser: yolov5nu for yolov5n.yaml
    else:
        raise ValueError(f"unknown trainer {impl!r}")
    overrides = {"model": model, "data": prepare_data(data), "epochs": epochs, "imgsz": imgsz, "batch": batch,
                 "device": device or None, "workers": workers, "seed": 0, "deterministic": True, "amp": True,
                 "plots": False, "val": False, "save_dir": str(save_dir), "exist_ok": True, **OPTIMIZER}
    trainer = cls(overrides=overrides)
    marks: list[tuple[str, float]] = []

    def mark(kind):
        def cb(t):
            if t.device.type == "cuda":
                torch.cuda.synchronize(t.device)
            marks.append((kind, time.perf_counter()))

        return cb

    trainer.add_callback("on_train_epoch_start", mark("start"))
    trainer.add_callback("on_train_epoch_end", mark("end"))
    with trainer_amp_check(lambda m: AttentionTrainer.check_amp(trainer, m)):  # ours does this already
        trainer.train()
    starts = [t for k, t in marks if k == "start"]
    ends = [t for k, t in marks if k == "end"]
    model_ = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    return {"impl": impl, "epoch_s": [e - s for s, e in zip(starts, ends)],
            "params": sum(p.numel() for p in model_.parameters()), "device": str(trainer.device)}


def run_in_process(impl: str, args, save_dir: Path) -> dict:
    """One training run in a fresh Python process (this script with ``--run-one``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-one", impl, "--data", args.data, "--epochs",
           str(args.epochs), "--imgsz", str(args.imgsz), "--batch-size", str(args.batch_size), "--device", args.device,
           "--workers", str(args.workers), "--save-dir", str(save_dir), "--ours", args.ours, "--ultralytics",
           args.ultralytics]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = next((ln for ln in reversed(p.stdout.splitlines()) if ln.startswith(RESULT_TAG)), None)
    if p.returncode or line is None:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"training run '{impl}' failed (exit {p.returncode}):\n{tail}")
    return json.loads(line[len(RESULT_TAG):])


def timed_epochs(epoch_s: list[float]) -> list[float]:
    """The epochs that count: all but the first (warm-up), unless there is only one."""
    return epoch_s[1:] if len(epoch_s) > 1 else list(epoch_s)


def round_orders(rounds: int) -> list[list[str]]:
    """Alternating run order: ours first in even rounds, ultralytics first in odd ones."""
    names = ["ours", "ultralytics"]
    return [names if r % 2 == 0 else names[::-1] for r in range(rounds)]


def train_ratio(rows: list[dict], labels: dict[str, str] = TRAINERS) -> tuple[float, list[float]]:
    """Median over rounds of ours/ultralytics (each round's two runs), and the per-round ratios."""
    by = {(int(r["round"]), r["model"]): float(r["value"]) for r in rows if r["measure"] == "train_epoch_s"}
    ours, theirs = labels["ours"], labels["ultralytics"]
    per_round = [by[(k, ours)] / by[(k, theirs)] for k in sorted({k for k, _ in by}) if (k, ours) in by and (k, theirs) in by]
    return (statistics.median(per_round) if per_round else float("nan")), per_round


# ------------------------------------------------------------------------------------------------- inference


def inference_rows(args, env: dict) -> list[dict]:
    from models.yolo import build_model

    device = "cuda" if env["device"] == "cuda" else "cpu"
    models = {name: build_model(f"{name}.yaml").to(device).eval().fuse(verbose=False) for name in ("yolov5s", "yolov5s-cbam")}
    rows = []
    for batch in args.infer_batches:
        x = torch.rand(batch, 3, args.infer_imgsz, args.infer_imgsz, device=device)

        def fwd(m):
            def run():
                with torch.inference_mode():
                    m(x)

            return run

        t = measure.time_interleaved({k: fwd(m) for k, m in models.items()}, device, args.repeats, 1, args.min_block)
        for k in models:
            rows.append({"measure": "fused_fwd_ms", "model": k, "round": "", "order": "", "value": t[k].median,
                         "unit": "ms", "ratio": measure.median_ratio(t[k], t["yolov5s"]),
                         "params": sum(p.numel() for p in models[k].parameters()), "imgsz": args.infer_imgsz,
                         "batch": batch, **env})
    return rows


# ---------------------------------------------------------------------------------------------------- report


def render(rows: list[dict], args, seconds: float) -> str:
    train = [r for r in rows if r["measure"] == "train_epoch_s"]
    infer = [r for r in rows if r["measure"] == "fused_fwd_ms"]
    env = rows[0] if rows else {}
    lines = ["# Training speed: our model code vs ultralytics'\n",
             "Generated by `python benchmarks/train_speed.py`; do not edit by hand.\n",
             f"- {env.get('device_name', '?')} ({env.get('device', '?')}{', ' + str(env['threads']) + ' thread(s)' if env.get('threads') else ''}); "
             f"torch {env.get('torch', '?')}, ultralytics {env.get('ultralytics', '?')}; {env.get('date', '?')}; the run took "
             f"{seconds / 60:.1f} min.",
             f"- Command: `python benchmarks/train_speed.py {' '.join(args.argv)}`\n"]
    if train:
        ratio, per_round = train_ratio(rows, args.labels)
        med = {name: statistics.median(float(r["value"]) for r in train if r["model"] == name)
               for name in args.labels.values() if any(r["model"] == name for r in train)}
        params = {r["model"]: r["params"] for r in train}
        lines += ["## Training epoch time\n",
                  f"{args.data}, {args.epochs} epochs per run at {args.imgsz} px, batch {args.batch_size}, SGD "
                  f"(lr0 {OPTIMIZER['lr0']}, momentum {OPTIMIZER['momentum']}, weight decay {OPTIMIZER['weight_decay']}), "
                  f"AMP where CUDA; {args.rounds} round(s), runs alternating. Seconds per epoch of the training loop "
                  f"(first epoch of each run dropped, median of the rest).\n",
                  measure.markdown_table(
                      ["Round", "Order", "Trainer", "Params", "s / epoch", "Epochs timed"],
                      [[r["round"], r["order"], r["model"], f"{int(r['params']):,}", measure.fnum(r["value"], 3),
                        r["epochs_timed"]] for r in train], "rrlrrr"),
                  f"\n**ours / ultralytics: {measure.fnum(ratio, 3)}** (median over rounds; per round "
                  f"{', '.join(f'{x:.3f}' for x in per_round)}); medians "
                  + "; ".join(f"{k} {v:.3f} s" for k, v in med.items())
                  + (". Same parameter count." if len(set(params.values())) == 1 else f". Parameters differ: {params}.")
                  + "\n"]
    if infer:
        lines += ["## Inference: yolov5s-cbam vs yolov5s (fused)\n",
                  f"Input {infer[0]['imgsz']} px, fp32, eval mode, both models timed in the same interleaved rounds "
                  f"(median of per-round ratios).\n",
                  measure.markdown_table(["Model", "Batch", "Params", "ms", "ratio to yolov5s"],
                                         [[r["model"], r["batch"], f"{int(r['params']):,}", measure.fnum(r["value"], 2),
                                           measure.fnum(r["ratio"], 3)] for r in infer])]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------ main


def parse_opt(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="shapes.yaml", help="dataset YAML (default: the built-in shapes dataset)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (ours, ultralytics) runs, order alternating")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is not timed)")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="", help="'' (CUDA 0 when present, else CPU), 0, cpu")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--infer-imgsz", type=int, default=640)
    ap.add_argument("--infer-batches", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--repeats", type=int, default=7, help="interleaved inference timing rounds")
    ap.add_argument("--min-block", type=float, default=0.2, help="seconds of calls per model per inference round")
    ap.add_argument("--ours", default="yolov5n.yaml", help="our config (a name in configs/ or a path)")
    ap.add_argument("--ultralytics", default="yolov5n.yaml", help="ultralytics' config for its own trainer")
    ap.add_argument("--no-inference", action="store_true", help="training only (skip the yolov5s-cbam inference timing)")
    ap.add_argument("--quick", action="store_true", help="1 round, 2 epochs at 64 px, inference at 64 px (for tests)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--run-one", choices=list(TRAINERS), help=argparse.SUPPRESS)  # internal: one run, this process
    ap.add_argument("--save-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.labels = trainer_labels(args.ours, args.ultralytics)
    if args.quick:
        args.rounds, args.epochs, args.imgsz, args.batch_size, args.workers = 1, 2, 64, 8, 0
        args.infer_imgsz, args.infer_batches, args.repeats, args.min_block = 64, [1], 3, 0.01
    return args


def main(argv=None) -> int:
    args = parse_opt(argv)
    if args.run_one:
        result = train_once(args.run_one, args.data, args.epochs, args.imgsz, args.batch_size, args.device,
                            args.workers, args.save_dir, args.ours if args.run_one == "ours" else args.ultralytics)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0
    import ultralytics

    t0 = time.perf_counter()
    cuda = torch.cuda.is_available() and args.device != "cpu"
    env = {**{k: v for k, v in measure.environment("cuda" if cuda else "cpu").items()
              if k in ("device", "device_name", "threads", "torch", "date")}, "ultralytics": ultralytics.__version__}
    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="train_speed_"))  # the runs' folders (weights, logs): not kept
    try:
        for r, order in enumerate(round_orders(args.rounds)):
            for k, impl in enumerate(order):
                res = run_in_process(impl, args, work / f"r{r}_{impl}")
                timed = timed_epochs(res["epoch_s"])
                rows.append({"measure": "train_epoch_s", "model": args.labels[impl], "round": r, "order": k, "unit": "s",
                             "value": statistics.median(timed), "epochs_timed": len(timed), "params": res["params"],
                             "imgsz": args.imgsz, "batch": args.batch_size, **env})
                print(f"[round {r} #{k}] {args.labels[impl]}: {rows[-1]['value']:.3f} s/epoch ({len(timed)} epochs "
                      "timed)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.no_inference:
        rows += inference_rows(args, env)
    args.out.mkdir(parents=True, exist_ok=True)
    measure.write_csv(args.out / "train_speed.csv", rows, COLUMNS + ["ratio"])
    (args.out / "train_speed.md").write_text(render(rows, args, time.perf_counter() - t0))
    ratio, _ = train_ratio(rows, args.labels)
    print(f"wrote {args.out / 'train_speed.csv'} and {args.out / 'train_speed.md'}: ours/ultralytics epoch time "
          f"{ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
