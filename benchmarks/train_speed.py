"""Training speed of our model code against ultralytics' own, and what an attention module costs at inference.

    python benchmarks/train_speed.py                       # 3 rounds x 2 pairs x 2 trainers, 3 epochs, 320 px, shapes
    python benchmarks/train_speed.py --pairs yolo11n-cbam --rounds 5
    python benchmarks/train_speed.py --quick --data tiny.yaml --out /tmp/speed     # a smoke run (tests)
    python benchmarks/train_speed.py --device 0 --ours yolov5s-cbam.yaml --ultralytics yolov5s.yaml --rounds 1 \
        --no-inference                                     # the GPU check's throughput: yolov5s-cbam vs yolov5su

Training, two pairs (:data:`PAIRS`), each ours (built by our parser, trained by ``AttentionTrainer``) against
ultralytics' own model (built and trained by its ``DetectionTrainer``):

- ``yolov5n``: our yolov5n (``configs/yolov5.yaml`` at scale n) and ultralytics' yolov5nu, the same architecture;
- ``yolo11n-cbam``: our yolo11n with CBAM after C2PSA (``configs/yolo11-cbam.yaml``) and ultralytics' yolo11n;

or one pair named with ``--ours`` and ``--ultralytics`` (e.g. yolov5s-cbam against yolov5su). AMP on CUDA;
ultralytics' trainer gets our AMP check in place of its own, which loads (and would download) yolo26n.pt; the check
runs before the timed epochs.

The same data, optimizer (SGD, lr0 0.01, momentum 0.937, weight decay 5e-4), seed, batch, image size and epochs. Each
run is a fresh process; within a round every pair runs ours and theirs back to back, the order alternating from
round to round, so a drift of a shared machine hits both. An epoch's time is its training loop
(``on_train_epoch_start`` to ``on_train_epoch_end``, CUDA synchronised), without validation; the first epoch
(workers starting, cuDNN autotuning) is dropped and a run's figure is the median of the others. A pair's ratio is
the median over rounds of ours/theirs within a round; throughput is its inverse.

Inference, fused (Conv+BN folded), eval mode, fp32, timed in the same interleaved rounds (tools/measure.py):
yolov5s-cbam against yolov5s; and ultralytics' yolo11n, our yolo11n, our yolo11n-cbam and CBAM alone on the map it
sees there (C2PSA's output), to compare yolo11n-cbam with ultralytics' yolo11n plus the module's own cost, per round.

Writes ``<out>/train_speed.csv`` and ``<out>/train_speed.md`` (default ``docs/benchmarks/``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import offline  # noqa: E402

offline.configure()

import torch  # noqa: E402

from tools import measure  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "benchmarks"
IMPLS = ("ours", "ultralytics")
RESULT_TAG = "TRAIN_SPEED_RESULT "
COLUMNS = ["measure", "pair", "model", "round", "order", "value", "unit", "epochs_timed", "params", "imgsz", "batch",
           "device", "device_name", "threads", "torch", "ultralytics", "date"]
OPTIMIZER = {"optimizer": "SGD", "lr0": 0.01, "momentum": 0.937, "weight_decay": 0.0005}


@dataclass(frozen=True)
class Pair:
    """Ours against ultralytics': the model names each trainer is given, and the labels in the report."""

    ours: str
    theirs: str
    ours_label: str
    theirs_label: str

    def label(self, impl: str) -> str:
        return self.ours_label if impl == "ours" else self.theirs_label


def trainer_labels(ours: str = "yolov5n.yaml", theirs: str = "yolov5n.yaml") -> dict[str, str]:
    """Row labels of the two trainers; ultralytics' YOLOv3/YOLOv5 configs build its 'u' (anchor-free) models."""
    u = "u" if re.match(r"yolov[35]", Path(theirs).stem) else ""
    return {"ours": f"ours {Path(ours).stem} (AttentionTrainer)",
            "ultralytics": f"ultralytics {Path(theirs).stem}{u} (DetectionTrainer)"}


def make_pair(ours: str, theirs: str) -> Pair:
    labels = trainer_labels(ours, theirs)
    return Pair(ours, theirs, labels["ours"], labels["ultralytics"])


PAIRS = {"yolov5n": make_pair("yolov5n.yaml", "yolov5n.yaml"), "yolo11n-cbam": make_pair("yolo11n-cbam.yaml", "yolo11n.yaml")}
TRAINERS = trainer_labels()  # the first pair's labels


# --------------------------------------------------------------------------------------------- one training run


