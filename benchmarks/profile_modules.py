"""Profile every registered attention module: params, FLOPs, latency and peak memory.

    python benchmarks/profile_modules.py                      # full grid, CPU (1 thread) and CUDA when present
    python benchmarks/profile_modules.py --quick --modules SE ECA --out /tmp/bench
    python benchmarks/profile_modules.py --devices cuda --append   # add/replace the CUDA rows only

Grid: C in {128, 256, 512} x the P3/P4/P5 map sizes of a 640 input (80x80, 40x40, 20x20), batch 1.
For each cell: parameters; FLOPs of one forward (convolutions and matrix products, 2 per multiply-add) and the
count of other ops (pointwise, reductions, normalisations, pooling); forward latency (eval mode, inference mode);
forward+backward latency (train mode, gradient into the input as inside a network); peak memory of one
forward+backward above the parameters and the input. Latencies are medians of interleaved repeats after warm-up.

Modules that timm or torchvision also implement (SE, EffectiveSE, ECA, CBAM, GCBlock, GatherExcite, SK) are timed
against those implementations, configured to the same widths, in the same rounds; the report gives ours/theirs.

Writes ``<out>/modules.csv`` (every cell), ``<out>/modules.md`` (full tables), ``<out>/modules.summary.md`` and
``<out>.md`` (the benchmarks page). ``tools/gen_docs.py`` takes its latency column from the CSV.
"""

from __future__ import annotations

import argparse
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
LEVELS = {"P3": 8, "P4": 16, "P5": 32}
SUMMARY_CELL = (256, "P4")  # the cell shown in docs/modules.md and in the summary table
SLOWER_TOLERANCE = 1.05  # ours/theirs above this is reported as slower (below it is within noise)
COLUMNS = [
    "module", "impl", "ref_class", "category", "c", "level", "h", "w", "batch", "device", "device_name", "threads",
    "torch", "params", "mflops", "mops_other", "fwd_ms", "fwd_spread", "fwdbwd_ms", "fwdbwd_spread", "peak_mb",
    "ratio_fwd", "ratio_fwdbwd", "status", "date",
]
KEY = ("module", "impl", "c", "level", "batch", "device")

# How a comparison is set up, and why a module is (or was) slower than a library's, from measurements.
REFERENCE_NOTES = {
    "EffectiveSE": (
        "was 1.13x timm (fwd, median) until its hard-sigmoid gate was written as relu6(x + 3) / 6, three elementwise "
        "kernels on the (C, 1, 1) vector, against timm's single F.hardsigmoid; it now calls F.hardsigmoid too "
        "(F.hardsigmoid in EffectiveSE.gate, the same function)."
    ),
    "SK": (
        "not the same layer: timm's SelectiveKernel applies BatchNorm+ReLU to the pooled vector z and uses in-place "
        "activations; ours drops that BN (batch-1 safe) and sums branches without stacking. Compared at the same "
        "groups and widths. At batch 1 in train mode timm's BN on z raises, so its fwd+bwd is timed with that "
        "BN in eval mode."
    ),
    "GatherExcite": (
        "timm 1.0.31's GatherExcite(use_mlp=True) fails to build (it passes its device/dtype dict with * instead of "
        "**); the comparison builds it with use_mlp=False and attaches the ConvMlp it would have built."
    ),
    "GCBlock": "timm's GlobalContext with fuse_add=True, fuse_scale=False (the paper's additive block) is compared.",
}


# ------------------------------------------------------------------------------------------- references

# Library modules that cannot run at batch 1 in train mode as they are: what makes them run (and is stated).
TRAIN_FIXES = {"SelectiveKernel": lambda m: m.attn.bn.eval()}


