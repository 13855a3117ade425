"""One command that checks the whole project on a CUDA GPU and writes ``docs/benchmarks/gpu_check.{json,md}``.

    python benchmarks/gpu_check.py                          # every step, 480 s budget
    python benchmarks/gpu_check.py --out /tmp/gpu --budget-s 300
    python benchmarks/gpu_check.py --steps 'train:*' 'val:*' --append   # re-run some steps, keep the others' results

Steps, in this order (most important first, so a short budget cuts the benchmarks, not the checks):

1. ``environment``: GPU name, memory, compute capability, torch / CUDA / cuDNN / driver / ultralytics / onnxruntime
   versions and providers.
2. ``module_matrix``: every registered attention module on CUDA: fp32 forward+backward finite; fp16 and bf16 autocast
   forward+backward finite and close to fp32 (relative L2 difference of the output and of the input gradient);
   ``model.half()`` forward (what ``val.py --half`` runs) on activations of ~10, finite; under
   ``torch.use_deterministic_algorithms(True)`` (``warn_only=False``, ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set before
   CUDA starts) forward+backward twice, bit-equal.
   ``golden``: every golden fixture (tests/fixtures/golden/, the official implementations' float64 outputs) with
   ours on CUDA in float32, TF32 off, eval and train mode: max difference relative to the largest output, at most
   1e-4 (on CPU in float32 the worst of the 49 is 8.7e-7).
3. ``dataset``: the built-in shapes dataset (made on first use).
4. For ``yolov5s-cbam.yaml`` (anchor-free) and ``yolov5s-cbam-anchor.yaml`` (YOLOv5's anchor head):
   ``train:<cfg>`` (``python train.py`` 2 epochs, AMP, 320 px; the log must show our AMP check, never a download),
   ``val:<cfg>``, ``detect:<cfg>`` (an image folder and a video), ``export:<cfg>`` (``python export.py --include
   onnx``, then onnxruntime on CUDA when onnxruntime-gpu is installed, else on CPU, against PyTorch).
5. ``fp16_models``: fp16 inference and AMP train-step latency of our yolov5s, ultralytics' yolov5su and
   yolov5s-cbam at batch 1 and 32 (ratios to our yolov5s, same rounds); ``fp16_modules``: fp16 forward and
   forward+backward of our modules against timm/torchvision's at batch 1 and 32.
6. ``profile_b1``, ``profile_b32``: the CUDA columns of ``benchmarks/profile_modules.py --quick`` (ours vs
   timm/torchvision, forward and train step); ``overhead``: ``benchmarks/model_overhead.py`` on CUDA at batch 1
   and 32 (yolov5s + module vs plain yolov5s, ultralytics' yolov5su as the control).
7. ``determinism_audit``: no GPU needed. Which modules' forward+backward call an operation that raises under
   CUDA's deterministic mode (read from the operations they dispatch on CPU): a prediction of step 2.

Every step is isolated: a failing step is recorded with its error and the next one runs. The budget is checked
between steps: a step whose typical duration no longer fits is skipped with a note, and a subprocess is killed
when it outlives its share. The JSON and markdown are rewritten after every step, so a killed run still leaves
its report. Without CUDA the GPU steps are reported as skipped ("no CUDA device") and the report is written.
Everything runs offline; nothing is downloaded.

On a bare GPU machine the project's Python packages must be present (ultralytics==8.4.190 with ultralytics-thop,
polars, cloudpickle, onnx, onnxruntime; timm optional): see docs/benchmarks.md, "GPU check".
"""

from __future__ import annotations

import os

# deterministic cuBLAS needs this before CUDA initialises (https://docs.nvidia.com/cuda/cublas, "Results
# reproducibility"); set here, before torch is imported, so the module matrix can run in deterministic mode
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import csv  # noqa: E402
import datetime as _dt  # noqa: E402
import fnmatch  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import offline  # noqa: E402

offline.configure()

import torch  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "benchmarks"
CONFIGS = ("yolov5s-cbam.yaml", "yolov5s-cbam-anchor.yaml")
GRACE_S = 30  # a subprocess may outrun the budget by this much before it is killed
# autocast against fp32, relative L2 difference of the module output / of the input gradient
TOLERANCE = {"fp16": (1e-2, 5e-2), "bf16": (5e-2, 2e-1)}
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}

# aten operations whose CUDA kernels raise under torch.use_deterministic_algorithms(True) (torch's documented list)
CUDA_NONDETERMINISTIC_OPS = {
    "avg_pool3d_backward", "_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward",
    "adaptive_max_pool2d_backward", "adaptive_max_pool3d_backward", "fractional_max_pool2d_backward",
    "fractional_max_pool3d_backward", "max_unpool2d", "max_unpool3d", "upsample_linear1d_backward",
    "upsample_bilinear2d_backward", "upsample_bicubic2d_backward", "upsample_trilinear3d_backward",
    "_upsample_bilinear2d_aa_backward", "_upsample_bicubic2d_aa_backward", "reflection_pad1d_backward",
    "reflection_pad2d_backward", "reflection_pad3d_backward", "grid_sampler_2d_backward",
    "grid_sampler_3d_backward", "histc", "bincount", "median", "nanmedian", "put_", "put", "embedding_bag",
    "_embedding_bag_backward", "_ctc_loss_backward", "nll_loss2d_forward",
}


# ------------------------------------------------------------------------------------------------ step machinery


@dataclass
class Step:
    """One isolated check. ``run(ctx)`` returns a dict of results (a ``failures`` list marks it failed) or raises."""

    name: str
    run: Callable[["Context"], dict]
    estimate_s: float  # typical duration on an H200, for the budget
    needs_cuda: bool = True
    needs: tuple[str, ...] = ()  # steps that must have passed


@dataclass
class Context:
    budget_s: float
    cuda: bool
    work: Path
    device: str = "0"
    clock: Callable[[], float] = time.monotonic
    start: float = 0.0
    results: dict = field(default_factory=dict)  # step name -> record
    artefacts: dict = field(default_factory=dict)  # e.g. "weights:yolov5s-cbam.yaml" -> path
    step_limit_s: float = float("inf")  # how long the running step may take (subprocess timeouts)

    def time_left(self) -> float:
        return self.budget_s - (self.clock() - self.start)