def train_once(p: Pair, impl: str, data: str, epochs: int, imgsz: int, batch: int, device: str, workers: int,
               save_dir: Path) -> dict:
    """Train one side (``impl``: 'ours' or 'ultralytics') of a pair once in this process; per-epoch training-loop
    seconds and params."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    from data.datasets import prepare_data
    from models.engine.trainer import AttentionTrainer
    from models.parse.read import resolve_config
    from models.patches import trainer_amp_check

    if impl == "ours":
        path, _ = resolve_config(p.ours)
        model, cls = str(path.with_name(Path(p.ours).name)), AttentionTrainer  # the scale letter rides in the name
    elif impl == "ultralytics":
        model, cls = p.theirs, DetectionTrainer  # ultralytics' own YAML and parser
    else:
        raise ValueError(f"unknown trainer {impl!r}")
    overrides = {"model": model, "data": prepare_data(data), "epochs": epochs, "imgsz": imgsz, "batch": batch,
                 "device": device or None, "workers": workers, "seed": 0, "deterministic": True, "amp": True,
                 "plots": False, "val": False, "save_dir": str(save_dir), "exist_ok": True, **OPTIMIZER}
    trainer = cls(overrides=overrides)
    if trainer.device.type == "cpu":  # both trainers on the same threads (ultralytics' own leaves a core idle)
        from models.engine.trainer import cpu_training_threads

        torch.set_num_threads(cpu_training_threads())
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
    return {"pair": p.ours, "impl": impl, "epoch_s": [e - s for s, e in zip(starts, ends)],
            "params": sum(p.numel() for p in model_.parameters()), "device": str(trainer.device)}


def run_in_process(pair: str, impl: str, args, save_dir: Path) -> dict:
    """One training run in a fresh Python process (this script with ``--run-one``)."""
    p = args.pairs[pair]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-one", impl, "--ours", p.ours, "--ultralytics",
           p.theirs, "--data", args.data, "--epochs",
           str(args.epochs), "--imgsz", str(args.imgsz), "--batch-size", str(args.batch_size), "--device", args.device,
           "--workers", str(args.workers), "--save-dir", str(save_dir)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = next((ln for ln in reversed(p.stdout.splitlines()) if ln.startswith(RESULT_TAG)), None)
    if p.returncode or line is None:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"training run '{pair}' {impl} failed (exit {p.returncode}):\n{tail}")
    return json.loads(line[len(RESULT_TAG):])


def timed_epochs(epoch_s: list[float]) -> list[float]:
    """The epochs that count: all but the first (warm-up), unless there is only one."""
    return epoch_s[1:] if len(epoch_s) > 1 else list(epoch_s)


def round_orders(rounds: int) -> list[list[str]]:
    """Alternating run order: ours first in even rounds, ultralytics first in odd ones."""
    return [list(IMPLS) if r % 2 == 0 else list(IMPLS)[::-1] for r in range(rounds)]


def train_ratio(rows: list[dict], labels: dict[str, str] | str = TRAINERS) -> tuple[float, list[float]]:
    """Median over rounds of ours/ultralytics epoch time for one pair (its trainers' ``labels``, or a name in
    :data:`PAIRS`), each round's two runs, and the per-round ratios."""
    if isinstance(labels, str):
        labels = {impl: PAIRS[labels].label(impl) for impl in IMPLS}
    by = {(int(r["round"]), r["model"]): float(r["value"]) for r in rows if r["measure"] == "train_epoch_s"}
    ours, theirs = labels["ours"], labels["ultralytics"]
    per_round = [by[(k, ours)] / by[(k, theirs)] for k in sorted({k for k, _ in by}) if (k, ours) in by and (k, theirs) in by]
    return (statistics.median(per_round) if per_round else float("nan")), per_round


# ------------------------------------------------------------------------------------------------- inference


def _fused(model):
    return model.eval().fuse(verbose=False)


def inference_models(device: str) -> dict[str, dict[str, torch.nn.Module]]:
    """The inference groups, each timed in its own interleaved rounds: {group: {name: module}} (fused, eval)."""
    from ultralytics.nn.tasks import DetectionModel

    from models.yolo import build_model

    yolo11 = {"ultralytics yolo11n": _fused(DetectionModel("yolo11n.yaml", verbose=False)),
              "ours yolo11n": _fused(build_model("yolo11n.yaml")), "ours yolo11n-cbam": _fused(build_model("yolo11n-cbam.yaml"))}
    yolo11["CBAM alone"] = next(m for m in yolo11["ours yolo11n-cbam"].model if m.type == "CBAM")  # timed on its input
    groups = {"yolov5s": {name: _fused(build_model(f"{name}.yaml")) for name in ("yolov5s", "yolov5s-cbam")},
              "yolo11n": yolo11}
    return {g: {k: m.to(device) for k, m in models.items()} for g, models in groups.items()}