def reference_modules(name: str, ours: torch.nn.Module, c: int) -> dict[str, tuple[str, torch.nn.Module]]:
    """{library: (class name, module)} for the libraries that implement ``name``, set to our module's widths."""
    refs: dict[str, tuple[str, torch.nn.Module]] = {}
    try:
        import timm.layers as tl
        from timm.layers import cbam as tcbam
    except ImportError:
        tl = None
    if name == "SE":
        import torchvision.ops as tvo

        refs["torchvision"] = ("SqueezeExcitation", tvo.SqueezeExcitation(c, ours.fc1.out_channels))
    if tl is None:
        return refs
    if name == "SE":
        refs["timm"] = ("SEModule", tl.SEModule(c, rd_channels=ours.fc1.out_channels))
    elif name == "EffectiveSE":
        refs["timm"] = ("EffectiveSEModule", tl.EffectiveSEModule(c))
    elif name == "ECA":
        refs["timm"] = ("EcaModule", tl.EcaModule(None, kernel_size=ours.conv.kernel_size[0]))
    elif name == "CBAM":
        hidden = ours.channel.mlp[0].out_channels
        refs["timm"] = ("CbamModule", tcbam.CbamModule(c, rd_channels=hidden, mlp_bias=True, spatial_kernel_size=7))
    elif name == "GCBlock":
        hidden = ours.add_transform.conv1.out_channels
        refs["timm"] = ("GlobalContext", tl.GlobalContext(c, fuse_add=True, fuse_scale=False, init_last_zero=True,
                                                          rd_channels=hidden))
    elif name == "GatherExcite":
        try:
            ge = tl.GatherExcite(c, rd_channels=ours.mlp[0].out_channels)
        except TypeError:  # timm 1.0.31 builds its MLP with ``*dd`` for ``**dd``: attach the MLP it means to build
            from timm.layers.mlp import ConvMlp

            ge = tl.GatherExcite(c, use_mlp=False)
            ge.mlp = ConvMlp(c, ours.mlp[0].out_channels, act_layer=torch.nn.ReLU)
        refs["timm"] = ("GatherExcite", ge)
    elif name == "SK":
        refs["timm"] = ("SelectiveKernel", tl.SelectiveKernel(c, c, groups=ours.convs[0].groups,
                                                              rd_channels=ours.fc.out_channels, split_input=False))
    return refs


# ------------------------------------------------------------------------------------------ measurement


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def forward_fn(m, x):
    def run():
        with torch.inference_mode():
            m(x)

    return run


def train_step_fn(m, x, grad):
    def run():
        m.zero_grad(set_to_none=True)
        x.grad = None
        m(x).backward(grad)

    return run


def profile_cell(spec, c: int, level: str, device: str, args, flops_cache: dict) -> list[dict]:
    """Rows (ours first, then each reference) for one module at one width, map size and device."""
    s = args.imgsz // LEVELS[level]
    base = {"module": spec.name, "category": spec.category, "c": c, "level": level, "h": s, "w": s,
            "batch": args.batch, "device": device, **{k: v for k, v in args.env[device].items() if k != "device"}}
    torch.manual_seed(0)
    try:
        ours = spec.cls(c)
    except Exception as e:  # a module that cannot be built at this width is reported, not fatal
        return [{**base, "impl": "ours", "status": f"build error: {type(e).__name__}: {e}"}]
    refs = {} if args.no_reference else reference_modules(spec.name, ours, c)
    impls = {"ours": ("", ours), **refs}
    rows = []
    try:
        mods = {k: m.to(device) for k, (_, m) in impls.items()}
        x = torch.randn(args.batch, c, s, s, device=device)
        for m in mods.values():
            m.eval()
        fwd = measure.time_interleaved({k: forward_fn(m, x) for k, m in mods.items()}, device, args.repeats,
                                       args.warmup, args.min_block, args.budget)
        xg = x.clone().requires_grad_(True)
        grad = torch.randn_like(x)
        for k, m in mods.items():
            m.train()
            TRAIN_FIXES.get(impls[k][0], lambda _: None)(m)
        steps = {k: train_step_fn(m, xg, grad) for k, m in mods.items()}
        bwd = measure.time_interleaved(steps, device, args.repeats, args.warmup, args.min_block, args.budget)
        for k, m in mods.items():
            key = (spec.name, k, c, level)
            if key not in flops_cache:
                m.eval()
                flops_cache[key] = measure.count_flops(forward_fn(m, x))
            mf, other = flops_cache[key]
            m.train()
            TRAIN_FIXES.get(impls[k][0], lambda _: None)(m)
            peak = measure.peak_memory_mb(steps[k], device)
            row = {**base, "impl": k, "ref_class": impls[k][0], "params": n_params(m), "mflops": mf / 1e6,
                   "mops_other": other / 1e6, "fwd_ms": fwd[k].median, "fwd_spread": fwd[k].spread,
                   "fwdbwd_ms": bwd[k].median, "fwdbwd_spread": bwd[k].spread, "peak_mb": peak, "status": "ok"}
            if k != "ours":
                row["ratio_fwd"] = measure.median_ratio(fwd["ours"], fwd[k])
                row["ratio_fwdbwd"] = measure.median_ratio(bwd["ours"], bwd[k])
            rows.append(row)
    except (RuntimeError, MemoryError, ValueError) as e:  # out of memory on a dense module at P3, say
        msg = str(e).splitlines()[0][:120]
        rows = [{**base, "impl": k, "ref_class": impls[k][0], "params": n_params(m), "status": f"error: {msg}"}
                for k, (_, m) in impls.items()]
    finally:
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