def run_steps(steps: list[Step], ctx: Context, on_record: Callable[[dict], None] = lambda r: None) -> list[dict]:
    """Run ``steps`` in order; every step yields a record (ok / failed / error / skipped) and the next one runs."""
    ctx.start = ctx.clock()
    records = []
    for step in steps:
        left = ctx.time_left()
        rec = {"step": step.name, "status": "skipped", "seconds": 0.0, "note": "", "failures": []}
        missing = [n for n in step.needs if ctx.results.get(n, {}).get("status") != "ok"]
        if left <= 0:
            rec["note"] = f"budget of {ctx.budget_s:.0f} s used up before this step; the remaining steps were not run"
        elif step.estimate_s > left:
            rec["note"] = f"budget: needs about {step.estimate_s:.0f} s, {left:.0f} s of {ctx.budget_s:.0f} s left"
        elif step.needs_cuda and not ctx.cuda:
            rec["note"] = "no CUDA device"
        elif missing:
            rec["note"] = "needs " + ", ".join(f"{n} ({ctx.results.get(n, {}).get('status', 'not run')})" for n in missing)
        else:
            ctx.step_limit_s = max(10.0, min(3 * step.estimate_s, left + GRACE_S))
            t0 = ctx.clock()
            try:
                details = step.run(ctx) or {}
                rec.update(details)
                rec["failures"] = list(details.get("failures", []))
                rec["status"] = "failed" if rec["failures"] else "ok"
            except Exception as e:  # isolation: record and go on
                rec["status"] = "error"
                rec["failures"] = [f"{type(e).__name__}: {str(e).strip()[:2000]}"]
                rec["traceback"] = traceback.format_exc()[-3000:]
            rec["seconds"] = round(ctx.clock() - t0, 1)
        ctx.results[step.name] = rec
        records.append(rec)
        print(f"[gpu_check] {step.name}: {rec['status']} ({rec['seconds']:.0f} s)"
              + (f" - {rec['note']}" if rec["note"] else "")
              + "".join(f"\n    {f}" for f in rec["failures"][:10]), flush=True)
        on_record(rec)
    return records