def _input_of(models: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    """The input a module alone sees inside its model: recorded in one forward of the model that holds it."""
    holder = next(m for k, m in models.items() if k != name and any(mm is models[name] for mm in m.modules()))
    seen = {}

    def record(module, inputs):
        seen.setdefault("x", inputs[0].clone())  # returns None: the input is not replaced

    hook = models[name].register_forward_pre_hook(record)
    with torch.inference_mode():
        holder(x)
    hook.remove()
    return seen["x"]


def inference_rows(args, env: dict) -> list[dict]:
    device = "cuda" if env["device"] == "cuda" else "cpu"
    rows = []
    for group, models in inference_models(device).items():
        base = next(iter(models))
        for batch in args.infer_batches:
            x = torch.rand(batch, 3, args.infer_imgsz, args.infer_imgsz, device=device)
            inputs = {k: (_input_of(models, k, x) if k.endswith("alone") else x) for k in models}

            def fwd(m, xi):
                def run():
                    with torch.inference_mode():
                        m(xi)

                return run

            t = measure.time_interleaved({k: fwd(m, inputs[k]) for k, m in models.items()}, device, args.repeats, 1,
                                         args.min_block)
            for k in models:
                rows.append({"measure": "fused_fwd_ms", "pair": group, "model": k, "round": "", "order": "",
                             "value": t[k].median, "unit": "ms", "ratio": measure.median_ratio(t[k], t[base]),
                             "per_repeat": " ".join(f"{v:.4f}" for v in t[k].per_repeat),
                             "params": sum(p.numel() for p in models[k].parameters()), "imgsz": args.infer_imgsz,
                             "batch": batch, **env})
    return rows


def module_cost_check(rows: list[dict], batch) -> tuple[float, float, float] | None:
    """(median over rounds of yolo11n-cbam - ultralytics yolo11n - CBAM alone, in ms; the noise: the interquartile
    range of ultralytics yolo11n's rounds, ms; the module's own median ms), or None without those rows."""
    by = {r["model"]: [float(v) for v in str(r.get("per_repeat", "")).split()] for r in rows
          if r["measure"] == "fused_fwd_ms" and r.get("pair") == "yolo11n" and str(r["batch"]) == str(batch)}
    need = ("ours yolo11n-cbam", "ultralytics yolo11n", "CBAM alone")
    if not all(by.get(k) for k in need):
        return None
    excess = [a - b - c for a, b, c in zip(*(by[k] for k in need))]
    theirs = by["ultralytics yolo11n"]
    q = statistics.quantiles(theirs, n=4) if len(theirs) >= 4 else [min(theirs), 0, max(theirs)]
    return statistics.median(excess), q[2] - q[0], statistics.median(by["CBAM alone"])


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
        lines += ["## Training epoch time\n",
                  f"{args.data}, {args.epochs} epochs per run at {args.imgsz} px, batch {args.batch_size}, SGD "
                  f"(lr0 {OPTIMIZER['lr0']}, momentum {OPTIMIZER['momentum']}, weight decay {OPTIMIZER['weight_decay']}), "
                  f"AMP where CUDA; {args.rounds} round(s), runs alternating. Seconds per epoch of the training loop "
                  f"(first epoch of each run dropped, median of the rest).\n",
                  measure.markdown_table(
                      ["Round", "Order", "Trainer", "Params", "s / epoch", "Epochs timed"],
                      [[r["round"], r["order"], r["model"], f"{int(r['params']):,}", measure.fnum(r["value"], 3),
                        r["epochs_timed"]] for r in train], "rrlrrr"), ""]
        for name, p in args.pairs.items():
            mine = [r for r in train if r["model"] in (p.ours_label, p.theirs_label)]
            if not mine:
                continue
            ratio, per_round = train_ratio(rows, {impl: p.label(impl) for impl in IMPLS})
            med = {p.label(i): statistics.median(float(r["value"]) for r in mine if r["model"] == p.label(i))
                   for i in IMPLS if any(r["model"] == p.label(i) for r in mine)}
            params = {r["model"]: r["params"] for r in mine}
            lines.append(f"**{name}: ours / ultralytics epoch time {measure.fnum(ratio, 3)}, throughput "
                         f"{measure.fnum(1 / ratio if ratio else float('nan'), 3)}x** (median over rounds; per round "
                         f"{', '.join(f'{x:.3f}' for x in per_round)}); medians "
                         + "; ".join(f"{k} {v:.3f} s" for k, v in med.items())
                         + (". Same parameter count." if len(set(params.values())) == 1 else
                            f". Parameters: {'; '.join(f'{k} {int(v):,}' for k, v in params.items())}.") + "\n")
    if infer:
        lines += ["## Inference (fused)\n",
                  f"Input {infer[0]['imgsz']} px, fp32, eval mode; each group's models timed in the same interleaved "
                  f"rounds (ratio: median of per-round ratios to the group's first model). `CBAM alone` runs on the "
                  f"map it sees in yolo11n-cbam (C2PSA's output).\n",
                  measure.markdown_table(["Group", "Model", "Batch", "Params", "ms", "ratio"],
                                         [[r.get("pair", ""), r["model"], r["batch"], f"{int(r['params']):,}",
                                           measure.fnum(r["value"], 2), measure.fnum(r["ratio"], 3)] for r in infer])]
        for batch in sorted({r["batch"] for r in infer}, key=int):
            check = module_cost_check(rows, batch)
            if check:
                excess, noise, own = check
                verdict = "within" if abs(excess) <= noise else "outside"
                lines.append(f"\nBatch {batch}: yolo11n-cbam - (ultralytics yolo11n + CBAM alone) = {excess:+.2f} ms "
                             f"(median over rounds; CBAM alone {own:.2f} ms), {verdict} the noise of ultralytics "
                             f"yolo11n's rounds ({noise:.2f} ms interquartile range).")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------ main


def parse_opt(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="shapes.yaml", help="dataset YAML (default: the built-in shapes dataset)")
    ap.add_argument("--pairs", nargs="+", choices=list(PAIRS), default=list(PAIRS), help="which pairs to train")
    ap.add_argument("--ours", help="instead of --pairs: our config (a name in configs/ or a path) ...")
    ap.add_argument("--ultralytics", help="... against this ultralytics config for its own trainer")
    ap.add_argument("--no-inference", action="store_true", help="training only (skip the inference timings)")
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
    ap.add_argument("--quick", action="store_true", help="1 round, 2 epochs at 64 px, inference at 64 px (for tests)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--run-one", choices=IMPLS, help=argparse.SUPPRESS)  # internal: one run (--ours/--ultralytics) here
    ap.add_argument("--save-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.ours or args.ultralytics:  # one pair of the user's
        if not (args.ours and args.ultralytics):
            ap.error("--ours and --ultralytics go together")
        custom = make_pair(args.ours, args.ultralytics)
        args.pairs = {Path(args.ours).stem: custom}
    else:
        args.pairs = {name: PAIRS[name] for name in args.pairs}
    first = next(iter(args.pairs.values()))
    args.labels = {impl: first.label(impl) for impl in IMPLS}
    if args.quick:
        args.rounds, args.epochs, args.imgsz, args.batch_size, args.workers = 1, 2, 64, 8, 0
        args.infer_imgsz, args.infer_batches, args.repeats, args.min_block = 64, [1], 3, 0.01
    return args


def main(argv=None) -> int:
    args = parse_opt(argv)
    if args.run_one:
        result = train_once(next(iter(args.pairs.values())), args.run_one, args.data, args.epochs, args.imgsz, args.batch_size, args.device,
                            args.workers, args.save_dir)
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
            for pair in args.pairs:
                for k, impl in enumerate(order):
                    res = run_in_process(pair, impl, args, work / f"r{r}_{pair}_{impl}")
                    timed = timed_epochs(res["epoch_s"])
                    label = args.pairs[pair].label(impl)
                    rows.append({"measure": "train_epoch_s", "pair": pair, "model": label, "round": r, "order": k,
                                 "unit": "s", "value": statistics.median(timed), "epochs_timed": len(timed),
                                 "params": res["params"], "imgsz": args.imgsz, "batch": args.batch_size, **env})
                    print(f"[round {r} #{k}] {label}: {rows[-1]['value']:.3f} s/epoch ({len(timed)} epochs timed)",
                          flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.no_inference:
        rows += inference_rows(args, env)
    args.out.mkdir(parents=True, exist_ok=True)
    measure.write_csv(args.out / "train_speed.csv", rows, COLUMNS + ["ratio", "per_repeat"])
    (args.out / "train_speed.md").write_text(render(rows, args, time.perf_counter() - t0))
    ratios = ", ".join(f"{name} {train_ratio(rows, {i: p.label(i) for i in IMPLS})[0]:.3f}" for name, p in args.pairs.items())
    print(f"wrote {args.out / 'train_speed.csv'} and {args.out / 'train_speed.md'}: ours/ultralytics epoch time {ratios}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