# ---------------------------------------------------------------------------------------------- reports


def _ok(rows, **match):
    return [r for r in rows if r.get("status") == "ok" and all(str(r[k]) == str(v) for k, v in match.items())]


def _env_lines(meta: dict) -> str:
    lines = []
    for dev, m in sorted(meta.items()):
        threads = f", {m['threads']} thread(s)" if m.get("threads") else ""
        secs = m.get("seconds") or 0
        secs = f"; the grid took {secs / 60:.1f} min" if secs >= 60 else f"; the grid took {secs:.0f} s"
        shards = f" ({m['shards']} processes in parallel)" if m.get("shards", 1) > 1 else ""
        lines.append(f"- **{dev}**: {m.get('device_name', '?')}{threads}; torch {m.get('torch', '?')}, "
                     f"torchvision {m.get('torchvision', '?')}, timm {m.get('timm', '–')}; {m.get('date', '?')}"
                     f"{secs}{shards}.")
        lines += measure.update_lines(m)
    return "\n".join(lines) + "\n"


def reference_summary(rows: list[dict]) -> tuple[str, list[str]]:
    """Markdown table of ours/theirs ratios (median over the grid, min-max), and the modules found slower."""
    refs = [r for r in rows if r["impl"] != "ours" and r.get("status") == "ok"]
    out, slower = [], []
    for (module, impl, cls, dev) in sorted({(r["module"], r["impl"], r["ref_class"], r["device"]) for r in refs}):
        cells = [r for r in refs if (r["module"], r["impl"], r["device"]) == (module, impl, dev)]
        fr = sorted(float(r["ratio_fwd"]) for r in cells)
        br = sorted(float(r["ratio_fwdbwd"]) for r in cells)
        med_f, med_b = fr[len(fr) // 2], br[len(br) // 2]
        verdict = "slower" if med_f > SLOWER_TOLERANCE else "not slower"
        if med_f > SLOWER_TOLERANCE:
            slower.append(f"{module} vs {impl} ({dev})")
        out.append([module, f"{impl} `{cls}`", dev, len(cells), f"{med_f:.2f}", f"{fr[0]:.2f}–{fr[-1]:.2f}",
                    f"{med_b:.2f}", f"{br[0]:.2f}–{br[-1]:.2f}", verdict])
    header = ["Module", "Library", "Device", "Cells", "fwd ours/theirs (median)", "fwd range",
              "fwd+bwd ours/theirs (median)", "fwd+bwd range", f"Verdict (>{SLOWER_TOLERANCE:.2f} = slower)"]
    return measure.markdown_table(header, out, "lllrrrrrl"), slower


def render(rows: list[dict], meta: dict, out: Path) -> None:
    devices = sorted({r["device"] for r in rows})
    c0, lvl0 = SUMMARY_CELL
    if not _ok(rows, c=c0, level=lvl0):  # a partial grid (--quick): summarise the first measured cell instead
        first = next(r for r in rows if r.get("status") == "ok")
        c0, lvl0 = int(first["c"]), first["level"]
    side = next((r["h"] for r in rows if str(r["c"]) == str(c0) and r["level"] == lvl0), "?")
    intro = (
        "Every registered attention module alone, batch 1, fp32. FLOPs: convolutions and matrix products "
        f"(torch.utils.flop_counter, 2 per multiply-add); {measure.ELEMENTWISE_NOTE}. fwd: eval mode under "
        "inference_mode; fwd+bwd: train mode with the gradient flowing into the input. Peak: tensor memory of one "
        "forward+backward above the parameters and the input (CUDA: allocator peak; CPU: live ATen storages). "
        "Times are medians of interleaved rounds after warm-up (ms): 7 rounds, fewer (at least 3) where a "
        "cell's rounds would exceed the per-cell time budget.\n\n" + _env_lines(meta)
    )
    # summary: one cell per module
    srows = []
    for name in sorted({r["module"] for r in rows}, key=str.lower):
        cell = {d: _ok(rows, module=name, impl="ours", c=c0, level=lvl0, device=d) for d in devices}
        anyrow = next((v[0] for v in cell.values() if v), None)
        if anyrow is None:
            srows.append([name, "–", "–", "–"] + ["error"] * (3 * len(devices)))
            continue
        line = [name, f"{int(anyrow['params']):,}", measure.fsig(anyrow["mflops"]), measure.fsig(anyrow["mops_other"])]
        for d in devices:
            r = cell[d][0] if cell[d] else {}
            line += [measure.fsig(r.get("fwd_ms")), measure.fsig(r.get("fwdbwd_ms")), measure.fsig(r.get("peak_mb"))]
        srows.append(line)
    header = ["Module", "Params", "MFLOPs", "other Mops"]
    for d in devices:
        header += [f"{d} fwd ms", f"{d} fwd+bwd ms", f"{d} peak MiB"]
    ref_table, slower = reference_summary(rows)
    slower_text = ""
    if slower:
        notes = [f"- {s}: {REFERENCE_NOTES.get(s.split()[0], 'see the full table')}" for s in slower]
        slower_text = "\nSlower than the library (median ratio above the tolerance):\n\n" + "\n".join(notes) + "\n"
    else:
        slower_text = "\nNone of ours is slower than the library's implementation (median ratio within the tolerance).\n"
    slow_modules = {x.split()[0] for x in slower}
    ref_notes = "".join(f"- {k}: {v}\n" for k, v in REFERENCE_NOTES.items()
                        if k not in slow_modules and any(r["module"] == k and r["impl"] != "ours" for r in rows))
    summary = (
        f"{intro}\n### All modules at C={c0}, {lvl0} ({side}x{side})\n\n"
        + measure.markdown_table(header, srows)
        + "\n### Ours vs timm / torchvision (latency ratio, < 1 = ours faster)\n\n"
        "Measured in the same rounds as ours, at every cell of the grid; the library module is configured to the "
        "same widths (hidden channels, kernel size, groups).\n\n" + ref_table + slower_text
        + ("\nComparison notes:\n\n" + ref_notes if ref_notes else "")
    )
    (out / "modules.summary.md").write_text(summary)
    full = ["# Module profiler: full grid\n\nGenerated by `python benchmarks/profile_modules.py`; do not edit by hand.\n\n",
            intro]
    for d in devices:
        full.append(f"\n## {d}\n\n")
        t = []
        for r in sorted((r for r in rows if r["device"] == d and r["impl"] == "ours"),
                        key=lambda r: (r["module"].lower(), int(r["c"]), r["level"])):
            if r.get("status") != "ok":
                t.append([r["module"], r["c"], f"{r['level']} {r['h']}x{r['w']}", "", "", "", "", "", "", r["status"]])
                continue
            t.append([r["module"], r["c"], f"{r['level']} {r['h']}x{r['w']}", f"{int(r['params']):,}",
                      measure.fsig(r["mflops"]), measure.fsig(r["mops_other"]), measure.fsig(r["fwd_ms"]),
                      measure.fsig(r["fwdbwd_ms"]), measure.fsig(r["peak_mb"]), "ok"])
        full.append(measure.markdown_table(
            ["Module", "C", "Map", "Params", "MFLOPs", "other Mops", "fwd ms", "fwd+bwd ms", "peak MiB", "status"], t,
            "lrlrrrrrrl"))
    refs = [r for r in rows if r["impl"] != "ours"]
    if refs:
        full.append("\n## Ours vs timm / torchvision, every cell\n\n")
        t = []
        for r in sorted(refs, key=lambda r: (r["module"], r["impl"], r["device"], int(r["c"]), r["level"])):
            o = _ok(rows, module=r["module"], impl="ours", c=r["c"], level=r["level"], device=r["device"])
            if r.get("status") != "ok" or not o:
                continue
            t.append([r["module"], f"{r['impl']} {r['ref_class']}", r["device"], r["c"], r["level"],
                      f"{int(o[0]['params']):,} / {int(r['params']):,}", measure.fsig(o[0]["fwd_ms"]),
                      measure.fsig(r["fwd_ms"]), measure.fnum(r["ratio_fwd"]), measure.fsig(o[0]["fwdbwd_ms"]),
                      measure.fsig(r["fwdbwd_ms"]), measure.fnum(r["ratio_fwdbwd"])])
        full.append(measure.markdown_table(
            ["Module", "Library", "Device", "C", "Map", "Params ours / theirs", "fwd ours", "fwd theirs",
             "fwd ratio", "fwd+bwd ours", "fwd+bwd theirs", "fwd+bwd ratio"], t, "lllrlrrrrrrr"))
    (out / "modules.md").write_text("".join(full))


# ------------------------------------------------------------------------------------------------- main


def parse_opt(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modules", nargs="+", help="registry names (default: every attention module)")
    ap.add_argument("--channels", nargs="+", type=int, default=[128, 256, 512])
    ap.add_argument("--levels", nargs="+", default=["P3", "P4", "P5"], choices=list(LEVELS))
    ap.add_argument("--imgsz", type=int, default=640, help="input size whose P3/P4/P5 map sizes are used")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="cpu and/or cuda (cuda skipped when absent)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads); recorded")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-block", type=float, default=0.05, help="seconds of calls per callable per round")
    ap.add_argument("--budget", type=float, default=8.0,
                    help="seconds per timing of a cell: slow cells get fewer rounds (at least 3)")
    ap.add_argument("--quick", action="store_true", help="C=64 at P5 only, 3 short rounds (for tests)")
    ap.add_argument("--no-reference", action="store_true", help="skip the timm/torchvision comparisons")
    ap.add_argument("--shard", default="1/1", help="i/n: profile every n-th module starting at i (parallel runs)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for modules.csv/.md (page: <out>.md)")
    ap.add_argument("--append", action="store_true", help="merge into <out>/modules.csv instead of replacing it")
    ap.add_argument("--merge-from", nargs="+", type=Path, default=[],
                    help="CSV files of earlier (sharded) runs to merge into <out> before rendering")
    ap.add_argument("--render-only", action="store_true", help="measure nothing; render from <out>/modules.csv")
    args = ap.parse_args(argv)
    if args.quick:
        args.channels, args.levels, args.repeats, args.min_block, args.warmup = [64], ["P5"], 3, 0.005, 1
    return args


def select_specs(names):
    from models.registry import LAYERS, attention_specs

    specs = attention_specs()
    if not names:
        return specs
    by_name = {s.name.lower(): s for s in specs}
    out = []
    for n in names:
        if n.lower() not in by_name:
            raise SystemExit(f"error: --modules {n}: {LAYERS.unknown_message(n)}")
        out.append(by_name[n.lower()])
    return out


def main(argv=None) -> int:
    args = parse_opt(argv)
    out: Path = args.out
    csv_path, meta_path = out / "modules.csv", out / "modules.meta.json"
    rows = measure.read_csv(csv_path) if (args.append or args.render_only) and csv_path.exists() else []
    meta = measure.load_meta(meta_path) if (args.append or args.render_only) else {}
    for extra in args.merge_from:
        rows = measure.merge_rows(rows, measure.read_csv(extra), KEY)
        for dev, m in measure.load_meta(extra.with_name("modules.meta.json")).items():
            if dev in meta and meta[dev].get("date") == m.get("date"):
                m = {**m, "seconds": max(meta[dev].get("seconds", 0), m.get("seconds", 0)),
                     "shards": meta[dev].get("shards", 1) + 1}
            meta[dev] = m
    if not args.render_only:
        torch.set_num_threads(args.threads)
        i, n = (int(v) for v in args.shard.split("/"))
        specs = select_specs(args.modules)[i - 1::n]
        devices = measure.resolve_devices(args.devices)
        try:
            import timm
            timm_version = timm.__version__
        except ImportError:
            timm_version = ""
            print("note: timm is not installed; the timm comparisons are skipped (pip install timm)")
        args.env = {d: {**measure.environment(d), "timm": timm_version} for d in devices}
        new_rows, flops_cache = [], {}
        for d in devices:
            t_dev = time.perf_counter()
            cells = [(s, c, lvl) for s in specs for c in args.channels for lvl in args.levels]
            for k, (spec, c, lvl) in enumerate(cells, 1):
                t0 = time.perf_counter()
                cell_rows = profile_cell(spec, c, lvl, d, args, flops_cache)
                new_rows += cell_rows
                measure.write_csv(csv_path, measure.merge_rows(rows, new_rows, KEY), COLUMNS)  # survives a kill
                r = cell_rows[0]
                ratios = " ".join(f"{x['impl']} x{float(x['ratio_fwd']):.2f}" for x in cell_rows[1:]
                                  if x.get("status") == "ok")
                print(f"[{d} {k}/{len(cells)}] {spec.name:<24} C={c:<4} {lvl} fwd {measure.fnum(r.get('fwd_ms'), 3)} ms"
                      f"  fwd+bwd {measure.fnum(r.get('fwdbwd_ms'), 3)} ms  peak {measure.fnum(r.get('peak_mb'), 1)} MiB"
                      f"  {ratios}  ({time.perf_counter() - t0:.1f}s){'' if r.get('status') == 'ok' else '  ' + r['status']}",
                      flush=True)
            measure.record_run(meta, d, args.env[d], time.perf_counter() - t_dev, "profile_modules.py", argv,
                               args.append, {"modules": [s.name for s in specs]})
        rows = measure.merge_rows(rows, new_rows, KEY)
    return measure.finish(csv_path, rows, COLUMNS, meta_path, meta, render, out, "modules")


if __name__ == "__main__":
    raise SystemExit(main())