def run_command(cmd: list[str], ctx: Context, log: Path) -> subprocess.CompletedProcess:
    """A project script as a subprocess, killed after the step's time limit; output saved to ``log``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=ctx.step_limit_s)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        log.write_text(out + ((e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")))
        raise TimeoutError(f"{' '.join(cmd[1:3])} ran past its {ctx.step_limit_s:.0f} s (log {log})") from None
    log.write_text(p.stdout + p.stderr)
    if p.returncode:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"`{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}` exited "
                           f"{p.returncode}:\n{tail}")
    return p


# ------------------------------------------------------------------------------------------------ environment


def environment(ctx: Context) -> dict:
    import ultralytics

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda_build": torch.version.cuda or "",
           "ultralytics": ultralytics.__version__, "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
           "date": _dt.datetime.now().isoformat(timespec="seconds"),
           "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG", "")}
    for pkg in ("torchvision", "onnx", "onnxruntime", "timm", "cv2"):
        try:
            env[pkg] = __import__(pkg).__version__
        except Exception:
            env[pkg] = ""
    try:
        import onnxruntime as ort

        env["onnxruntime_providers"] = ort.get_available_providers()
    except Exception:
        env["onnxruntime_providers"] = []
    if ctx.cuda:
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   compute_capability=f"{p.major}.{p.minor}", cudnn=torch.backends.cudnn.version(),
                   gpu_count=torch.cuda.device_count(), bf16_supported=torch.cuda.is_bf16_supported())
        with contextlib.suppress(Exception):
            q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=10)
            env["driver"] = q.stdout.strip().splitlines()[0] if q.returncode == 0 and q.stdout.strip() else ""
    else:
        env["gpu"] = "no CUDA device"
    return {"environment": env}


def _cpu_name() -> str:
    from tools.measure import cpu_name

    return cpu_name()


# ----------------------------------------------------------------------------------------------- module matrix


def _perturb_zero_parameters(m: torch.nn.Module) -> None:
    """Identity-at-init modules (zero last layers) get small random values so their attention path is exercised."""
    with torch.no_grad():
        for p in m.parameters():
            if p.dtype.is_floating_point and torch.count_nonzero(p) == 0:
                p.add_(0.1 * torch.randn_like(p))


def _relative(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().float(), ref.detach().float()
    if not torch.isfinite(a).all():
        return float("inf")
    return float((a - ref).norm() / ref.norm().clamp_min(1e-12))


def _fwd_bwd(m, x, grad, dtype=None, device_type="cuda"):
    """(output, input gradient) of one train-mode forward+backward, under autocast ``dtype`` when given."""
    m.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    ctx = torch.autocast(device_type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with ctx:
        y = m(x)
    y.float().backward(grad)
    return y.detach(), x.grad.detach()


def module_case(spec, device: str, c: int = 64, hw=(20, 20), batch: int = 2) -> dict:
    """Every numerical check of the matrix for one module on one device; ``failures`` names what went wrong."""
    dev = torch.device(device)
    row: dict = {"module": spec.name, "failures": []}
    torch.manual_seed(0)
    base = spec.cls(c)
    _perturb_zero_parameters(base)
    base = base.to(dev).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, c, *hw, generator=g).to(dev)
    grad = torch.randn(batch, c, *hw, generator=g).to(dev)
    # fp32
    try:
        y32, gx32 = _fwd_bwd(copy.deepcopy(base), x, grad, device_type=dev.type)
        finite = bool(torch.isfinite(y32).all() and torch.isfinite(gx32).all())
        row["fp32"] = "ok" if finite else "non-finite"
        if not finite:
            row["failures"].append(f"{spec.name}: fp32 forward/backward not finite")
    except Exception as e:
        row["fp32"] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        row["failures"].append(f"{spec.name}: fp32 {row['fp32']}")
        return row
    # autocast fp16 / bf16
    for label, dtype in AMP_DTYPES.items():
        tol_out, tol_grad = TOLERANCE[label]
        try:
            y, gx = _fwd_bwd(copy.deepcopy(base), x, grad, dtype, dev.type)
            out_rel, grad_rel = _relative(y, y32), _relative(gx, gx32)
            row[f"{label}_out"], row[f"{label}_grad"] = out_rel, grad_rel
            if not (out_rel <= tol_out and grad_rel <= tol_grad):
                row["failures"].append(f"{spec.name}: {label} autocast differs from fp32: output {out_rel:.2e} "
                                       f"(limit {tol_out:g}), input gradient {grad_rel:.2e} (limit {tol_grad:g})")
            with torch.no_grad(), torch.autocast(dev.type, dtype=dtype):  # large activations: energies must not overflow
                big = copy.deepcopy(base)(10 * x)
            if not torch.isfinite(big).all():
                row["failures"].append(f"{spec.name}: {label} autocast forward on activations of ~10 is not finite")
                row[f"{label}_out"] = float("inf")
        except Exception as e:
            row[f"{label}_out"] = row[f"{label}_grad"] = None
            row["failures"].append(f"{spec.name}: {label} autocast error: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    # model.half() (val.py --half, detect.py --half): no autocast, every tensor fp16
    try:
        with torch.no_grad():
            yh = copy.deepcopy(base).eval().half()((10 * x).half())
        row["half"] = "ok" if yh.dtype == torch.float16 and torch.isfinite(yh).all() else f"{yh.dtype}, finite={bool(torch.isfinite(yh).all())}"
        if row["half"] != "ok":
            row["failures"].append(f"{spec.name}: .half() forward on activations of ~10: {row['half']}")
    except Exception as e:
        row["half"] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        row["failures"].append(f"{spec.name}: .half() {row['half']}")
    # deterministic mode: two runs bit-equal
    row["deterministic"] = deterministic_case(base, x, grad, dev.type)
    if row["deterministic"] != "bit-equal":
        row["failures"].append(f"{spec.name}: deterministic mode: {row['deterministic']}")
    return row


def deterministic_case(base: torch.nn.Module, x, grad, device_type: str) -> str:
    """'bit-equal', 'differs: ...' or 'error: ...' for two forward+backward runs under deterministic algorithms."""
    was = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    bench = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.benchmark = False
    try:
        runs = []
        for _ in range(2):
            m = copy.deepcopy(base)
            y, gx = _fwd_bwd(m, x, grad, device_type=device_type)
            runs.append([y, gx] + [p.grad.detach().clone() for p in m.parameters() if p.grad is not None])
        diffs = [float((a.float() - b.float()).abs().max()) for a, b in zip(*runs) if not torch.equal(a, b)]
        return "bit-equal" if not diffs else f"differs: {len(diffs)} of {len(runs[0])} tensors, max {max(diffs):.2e}"
    except RuntimeError as e:
        return f"error: {str(e).splitlines()[0][:240]}"
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
        torch.backends.cudnn.benchmark = bench


def module_matrix(ctx: Context, names: list[str] | None = None, device: str = "cuda") -> dict:
    from models.registry import attention_specs

    specs = [s for s in attention_specs() if names is None or s.name in names]
    rows, failures, t0 = [], [], time.monotonic()
    for k, spec in enumerate(specs):
        if ctx is not None and time.monotonic() - t0 > ctx.step_limit_s:  # in-process: no subprocess timeout here
            failures.append(f"module matrix stopped after {k} of {len(specs)} modules: past its {ctx.step_limit_s:.0f} s")
            break
        for hw in ((20, 20), (13, 31)):
            try:
                row = module_case(spec, device, hw=hw)
            except Exception as e:  # building or moving the module failed
                row = {"module": spec.name, "failures": [f"{spec.name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"]}
            row["hw"] = f"{hw[0]}x{hw[1]}"
            rows.append(row)
            failures += row["failures"]
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return {"modules": rows, "failures": failures, "tolerance": TOLERANCE}


# --------------------------------------------------------------------------------- determinism audit (no GPU)


class _OpRecorder(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func._schema.name.split("::")[-1])
        return func(*args, **(kwargs or {}))


GOLDEN_RTOL = 1e-4  # float32 on CUDA (TF32 off) against the official code's float64 outputs, relative to max |output|


def golden_check(ctx: Context, device: str = "cuda") -> dict:
    """The golden fixtures (tests/fixtures/golden/, outputs of the official implementations) on ``device`` in float32
    with TF32 off: each fixture's max |ours - official| relative to its largest output, eval and train mode."""
    from tests.golden import fixture_names, load, max_differences

    rows, failures = {}, []
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for name in fixture_names():
            fx = load(name)
            try:
                diffs = max_differences(fx, device=device, dtype=torch.float32)
                scale = max(1.0, max(float(fx.expected(k.split(".")[0], int(k.split(".")[1])).abs().max())
                                     for k in diffs))
                rel = max(diffs.values()) / scale
                rows[name] = {"module": fx.meta["module"], "form": fx.meta["ours_ctor"].get("form", ""),
                              "max_abs": max(diffs.values()), "rel": rel}
                if not rel <= GOLDEN_RTOL:
                    failures.append(f"golden {name}: float32 on {device} differs from the official code by {rel:.2g} "
                                    f"of the largest output (limit {GOLDEN_RTOL:g})")
            except Exception as e:  # one fixture's failure is recorded, the others still run
                rows[name] = {"module": fx.meta["module"], "error": f"{type(e).__name__}: {e}"[:300]}
                failures.append(f"golden {name}: {type(e).__name__}: {e}"[:300])
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return {"fixtures": rows, "failures": failures}


def dispatched_ops(m: torch.nn.Module, x: torch.Tensor) -> set[str]:
    """aten operation names one train-mode forward+backward of ``m`` dispatches (backward included)."""
    x = x.clone().requires_grad_(True)
    rec = _OpRecorder()
    with rec:
        y = m.train()(x)
        y.float().square().mean().backward()
    return rec.ops


def determinism_audit(ctx: Context, names: list[str] | None = None) -> dict:
    from models.registry import attention_specs

    flagged, rows = {}, []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and on a loaded machine much faster
    try:
        for spec in attention_specs():
            if names is not None and spec.name not in names:
                continue
            torch.manual_seed(0)
            try:
                ops = dispatched_ops(spec.cls(32), torch.randn(2, 32, 12, 20))
            except Exception as e:
                rows.append({"module": spec.name, "error": f"{type(e).__name__}: {e}"})
                continue
            bad = sorted(ops & CUDA_NONDETERMINISTIC_OPS)
            rows.append({"module": spec.name, "raising_ops": bad})
            if bad:
                flagged[spec.name] = bad
    finally:
        torch.set_num_threads(threads)
    return {"audit": rows, "predicted_to_raise": flagged,
            "caveat": "operations dispatched on CPU; CUDA may pick other kernels: step module_matrix is the real test"}


