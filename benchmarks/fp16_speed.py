"""fp16 latency on a GPU: our models against ultralytics' own, our modules against timm's and torchvision's.

    python benchmarks/fp16_speed.py                                  # CUDA, batch 1 and 32
    python benchmarks/fp16_speed.py --device cpu --quick --out /tmp/fp16    # a smoke run of the code

Models: our yolov5s, ultralytics' yolov5su (``DetectionModel('yolov5s.yaml')``, the same architecture built by
ultralytics' parser) and our yolov5s-cbam at 640 px: fp16 inference (fused, ``model.half()``, inference mode) and one
AMP train step (fp16 autocast forward, the mean of every output as the loss, backward); ratios to our yolov5s,
measured in the same interleaved rounds (tools/measure.py).

Modules: each module that timm or torchvision also implements (``reference_modules`` of profile_modules.py, set to
our widths) at C=256 on a 40x40 map: fp16 autocast forward (eval) and forward+backward (train); ours/theirs per
round, median over rounds.

Writes ``<out>/fp16_models.csv`` and ``<out>/fp16_modules.csv`` and prints both tables.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import offline  # noqa: E402

offline.configure()

import torch  # noqa: E402

from tools import measure  # noqa: E402

MODEL_COLUMNS = ["model", "batch", "imgsz", "fp16_fwd_ms", "fp16_fwd_ratio", "amp_train_ms", "amp_train_ratio"]
MODULE_COLUMNS = ["module", "library", "batch", "c", "hw", "ours_fwd_ms", "theirs_fwd_ms", "ratio_fwd",
                  "ours_fwdbwd_ms", "theirs_fwdbwd_ms", "ratio_fwdbwd"]


def _timing(quick: bool) -> dict:
    return {"repeats": 3 if quick else 5, "warmup": 2, "min_block_s": 0.02 if quick else 0.1}


def fp16_models(batches=(1, 32), imgsz: int = 640, device: str = "cuda", quick: bool = False,
                scale: str = "s") -> list[dict]:
    """fp16 inference (fused, ``model.half()``) and AMP train-step latency: ours vs ultralytics' yolov5su."""
    from ultralytics.nn.tasks import DetectionModel

    from models.yolo import build_model

    base = f"yolov5{scale}"
    models = {base: build_model(f"{base}.yaml"), f"{base}u (ultralytics)": DetectionModel(f"{base}.yaml", verbose=False),
              f"{base}-cbam": build_model(f"{base}-cbam.yaml")}
    kind = torch.device(device).type
    rows = []
    for batch in batches:
        x = torch.rand(batch, 3, imgsz, imgsz, device=device)
        train = {k: copy.deepcopy(m).to(device).train() for k, m in models.items()}

        def step(m):
            def run():
                m.zero_grad(set_to_none=True)
                with torch.autocast(kind, dtype=torch.float16):
                    out = m(x)
                sum(t.float().mean() for t in torch.utils._pytree.tree_leaves(out)).backward()

            return run

        t_train = measure.time_interleaved({k: step(m) for k, m in train.items()}, device, **_timing(quick))
        del train
        infer = {k: copy.deepcopy(m).to(device).eval().fuse(verbose=False).half() for k, m in models.items()}
        xh = x.half()

        def fwd(m):
            def run():
                with torch.inference_mode():
                    m(xh)

            return run

        t_fwd = measure.time_interleaved({k: fwd(m) for k, m in infer.items()}, device, **_timing(quick))
        del infer
        for k in models:
            rows.append({"model": k, "batch": batch, "imgsz": imgsz,
                         "fp16_fwd_ms": t_fwd[k].median, "fp16_fwd_ratio": measure.median_ratio(t_fwd[k], t_fwd[base]),
                         "amp_train_ms": t_train[k].median,
                         "amp_train_ratio": measure.median_ratio(t_train[k], t_train[base])})
        if kind == "cuda":
            torch.cuda.empty_cache()
    return rows


def fp16_modules(batches=(1, 32), c: int = 256, hw: int = 40, device: str = "cuda", quick: bool = False) -> list[dict]:
    """Our modules against timm/torchvision's in fp16 autocast: forward and forward+backward, same rounds."""
    from benchmarks.profile_modules import TRAIN_FIXES, reference_modules
    from models.registry import attention_specs

    kind = torch.device(device).type
    rows = []
    for spec in attention_specs():
        torch.manual_seed(0)
        ours = spec.cls(c)
        refs = reference_modules(spec.name, ours, c)
        if not refs:
            continue
        mods = {"ours": ours.to(device), **{k: m.to(device) for k, (_, m) in refs.items()}}
        for batch in batches:
            x = torch.randn(batch, c, hw, hw, device=device)
            grad = torch.randn_like(x)

            def fwd(m):
                def run():
                    with torch.inference_mode(), torch.autocast(kind, dtype=torch.float16):
                        m(x)

                return run

            def train(m):
                xg = x.clone().requires_grad_(True)

                def run():
                    m.zero_grad(set_to_none=True)
                    with torch.autocast(kind, dtype=torch.float16):
                        y = m(xg)
                    y.float().backward(grad)

                return run

            for m in mods.values():
                m.eval()
            tf = measure.time_interleaved({k: fwd(m) for k, m in mods.items()}, device, **_timing(quick))
            for k, m in mods.items():
                m.train()
                if k != "ours":
                    TRAIN_FIXES.get(refs[k][0], lambda _: None)(m)
            tb = measure.time_interleaved({k: train(m) for k, m in mods.items()}, device, **_timing(quick))
            for k in refs:
                rows.append({"module": spec.name, "library": f"{k} {refs[k][0]}", "batch": batch, "c": c, "hw": hw,
                             "ours_fwd_ms": tf["ours"].median, "theirs_fwd_ms": tf[k].median,
                             "ratio_fwd": measure.median_ratio(tf["ours"], tf[k]),
                             "ours_fwdbwd_ms": tb["ours"].median, "theirs_fwdbwd_ms": tb[k].median,
                             "ratio_fwdbwd": measure.median_ratio(tb["ours"], tb[k])})
    return rows


def parse_opt(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run: CPU fp16 is no benchmark)")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--imgsz", type=int, default=640, help="model input size")
    ap.add_argument("--quick", action="store_true", help="yolov5n at 64 px, modules at C=32 8x8, batch 1, 3 rounds")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_opt(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device (--device cpu runs the code on the CPU)")
    if args.quick:
        models = fp16_models((1,), 64, args.device, quick=True, scale="n")
        modules = fp16_modules((1,), c=32, hw=8, device=args.device, quick=True)
    else:
        models = fp16_models(tuple(args.batches), args.imgsz, args.device)
        modules = fp16_modules(tuple(args.batches), device=args.device)
    measure.write_csv(args.out / "fp16_models.csv", models, MODEL_COLUMNS)
    measure.write_csv(args.out / "fp16_modules.csv", modules, MODULE_COLUMNS)
    print(measure.markdown_table(MODEL_COLUMNS, [[measure.fnum(r[k], 3) if isinstance(r[k], float) else r[k]
                                                  for k in MODEL_COLUMNS] for r in models]))
    print(measure.markdown_table(MODULE_COLUMNS, [[measure.fnum(r[k], 3) if isinstance(r[k], float) else r[k]
                                                   for k in MODULE_COLUMNS] for r in modules]))
    print(f"wrote {args.out / 'fp16_models.csv'} and {args.out / 'fp16_modules.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
