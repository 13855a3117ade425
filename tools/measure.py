"""Measuring helpers shared by the profilers and the ablation runner.

Latency is only ever reported as a median over interleaved repeats: the callables being compared run one
after another inside every repeat (in a rotating order), so slow drifts of a shared machine hit all of them
alike, and a ratio is the median of the per-repeat ratios. FLOPs come from ``torch.utils.flop_counter``
(convolutions and matrix products, 2 FLOPs per multiply-add) plus a count of the other operations
(one per element, see :data:`ELEMENTWISE_NOTE`). Peak memory is the tensor memory allocated above what
existed before the step (parameters and inputs excluded).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch

ELEMENTWISE_NOTE = (
    "other ops = pointwise ops and normalisations counted as 1 op per output element, reductions and softmax "
    "as 1 op per input element, pooling as 1 op per output element per window tap"
)


# ----------------------------------------------------------------------------------------------- timing


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Per-repeat times (ms per call) of one callable; ``median`` is what gets reported."""

    per_repeat: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.per_repeat) if self.per_repeat else float("nan")

    @property
    def spread(self) -> float:
        """Relative interquartile range of the repeats (0.05 = the middle half lies within 5%)."""
        if len(self.per_repeat) < 4:
            return float("nan")
        q = statistics.quantiles(self.per_repeat, n=4)
        return (q[2] - q[0]) / q[1] if q[1] else float("nan")


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    device: torch.device | str = "cpu",
    repeats: int = 7,
    warmup: int = 2,
    min_block_s: float = 0.05,
    budget_s: float | None = None,
) -> dict[str, Timing]:
    """Time several callables against each other on one device.

    Each callable is warmed up, then timed in ``repeats`` rounds; in every round each callable runs a block of
    calls lasting at least ``min_block_s`` (at least one call), the order rotating from round to round. With
    ``budget_s``, slow callables get fewer rounds (never fewer than 3) so that the rounds fit in about that time.
    """
    names = list(fns)
    per_call = {}
    for name in names:
        for k in range(max(warmup, 1)):
            sync(device)
            t0 = time.perf_counter()
            fns[name]()
            sync(device)
            if k == 0 and time.perf_counter() - t0 > 1.0:  # slow enough that one warm-up call is plenty
                break
        sync(device)
        t0 = time.perf_counter()
        fns[name]()
        sync(device)
        per_call[name] = time.perf_counter() - t0
    iters = {n: max(1, math.ceil(min_block_s / max(per_call[n], 1e-6))) for n in names}
    if budget_s:
        round_s = sum(iters[n] * per_call[n] for n in names)
        repeats = min(repeats, max(3, int(budget_s / max(round_s, 1e-9))))
    out = {n: Timing() for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            fn, k = fns[name], iters[name]
            sync(device)
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            sync(device)
            out[name].per_repeat.append((time.perf_counter() - t0) * 1e3 / k)
    return out


def median_ratio(a: Timing, b: Timing) -> float:
    """Median over repeats of a/b (the repeats were interleaved, so round r of both saw the same machine state)."""
    ratios = [x / y for x, y in zip(a.per_repeat, b.per_repeat) if y > 0]
    return statistics.median(ratios) if ratios else float("nan")


# ------------------------------------------------------------------------------------------------ FLOPs


def _numel(shape) -> int:
    if isinstance(shape, (tuple, list)) and shape and isinstance(shape[0], (tuple, list, torch.Size)):
        shape = shape[0]  # ops with several outputs (max_pool2d_with_indices, var_mean): the first one
    return math.prod(shape) if shape is not None else 0


def _pointwise(*args, out_shape=None, **kwargs) -> int:
    return _numel(out_shape)


def _reduction(in_shape, *args, out_shape=None, **kwargs) -> int:
    return _numel(in_shape)


def _pool(in_shape, kernel_size, *args, out_shape=None, **kwargs) -> int:
    taps = math.prod(kernel_size) if isinstance(kernel_size, (list, tuple)) else int(kernel_size) ** 2
    return _numel(out_shape) * taps


_POINTWISE = (
    "add sub mul div sigmoid relu hardtanh hardsigmoid hardswish silu gelu leaky_relu elu exp log sqrt rsqrt pow "
    "tanh neg abs clamp clamp_min clamp_max maximum minimum where reciprocal sign erf softplus addcmul addcdiv "
    "native_batch_norm _native_batch_norm_legit _native_batch_norm_legit_no_training native_group_norm "
    "native_layer_norm"
).split()
_REDUCTION = "mean sum amax amin max min var std var_mean std_mean linalg_vector_norm norm _softmax _log_softmax".split()
_POOL = "avg_pool2d max_pool2d_with_indices avg_pool1d".split()


def _elementwise_mapping() -> dict:
    aten = torch.ops.aten
    mapping = {}
    for names, fn in ((_POINTWISE, _pointwise), (_REDUCTION, _reduction), (_POOL, _pool)):
        for n in names:
            if hasattr(aten, n):
                mapping[getattr(aten, n)] = fn
    return mapping


def count_flops(fn: Callable[[], object]) -> tuple[int, int]:
    """(conv + matmul FLOPs, other ops) of one call of ``fn`` (forward only: call it under no_grad)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as dense:
        fn()
    with FlopCounterMode(display=False, custom_mapping=_elementwise_mapping()) as every:
        fn()
    total_dense = dense.get_total_flops()
    return total_dense, every.get_total_flops() - total_dense


# ----------------------------------------------------------------------------------------------- memory


class _TensorMemory(torch.utils._python_dispatch.TorchDispatchMode):
    """Live bytes of the tensor storages created inside the mode (a storage counts until it is freed)."""

    def __init__(self):
        super().__init__()
        from torch.utils.weak import WeakIdKeyDictionary

        self.current = 0
        self.peak = 0
        self._seen = WeakIdKeyDictionary()

    def _freed(self, nbytes: int, _ref) -> None:
        self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                if st in self._seen:
                    continue
                n = st.nbytes()
                self._seen[st] = weakref.ref(st, lambda ref, n=n: self._freed(n, ref))
                self.current += n
                self.peak = max(self.peak, self.current)
        return out


def peak_memory_mb(fn: Callable[[], object], device: torch.device | str) -> float:
    """Peak tensor memory (MiB) that one call of ``fn`` allocates above what was allocated before it.

    CUDA: the caching allocator's peak (so cuDNN/cuBLAS workspaces count). CPU: every storage created by an
    ATen op, tracked until freed (CPU has no allocator statistics).
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    tracker = _TensorMemory()
    with tracker:
        fn()
    return tracker.peak / 2**20


# ---------------------------------------------------------------------------------------- environment


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({os.cpu_count()} cores)"


def environment(device: torch.device | str) -> dict:
    """What a reader needs to judge a figure: machine, device, threads, library versions, date."""
    import torchvision

    return {
        "device": torch.device(device).type,
        "device_name": device_name(device),
        "threads": torch.get_num_threads() if torch.device(device).type == "cpu" else "",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda or "" if torch.device(device).type == "cuda" else "",
        "python": platform.python_version(),
        "date": _dt.date.today().isoformat(),
    }


def resolve_devices(requested: Iterable[str]) -> list[str]:
    """'cpu', 'cuda' ('cuda' is dropped with a note when no GPU is present)."""
    out = []
    for d in requested:
        if d.startswith("cuda") and not torch.cuda.is_available():
            print(f"note: {d} requested but no CUDA device is present; skipped")
            continue
        out.append(d)
    return out


# ---------------------------------------------------------------------------------------- CSV, markdown


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt_csv(r.get(k, "")) for k in columns})
    os.replace(tmp, path)