# ------------------------------------------------------------------------------------- train / val / detect / export


def _tag(cfg: str) -> str:
    return Path(cfg).stem


def dataset_step(data_yaml: str = "shapes.yaml") -> Callable[[Context], dict]:
    """Make the built-in dataset (first use) and a short video of its validation images."""

    def run(ctx: Context) -> dict:
        from data.datasets import prepare_data

        data = prepare_data(data_yaml)
        images = sorted(p for p in (Path(data).parent / "images" / "val").glob("*") if p.suffix in {".jpg", ".png"})
        ctx.artefacts["video"] = str(make_video(images[:12], ctx.work / "shapes.mp4"))
        return {"data": data, "video": ctx.artefacts["video"]}

    return run


def make_video(images: list[Path], path: Path, fps: int = 4) -> Path:
    """A short mp4 from still images, for detect.py's video path."""
    import cv2

    if not images:
        raise FileNotFoundError("no validation images to make a video from")
    first = cv2.imread(str(images[0]))
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for im in images:
        frame = cv2.imread(str(im))
        writer.write(cv2.resize(frame, (w, h)))
    writer.release()
    if not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError(f"OpenCV wrote no video to {path}")
    return path


def train_step(cfg: str, data: str = "shapes.yaml", epochs: int = 2, imgsz: int = 320, batch: int = 16,
               workers: int = 4) -> Callable[[Context], dict]:
    def run(ctx: Context) -> dict:
        tag = _tag(cfg)
        project = ctx.work / "runs"
        log = ctx.work / f"train_{tag}.log"
        run_command([sys.executable, "train.py", "--cfg", cfg, "--data", data, "--epochs", str(epochs),
                     "--img", str(imgsz), "--batch-size", str(batch), "--device", ctx.device, "--workers", str(workers),
                     "--project", str(project), "--name", tag, "--exist-ok"], ctx, log)
        text = log.read_text()
        weights = project / tag / "weights" / "best.pt"
        failures = []
        if not weights.is_file():
            failures.append(f"{cfg}: no {weights}")
        else:
            ctx.artefacts[f"weights:{cfg}"] = str(weights)
        amp = [ln.strip() for ln in text.splitlines() if "AMP:" in ln]
        if ctx.device != "cpu" and not any("checks passed on this model" in ln for ln in amp):
            failures.append(f"{cfg}: our AMP check did not pass or did not run: {amp or 'no AMP line in the log'}")
        if "yolo26n" in text or "Downloading" in text:
            failures.append(f"{cfg}: the training log mentions a download (yolo26n / Downloading)")
        rows = _read_results(project / tag / "results.csv")
        if len(rows) != epochs:
            failures.append(f"{cfg}: results.csv has {len(rows)} epochs, expected {epochs}")
        losses = {k: float(v) for k, v in (rows[-1] if rows else {}).items() if "loss" in k}
        if any(not (v == v and abs(v) < float("inf")) for v in losses.values()):
            failures.append(f"{cfg}: non-finite training loss {losses}")
        last = rows[-1] if rows else {}
        # train.py trains with deterministic=True, which ultralytics sets with warn_only=True: collect the warnings
        nondeterministic = sorted({ln.strip()[:300] for ln in text.splitlines() if "deterministic implementation" in ln})
        return {"weights": str(weights), "amp_log": amp, "epochs": len(rows), "final_losses": losses,
                "nondeterministic_warnings": nondeterministic,
                "map50": float(last.get("metrics/mAP50(B)", "nan") or "nan"),
                "map50_95": float(last.get("metrics/mAP50-95(B)", "nan") or "nan"), "failures": failures}

    return run


def _read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(f)]


def val_step(cfg: str, data: str = "shapes.yaml", imgsz: int = 320) -> Callable[[Context], dict]:
    def run(ctx: Context) -> dict:
        tag, out = _tag(cfg), {}
        for half in (False, True) if ctx.device != "cpu" else (False,):
            name = f"{tag}{'-half' if half else ''}"
            log = ctx.work / f"val_{name}.log"
            run_command([sys.executable, "val.py", "--weights", ctx.artefacts[f"weights:{cfg}"], "--data",
                         data, "--img", str(imgsz), "--device", ctx.device, "--project",
                         str(ctx.work / "val"), "--name", name, "--exist-ok"] + (["--half"] if half else []), ctx, log)
            line = next((ln.strip() for ln in log.read_text().splitlines() if ln.strip().startswith("all ")), "")
            out["fp16" if half else "fp32"] = line
        failures = [f"{cfg}: val.py printed no 'all' metrics line ({k})" for k, v in out.items() if not v]
        return {"metrics_lines": out, "failures": failures}

    return run


def detect_step(cfg: str, imgsz: int = 320) -> Callable[[Context], dict]:
    def run(ctx: Context) -> dict:
        tag, found, failures = _tag(cfg), {}, []
        sources = {"images": str(ROOT / "data" / "images"), "video": ctx.artefacts.get("video", "")}
        for kind, source in sources.items():
            if not source:
                failures.append(f"{cfg}: no {kind} source")
                continue
            name = f"{tag}-{kind}"
            run_command([sys.executable, "detect.py", "--weights", ctx.artefacts[f"weights:{cfg}"], "--source",
                         source, "--img", str(imgsz), "--device", ctx.device, "--project", str(ctx.work / "detect"),
                         "--name", name, "--exist-ok"], ctx, ctx.work / f"detect_{name}.log")
            files = sorted(p.name for p in (ctx.work / "detect" / name).glob("*") if p.is_file())
            found[kind] = files
            if not files:
                failures.append(f"{cfg}: detect.py wrote nothing for the {kind}")
        return {"outputs": found, "failures": failures}

    return run


def export_step(cfg: str, imgsz: int = 320) -> Callable[[Context], dict]:
    def run(ctx: Context) -> dict:
        import numpy as np
        import onnxruntime as ort

        from models.weights.checkpoint import load_model

        weights = Path(ctx.artefacts[f"weights:{cfg}"])
        run_command([sys.executable, "export.py", "--weights", str(weights), "--include", "onnx", "--imgsz",
                     str(imgsz), "--dynamic", "--exist-ok"], ctx, ctx.work / f"export_{_tag(cfg)}.log")
        onnx_file = weights.with_suffix(".onnx")
        cuda_ep = "CUDAExecutionProvider" in ort.get_available_providers()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda_ep else ["CPUExecutionProvider"]
        sess = ort.InferenceSession(str(onnx_file), providers=providers)
        model = load_model(weights).fuse(verbose=False)
        x = torch.rand(2, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = model(x)
        ref = (ref[0] if isinstance(ref, (list, tuple)) else ref).numpy()
        outs = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        diff = float(np.abs(outs[0] - ref).max())
        tol = 1e-2 + 1e-3 * float(np.abs(ref).max())  # the CUDA provider may use TF32/other conv algorithms
        failures = []
        if len(outs) != 1 or outs[0].shape != ref.shape:
            failures.append(f"{cfg}: ONNX outputs {[o.shape for o in outs]}, PyTorch {ref.shape}")
        elif not diff <= tol:
            failures.append(f"{cfg}: ONNX differs from PyTorch by {diff:.3g} (limit {tol:.3g})")
        return {"onnx": str(onnx_file), "providers": sess.get_providers(), "onnxruntime_gpu": cuda_ep,
                "output_shape": list(outs[0].shape), "max_abs_diff": diff, "failures": failures}

    return run


# ----------------------------------------------------------------------------------------------- benchmarks


def _timing_args(quick: bool):
    return {"repeats": 3 if quick else 5, "warmup": 2, "min_block_s": 0.02 if quick else 0.1}


def fp16_models(ctx: Context, batches=(1, 32), imgsz: int = 640, device: str = "cuda", quick: bool = False,
                scale: str = "s") -> dict:
    """fp16 inference (fused, ``model.half()``) and AMP train-step latency: ours vs ultralytics' yolov5su."""
    from ultralytics.nn.tasks import DetectionModel

    from models.yolo import build_model
    from tools import measure

    base = f"yolov5{scale}"
    models = {base: build_model(f"{base}.yaml"), f"{base}u (ultralytics)": DetectionModel(f"{base}.yaml", verbose=False),
              f"{base}-cbam": build_model(f"{base}-cbam.yaml")}
    rows = []
    for batch in batches:
        x = torch.rand(batch, 3, imgsz, imgsz, device=device)
        # train step: autocast fp16, a scalar of every output as the loss (the graph, not the loss maths, is timed)
        train = {k: copy.deepcopy(m).to(device).train() for k, m in models.items()}

        def step(m):
            def run():
                m.zero_grad(set_to_none=True)
                with torch.autocast(torch.device(device).type, dtype=torch.float16):
                    out = m(x)
                sum(t.float().mean() for t in torch.utils._pytree.tree_leaves(out)).backward()

            return run

        t_train = measure.time_interleaved({k: step(m) for k, m in train.items()}, device, **_timing_args(quick))
        del train
        infer = {k: copy.deepcopy(m).to(device).eval().fuse(verbose=False).half() for k, m in models.items()}
        xh = x.half()

        def fwd(m):
            def run():
                with torch.inference_mode():
                    m(xh)

            return run

        t_fwd = measure.time_interleaved({k: fwd(m) for k, m in infer.items()}, device, **_timing_args(quick))
        del infer
        for k in models:
            rows.append({"model": k, "batch": batch, "imgsz": imgsz,
                         "fp16_fwd_ms": t_fwd[k].median, "fp16_fwd_ratio": measure.median_ratio(t_fwd[k], t_fwd[base]),
                         "amp_train_ms": t_train[k].median,
                         "amp_train_ratio": measure.median_ratio(t_train[k], t_train[base])})
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return {"rows": rows}


def fp16_modules(ctx: Context, batches=(1, 32), c: int = 256, hw: int = 40, device: str = "cuda",
                 quick: bool = False) -> dict:
    """Our modules against timm/torchvision's in fp16 autocast: forward and forward+backward, same rounds."""
    from benchmarks.profile_modules import reference_modules
    from models.registry import attention_specs
    from tools import measure

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
                    with torch.inference_mode(), torch.autocast(torch.device(device).type, dtype=torch.float16):
                        m(x)

                return run

            def train(m):
                xg = x.clone().requires_grad_(True)

                def run():
                    m.zero_grad(set_to_none=True)
                    with torch.autocast(torch.device(device).type, dtype=torch.float16):
                        y = m(xg)
                    y.float().backward(grad)

                return run

            for m in mods.values():
                m.eval()
            tf = measure.time_interleaved({k: fwd(m) for k, m in mods.items()}, device, **_timing_args(quick))
            for k, m in mods.items():
                m.train()
                if k != "ours" and refs[k][0] == "SelectiveKernel":
                    m.attn.bn.eval()  # batch-1 BN on a vector (profile_modules does the same)
            tb = measure.time_interleaved({k: train(m) for k, m in mods.items()}, device, **_timing_args(quick))
            for k in refs:
                rows.append({"module": spec.name, "library": f"{k} {refs[k][0]}", "batch": batch, "c": c, "hw": hw,
                             "ours_fwd_ms": tf["ours"].median, "theirs_fwd_ms": tf[k].median,
                             "ratio_fwd": measure.median_ratio(tf["ours"], tf[k]),
                             "ours_fwdbwd_ms": tb["ours"].median, "theirs_fwdbwd_ms": tb[k].median,
                             "ratio_fwdbwd": measure.median_ratio(tb["ours"], tb[k])})
    return {"rows": rows}


def profile_step(batch: int, device: str = "cuda", modules: list[str] | None = None) -> Callable[[Context], dict]:
    def run(ctx: Context) -> dict:
        out = ctx.work / f"profile_b{batch}"
        run_command([sys.executable, "benchmarks/profile_modules.py", "--quick", "--devices", device, "--batch",
                     str(batch), "--out", str(out)] + (["--modules", *modules] if modules else []), ctx,
                    ctx.work / f"profile_b{batch}.log")
        rows = _read_results(out / "modules.csv")
        bad = [f"profile b{batch}: {r['module']} ({r['impl']}): {r['status']}" for r in rows if r.get("status") != "ok"]
        return {"rows": rows, "failures": bad}

    return run


def overhead_step(device: str = "cuda", batches=(1, 32), imgsz: int = 640,
                  modules: list[str] | None = None) -> Callable[[Context], dict]:
    def run(ctx: Context) -> dict:
        out = ctx.work / "overhead"
        cmd = [sys.executable, "benchmarks/model_overhead.py", "--devices", device, "--batches", *map(str, batches),
               "--imgsz", str(imgsz), "--repeats", "3", "--warmup", "1", "--min-block", "0.05", "--budget", "20",
               "--out", str(out)] + (["--modules", *modules] if modules else [])
        run_command(cmd, ctx, ctx.work / "overhead.log")
        return {"rows": _read_results(out / "model_overhead.csv"), "modules": modules or "all"}

    return run


# --------------------------------------------------------------------------------------------------- report


def build_steps(patterns: list[str] | None = None, configs=CONFIGS, data: str = "shapes.yaml", imgsz: int = 320,
                epochs: int = 2, batch: int = 16, overhead_modules: list[str] | None = None) -> list[Step]:
    """The steps in run order (see the module docstring); ``patterns`` selects some by name (globs)."""
    steps = [Step("environment", environment, 5, needs_cuda=False),
             Step("module_matrix", module_matrix, 60),
             Step("golden", golden_check, 15),
             Step("dataset", dataset_step(data), 30)]
    for cfg in configs:
        t = _tag(cfg)
        steps += [Step(f"train:{t}", train_step(cfg, data, epochs, imgsz, batch), 60, needs=("dataset",)),
                  Step(f"val:{t}", val_step(cfg, data, imgsz), 20, needs=(f"train:{t}",)),
                  Step(f"detect:{t}", detect_step(cfg, imgsz), 20, needs=(f"train:{t}", "dataset")),
                  Step(f"export:{t}", export_step(cfg, imgsz), 20, needs=(f"train:{t}",))]
    steps += [Step("fp16_models", fp16_models, 30),
              Step("fp16_modules", fp16_modules, 20),
              Step("profile_b1", profile_step(1), 45),
              Step("profile_b32", profile_step(32), 45),
              Step("overhead", overhead_step(modules=overhead_modules), 120),
              Step("determinism_audit", determinism_audit, 15, needs_cuda=False)]
    if patterns:
        chosen = [s for s in steps if any(fnmatch.fnmatch(s.name, pat) for pat in patterns)]
        if not chosen:
            raise SystemExit(f"error: --steps {' '.join(patterns)}: no step matches; steps are "
                             + ", ".join(s.name for s in steps))
        steps = chosen
    return steps


PAGE_SECTION = "## GPU check"


def summary_section(report: dict | None, rel: str = "benchmarks") -> str:
    """The "GPU check" section of the benchmarks page (docs/benchmarks.md): what the check does, the last result."""
    if report and report.get("steps"):
        steps = report["steps"]
        env = next((s.get("environment", {}) for s in steps if s["step"] == "environment"), {})
        counts = {k: sum(s["status"] == k for s in steps) for k in ("ok", "failed", "error", "skipped")}
        n_fail = sum(len(s.get("failures", [])) for s in steps)
        last = (f"Last run: **{env.get('gpu', '?')}**, torch {env.get('torch', '?')} (CUDA {env.get('cuda_build') or '–'}), "
                f"{env.get('date', '?')}: {counts['ok']} steps ok, {counts['failed']} failed, {counts['error']} errors, "
                f"{counts['skipped']} skipped; {n_fail} failure(s) named in [`{rel}/gpu_check.md`]({rel}/gpu_check.md) "
                f"(data: [`{rel}/gpu_check.json`]({rel}/gpu_check.json)).")
    else:
        last = "Not run on a GPU yet: the report appears here after the first run."
    return f"""{PAGE_SECTION}

`python benchmarks/gpu_check.py` is the one command that checks the project on a CUDA GPU (training, validation,
detection and export unchanged on GPU). Steps, most important first: every registered module in fp32, fp16 and bf16
autocast (forward+backward finite and close to fp32), under `model.half()`, and twice under
`torch.use_deterministic_algorithms(True)` (bit-equal); `train.py` 2 epochs with AMP, `val.py` (fp32 and `--half`),
`detect.py` on images and a video and `export.py` to ONNX (checked in onnxruntime) for yolov5s-cbam and
yolov5s-cbam-anchor on the built-in dataset; fp16 latency of our models and modules against ultralytics' yolov5su and
timm/torchvision; the CUDA columns of the profiler and the overhead table at batch 1 and 32; a CPU-side audit of
operations that raise in CUDA's deterministic mode. Each step is isolated (a failure is recorded and the next step
runs), the budget (`--budget-s`, 480 s by default) is checked between steps and skips the rest with a note, the
report is rewritten after every step, nothing is downloaded (the trainer's own AMP check compares fp32 and fp16 on
the model being trained instead of ultralytics' yolo26n.pt check). Without CUDA it reports "no CUDA device" and
writes the report. `--steps 'train:*' --append` re-runs some steps and keeps the rest.

On a bare GPU machine the packages the image lacks go first (`pip install ultralytics==8.4.190 ultralytics-thop
polars`, offline: as wheels), then `python benchmarks/gpu_check.py --out <folder>`; a report copied into
`docs/benchmarks/` is rendered here by `python benchmarks/gpu_check.py --render-only`. Training speed against
ultralytics' own trainer: `python benchmarks/train_speed.py` (writes `{rel}/train_speed.md`).

{last}
"""


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
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    page.write_text(text)
    return page


def write_report(out: Path, report: dict) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    jp, mp = out / "gpu_check.json", out / "gpu_check.md"
    tmp = jp.with_name(jp.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(report), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, jp)
    try:
        text = render_markdown(report)
    except Exception as e:  # the JSON above has everything; a rendering bug must not lose the run
        text = f"# GPU check\n\nThe markdown could not be rendered ({type(e).__name__}: {e}); see {jp.name}.\n"
    mp.write_text(text)
    section = summary_section(report, out.name)
    (out / "gpu_check.summary.md").write_text(section)
    update_page(out, section)
    return jp, mp


def _jsonable(v):
    """Plain JSON: non-finite floats as the strings "inf" / "-inf" / "nan", other objects as text."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _fmt(v, digits: int = 2) -> str:
    from tools.measure import fnum

    if isinstance(v, float) and v == float("inf"):
        return "inf"
    return fnum(v, digits)


def _sci(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "–"
    return f"{v:.1e}" if math.isfinite(v) else str(v)


def render_markdown(report: dict) -> str:
    from tools.measure import markdown_table

    steps = report.get("steps", [])
    env = next((s.get("environment") for s in steps if s["step"] == "environment" and s.get("environment")), {})
    by = {s["step"]: s for s in steps}
    lines = ["# GPU check\n", "Generated by `python benchmarks/gpu_check.py`; do not edit by hand.\n"]
    if env:
        lines.append(f"- GPU: **{env.get('gpu', '?')}**" + (f", {env['gpu_memory_gib']} GiB, compute capability "
                     f"{env['compute_capability']}, driver {env.get('driver', '?')}" if "gpu_memory_gib" in env else ""))
        lines.append(f"- torch {env.get('torch')} (CUDA {env.get('cuda_build') or '–'}, cuDNN {env.get('cudnn', '–')}), "
                     f"torchvision {env.get('torchvision') or '–'}, ultralytics {env.get('ultralytics')}, onnxruntime "
                     f"{env.get('onnxruntime') or '–'} ({', '.join(env.get('onnxruntime_providers', [])) or '–'}), "
                     f"timm {env.get('timm') or '–'}, Python {env.get('python')}")
        lines.append(f"- CPU: {env.get('cpu')} ({env.get('cpu_count')} cores); {env.get('date')}")
    lines.append(f"- Command: `{report.get('command', '')}`; budget {report.get('budget_s')} s, "
                 f"total {report.get('seconds', 0):.0f} s\n")
    failures = [f for s in steps for f in s.get("failures", [])]
    lines.append("## Steps\n")
    lines.append(markdown_table(["Step", "Status", "Seconds", "Note"],
                                [[s["step"], s["status"], f"{s.get('seconds', 0):.0f}", s.get("note", "")] for s in steps],
                                "llrl"))
    lines.append(f"\n## Failures ({len(failures)})\n")
    lines.append("\n".join(f"- {f}".replace("\n", " / ") for f in failures) + "\n" if failures else "None.\n")
    mm = by.get("module_matrix", {})
    if mm.get("modules"):
        tol = mm.get("tolerance", TOLERANCE)
        lines.append("\n## Module matrix (CUDA)\n")
        lines.append(f"C=64, batch 2, maps 20x20 and 13x31, train mode. Autocast columns: relative L2 difference from "
                     f"fp32 of the output / of the input gradient (limits fp16 {tol['fp16'][0]:g} / {tol['fp16'][1]:g}, "
                     f"bf16 {tol['bf16'][0]:g} / {tol['bf16'][1]:g}); an autocast forward on activations of ~10 must "
                     f"stay finite. half: `model.half()` forward. deterministic: two forward+backward runs under "
                     f"`torch.use_deterministic_algorithms(True)`.\n")
        t = [[r["module"], r.get("hw", ""), r.get("fp32", "–"), _sci(r.get("fp16_out")), _sci(r.get("fp16_grad")),
              _sci(r.get("bf16_out")), _sci(r.get("bf16_grad")), r.get("half", "–"), r.get("deterministic", "–"),
              "ok" if not r.get("failures") else "FAIL"] for r in mm["modules"]]
        lines.append(markdown_table(["Module", "Map", "fp32", "fp16 out", "fp16 grad", "bf16 out", "bf16 grad", "half",
                                     "deterministic", ""], t, "llllllllll"))
    gd = by.get("golden", {})
    if gd.get("fixtures"):
        lines.append("\n## Golden fixtures (CUDA, float32, TF32 off)\n")
        lines.append(f"Each fixture of tests/fixtures/golden/ (the official implementations' float64 outputs): max |ours - "
                     f"official| over eval and train mode, and relative to the largest output (limit {GOLDEN_RTOL:g}).\n")
        t = [[n, r["module"], r.get("form", ""), _sci(r.get("max_abs")), _sci(r.get("rel")),
              r.get("error", "ok" if (r.get("rel") or 0) <= GOLDEN_RTOL else "FAIL")] for n, r in gd["fixtures"].items()]
        lines.append(markdown_table(["Fixture", "Module", "Form", "max abs", "relative", ""], t, "llllll"))
    run_rows = []
    for cfg in CONFIGS:
        tag = _tag(cfg)
        tr, va, de, ex = (by.get(f"{k}:{tag}", {}) for k in ("train", "val", "detect", "export"))
        if tr.get("status") in (None, "skipped"):
            continue
        run_rows.append([tag, tr.get("status"), f"{tr.get('epochs', '–')}", _fmt(tr.get("map50"), 3),
                         "; ".join(tr.get("amp_log", []))[:160], va.get("status", "–"), de.get("status", "–"),
                         f"{ex.get('status', '–')} ({', '.join(ex.get('providers', [])) or '–'}, max diff "
                         f"{_sci(ex.get('max_abs_diff'))})"])
    if run_rows:
        lines.append("\n## Train, val, detect, export (2 epochs, AMP, 320 px, shapes dataset)\n")
        lines.append(markdown_table(["Config", "train", "epochs", "mAP50", "AMP check", "val", "detect", "export (ONNX)"],
                                    run_rows, "llrrllll"))
        warned = sorted({w for cfg in CONFIGS for w in by.get(f"train:{_tag(cfg)}", {}).get("nondeterministic_warnings", [])})
        lines.append("\nDeterministic-mode warnings while training (ultralytics sets `warn_only=True`): "
                     + ("; ".join(f"`{w}`" for w in warned) if warned else "none") + ".\n")
    fm = by.get("fp16_models", {})
    if fm.get("rows"):
        lines.append("\n## fp16 latency: models (ratios to our yolov5s, same rounds)\n")
        lines.append(markdown_table(["Model", "Batch", "fp16 fwd ms (fused)", "ratio", "AMP train step ms", "ratio"],
                                    [[r["model"], r["batch"], _fmt(r["fp16_fwd_ms"]), _fmt(r["fp16_fwd_ratio"]),
                                      _fmt(r["amp_train_ms"]), _fmt(r["amp_train_ratio"])] for r in fm["rows"]]))
    fmod = by.get("fp16_modules", {})
    if fmod.get("rows"):
        lines.append("\n## fp16 autocast latency: ours vs timm / torchvision (ours/theirs, < 1 = ours faster)\n")
        lines.append(markdown_table(["Module", "Library", "Batch", "fwd ours ms", "fwd ratio", "fwd+bwd ours ms",
                                     "fwd+bwd ratio"],
                                    [[r["module"], r["library"], r["batch"], _fmt(r["ours_fwd_ms"], 3),
                                      _fmt(r["ratio_fwd"]), _fmt(r["ours_fwdbwd_ms"], 3), _fmt(r["ratio_fwdbwd"])]
                                     for r in fmod["rows"]], "llrrrrr"))
    prof = [r for k in ("profile_b1", "profile_b32") for r in by.get(k, {}).get("rows", [])]
    if prof:
        lines.append("\n## Module profiler, CUDA columns (`profile_modules.py --quick`: C=64, P5 20x20, fp32)\n")
        ours = {(r["module"], r["batch"]): r for r in prof if r["impl"] == "ours"}
        refs = {}
        for r in prof:
            if r["impl"] != "ours" and r.get("status") == "ok":
                refs.setdefault((r["module"], r["batch"]), []).append(f"{r['impl']} {_fmt(r['ratio_fwd'])} / "
                                                                       f"{_fmt(r['ratio_fwdbwd'])}")
        lines.append(markdown_table(["Module", "Batch", "fwd ms", "fwd+bwd ms", "peak MiB", "ours/theirs fwd / fwd+bwd",
                                     "status"],
                                    [[m, b, _fmt(r.get("fwd_ms"), 3), _fmt(r.get("fwdbwd_ms"), 3), _fmt(r.get("peak_mb"), 1),
                                      "; ".join(refs.get((m, b), [])) or "–", r.get("status", "")]
                                     for (m, b), r in sorted(ours.items(), key=lambda kv: (kv[0][0].lower(), int(kv[0][1])))],
                                    "lrrrrll"))
    ov = by.get("overhead", {}).get("rows", [])
    if ov:
        lines.append("\n## Model overhead, CUDA (`model_overhead.py`: yolov5s + module / plain yolov5s, fp32, 640 px)\n")
        cols = sorted({(int(r["batch"]), r["fused"]) for r in ov})
        cell = {(r["model"], int(r["batch"]), r["fused"]): r for r in ov}
        models = list(dict.fromkeys(r["model"] for r in ov))
        header = ["Model"] + [f"b{b}{' fused' if f in ('True', True) else ''}" for b, f in cols]
        t = []
        for m in models:
            line = [m]
            for b, f in cols:
                r = cell.get((m, b, f))
                line.append("–" if r is None else (f"{_fmt(r['ms'])} ms" if m == "yolov5s" else _fmt(r["ratio"], 3)))
            t.append(line)
        lines.append(markdown_table(header, t))
    audit = by.get("determinism_audit", {})
    if audit.get("audit"):
        pred = audit.get("predicted_to_raise", {})
        lines.append("\n## Determinism audit (CPU dispatch)\n")
        lines.append("Modules whose forward+backward dispatch an operation that raises under CUDA's deterministic "
                     "mode: " + ("; ".join(f"{k} ({', '.join(v)})" for k, v in pred.items()) if pred else "none")
                     + f" (of {len(audit['audit'])} modules).\n")
    return "\n".join(lines) + "\n"


def parse_opt(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-s", type=float, default=480, help="seconds for all steps (checked between steps)")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for gpu_check.json/.md (default docs/benchmarks; without CUDA: the --work folder, so a "
                         "CPU run never replaces a GPU report)")
    ap.add_argument("--work", type=Path, default=None, help="folder for runs, logs, exports (default: a temporary one)")
    ap.add_argument("--device", default="0", help="CUDA device for train/val/detect")
    ap.add_argument("--steps", nargs="+", help="run only these steps (glob patterns, e.g. 'train:*' module_matrix)")
    ap.add_argument("--append", action="store_true", help="keep the other steps' results of an existing report")
    ap.add_argument("--overhead-modules", nargs="+", help="model_overhead.py --modules (default: every module)")
    ap.add_argument("--render-only", action="store_true",
                    help="run nothing: re-render <out>/gpu_check.md and the benchmarks page from <out>/gpu_check.json "
                         "(after copying a GPU machine's report into docs/benchmarks/)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_opt(argv)
    if args.render_only:
        out = args.out or DEFAULT_OUT
        jp, mp = write_report(out, json.loads((out / "gpu_check.json").read_text()))
        print(f"[gpu_check] rendered {mp} from {jp}")
        return 0
    steps = build_steps(args.steps, overhead_modules=args.overhead_modules)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(budget_s=args.budget_s, cuda=torch.cuda.is_available(), work=work, device=args.device)
    out = args.out or (DEFAULT_OUT if ctx.cuda else work)
    previous = []
    if args.append and (out / "gpu_check.json").is_file():
        previous = json.loads((out / "gpu_check.json").read_text()).get("steps", [])
    names = [s.name for s in steps]
    report = {"command": "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "budget_s": args.budget_s, "cuda": ctx.cuda, "work": str(work), "seconds": 0.0,
              "steps": [s for s in previous if s["step"] not in names]}
    t0 = time.monotonic()
    if not ctx.cuda:
        print("[gpu_check] no CUDA device: the GPU steps are skipped; the report is still written")

    def save(rec):
        report["steps"].append(rec)
        report["seconds"] = round(time.monotonic() - t0, 1)
        write_report(out, report)

    run_steps(steps, ctx, save)
    jp, mp = write_report(out, report)
    failures = [f for s in report["steps"] for f in s.get("failures", [])]
    print(f"[gpu_check] wrote {jp} and {mp}: {len(failures)} failure(s) in {report['seconds']:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