def _fmt_csv(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def merge_rows(old: list[dict], new: list[dict], key: tuple[str, ...]) -> list[dict]:
    """Rows of ``new`` replace rows of ``old`` with the same key; the others are kept (in order)."""
    fresh = {tuple(str(r[k]) for k in key) for r in new}
    return [r for r in old if tuple(str(r[k]) for k in key) not in fresh] + new


def markdown_table(header: list[str], rows: list[list], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _number(v) -> float | None:
    """``v`` as a float, or None for blanks, text and NaN (shown as an en dash in tables)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def fnum(v, digits: int = 2) -> str:
    """Format a number for a table with ``digits`` decimals; blanks and NaN become an en dash."""
    x = _number(v)
    return "–" if x is None else f"{x:,.{digits}f}"


def fsig(v) -> str:
    """About three significant figures, without exponents: 1,234 / 56.7 / 8.90 / 0.0123; blanks become an en dash."""
    x = _number(v)
    if x is None:
        return "–"
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1 or a == 0:
        return f"{x:.2f}"
    return f"{x:.3g}"


def load_meta(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def save_meta(path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------------------ docs index

INDEX_INTRO = """# Benchmarks

The sections "Module profiler" and "Model overhead" are generated by the scripts in `benchmarks/`, "GPU check" by
`benchmarks/gpu_check.py`: do not edit them by hand (a script rewrites its own section and keeps the others). Each
report lists the machine, library versions, thread count and date of its measurements. Latency figures are medians of interleaved repeats after warm-up, and
every comparison (ours vs timm/torchvision, a model vs plain yolov5s) is a ratio measured in the same process,
round by round, never against a number from another run.
"""


def record_run(meta: dict, device: str, env: dict, seconds: float, script: str, argv, append: bool,
               what: dict | None = None) -> None:
    """Note a measurement run in ``meta[device]``. A full run replaces the record; an ``--append`` run that
    re-measures part of an existing table keeps it and adds an entry to its ``updates``."""
    command = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    seconds = round(seconds, 1)
    if append and device in meta:
        update = {"command": command, "date": env.get("date", ""), "seconds": seconds, **(what or {})}
        meta[device] = {**meta[device], "updates": [*meta[device].get("updates", []), update]}
    else:
        meta[device] = {**env, "seconds": seconds, "shards": 1, "command": command}


def update_lines(m: dict) -> list[str]:
    """Markdown lines naming the partial re-measurements recorded in one device's meta."""
    out = []
    for u in m.get("updates", []):
        scope = ", ".join(f"{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                          for k, v in u.items() if k not in ("command", "date", "seconds"))
        out.append(f"  Re-measured {u.get('date', '?')}{' (' + scope + ')' if scope else ''}: `{u.get('command', '')}`.")
    return out


def finish(csv_path: Path, rows: list[dict], columns: list[str], meta_path: Path, meta: dict, render, out: Path,
           stem: str) -> int:
    """Write a report's CSV and meta, render its markdown with ``render(rows, meta, out)`` and update the index."""
    if not rows:
        raise SystemExit(f"error: nothing to render: {csv_path} has no rows")
    write_csv(csv_path, rows, columns)
    save_meta(meta_path, meta)
    render(rows, meta, out)
    index = write_index(out)
    print(f"wrote {csv_path}, {out / (stem + '.md')}, {out / (stem + '.summary.md')}, {index}")
    return 0


INDEX_SECTIONS = (("modules", "Module profiler"), ("model_overhead", "Model overhead"))


def write_index(out_dir: Path) -> Path:
    """``<out_dir>.md`` (docs/benchmarks.md for docs/benchmarks/): includes each report's summary, links the rest.

    Sections of the existing page that this index does not write (e.g. "## GPU check", kept by benchmarks/gpu_check.py)
    are carried over unchanged, after the generated ones.
    """
    out_dir = Path(out_dir)
    index = out_dir.with_suffix(".md")
    generated = {title for _, title in INDEX_SECTIONS}
    kept = []
    if index.is_file():
        for block in index.read_text().split("\n## ")[1:]:
            if block.split("\n", 1)[0].strip() not in generated:
                kept.append("\n## " + block.rstrip("\n") + "\n")
    parts = [INDEX_INTRO]
    for stem, title in INDEX_SECTIONS:
        summary = out_dir / f"{stem}.summary.md"
        if not summary.exists():
            continue
        rel = out_dir.name
        parts.append(f"\n## {title}\n\nFull tables: [`{rel}/{stem}.md`]({rel}/{stem}.md), data: "
                     f"[`{rel}/{stem}.csv`]({rel}/{stem}.csv).\n\n" + summary.read_text())
    index.write_text("".join(parts + kept))
    return index
