"""The parser: a model dict (YOLOv5 / YOLOv7 / ultralytics YAML) -> an ``nn.Sequential`` of layers.

It reads YOLOv5 (v6+) and YOLOv7-style YAMLs (``depth_multiple``/``width_multiple`` or an ultralytics
``scales:`` table). Layer names resolve only through the registry (:meth:`models.registry.Registry.resolve`),
other projects' names too (``models/dialects/aliases.py``: their arguments translated, the translation in the layer
table); every name is checked before any row is planned, and all unknown ones are reported at once. Argument
values go through :func:`models.parse.read.parse_arg` (never evaluated as code).

Channels: attention rows take their input channel count from the ``from`` layer. A first argument,
when given, is the nominal width a YOLOv5 YAML writes before ``width_multiple``; it is scaled exactly
like a Conv's output and must equal the real input width, otherwise building fails with a message that
names the layer (:func:`models.registry.attention_arguments`).
"""

from __future__ import annotations

import inspect
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from torch import nn
from ultralytics.nn.modules import Conv
from ultralytics.utils import LOGGER

from models.parse.read import INPUT, model_scale, parse_activation, parse_arg, resolve_from, rows_of
from models.registry import LAYERS, ConfigError, LayerSpec, RowContext, attention_arguments, is_int, scaled_width


@contextmanager
def default_activation(act: nn.Module | None):
    """ultralytics' ``Conv.default_act`` (process-wide) set to ``act`` while building, restored afterwards."""
    saved = Conv.default_act
    if act is not None:
        Conv.default_act = act
    try:
        yield
    finally:
        Conv.default_act = saved


@contextmanager
def head_legacy(cls, legacy: bool | None):
    """A head class's ``legacy`` flag (ultralytics Detect: the v5u class branch) set while building one."""
    if legacy is None:
        yield
        return
    saved = cls.legacy
    cls.legacy = legacy
    try:
        yield
    finally:
        cls.legacy = saved


def _activation_to_keyword(cls, args: list) -> dict:
    """Move an activation written positionally into ``act`` (YOLOv7 rows put it where ultralytics' Conv has ``d``)."""
    params = list(inspect.signature(cls).parameters)
    if "act" not in params:
        return {}
    for k, a in enumerate(args):
        if isinstance(a, nn.Module) and k != params.index("act"):
            del args[k]
            return {"act": a}
    return {}


def _model_activation(d: dict, source: str) -> nn.Module | None:
    if not d.get("activation"):
        return None
    try:
        return parse_activation(d["activation"])
    except ValueError as e:
        raise ConfigError(f"{source}: activation: {e}") from None


# Bounds: a typo (width_multiple 25 for 0.25, a repeat count of 1e9) must be a clear error, not a hang or an
# out-of-memory crash. They are far above every published YOLO model (yolov5x: depth 1.33, width 1.25, 12 repeats,
# 1280 channels; yolov7-e6e: 151 M parameters).
MAX_MULTIPLE = 4.0  # depth_multiple, width_multiple
MAX_REPEATS = 100  # a row's repeat count after depth scaling
MAX_CHANNELS = 8192  # a layer's output channels after width scaling
MAX_PARAMS = 1_000_000_000  # the whole model (4 GB of fp32 weights, four times that to train)
SCREEN_PARAMS = 50_000_000  # above this rough row-by-row estimate, the exact count is taken before allocating


@dataclass
class Row:
    """One YAML row, resolved: what to build and what it outputs (no module is built yet)."""

    i: int
    f: int | list
    inputs: list[int]
    name: str
    spec: LayerSpec
    args: list
    kwargs: dict
    n: int  # modules to build (1 for 'repeat' kinds, whose count is an argument)
    shown_n: int  # the repeat count after depth scaling, as the layer table shows it
    c2: int | None
    notes: list[str]
    where: str


def parse_model(d: dict, ch: int = 3, verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
    """Build the layers of a YOLO YAML dict. Returns (layers, indices of layers whose outputs are kept)."""
    source = d.get("yaml_file", "<dict>")
    check_model_keys(d, source)
    depth, width, max_channels, _ = model_scale(d)
    check_multiples(depth, width, source)
    act = _model_activation(d, source)
    with default_activation(act):
        plan = plan_rows(d, rows_of(d), ch, depth, width, max_channels)
        check_size(plan, source)
        return build_rows(plan, verbose)


def check_model_keys(d: dict, source: str) -> None:
    if "nc" not in d:
        raise ConfigError(f"{source}: missing required key 'nc' (the number of classes)")
    nc = d["nc"]
    if not is_int(nc) or nc < 1:
        raise ConfigError(f"{source}: nc must be a positive whole number of classes, got {nc!r}")


def _number(v, key: str, source: str) -> float:
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise ConfigError(f"{source}: {key} must be a number, got {v!r}") from None
        raise ConfigError(f"{source}: {key}: {v!r} was read as text (YAML 1.1 needs a decimal point and a signed "
                          f"exponent, e.g. 1.0e+6); write it as a plain number, e.g. {v:g}")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{source}: {key} must be a finite number, got {v!r}")
    return float(v)


def check_multiples(depth, width, source: str) -> None:
    for key, v in (("depth_multiple", depth), ("width_multiple", width)):
        v = _number(v, key, source)
        if not 0 < v <= MAX_MULTIPLE:
            hint = f" (did you mean {v / 100:g}?)" if v > MAX_MULTIPLE and v / 100 <= MAX_MULTIPLE else ""
            raise ConfigError(f"{source}: {key} must be in (0, {MAX_MULTIPLE:g}], got {v:g}{hint}; yolov5n..x use "
                              "depth 0.33-1.33 and width 0.25-1.25")


def _rough_params(r: Row, c1: int) -> float:
    """An over-estimate of a row's parameters from its widths alone (screens for models that need an exact count)."""
    c2 = r.c2 or c1
    reps = r.args[2] if r.spec.kind == "repeat" and len(r.args) > 2 and is_int(r.args[2]) else r.n
    if r.spec.kind == "attention":
        return 100.0 * c1 * c1 * r.n
    return 9.0 * (c1 + 2 * reps * c2) * c2


def check_size(plan: list[Row], source: str) -> None:
    """Refuse a model over :data:`MAX_PARAMS` before any weight is allocated (exact count on the meta device)."""
    chs = {r.i: r.c2 for r in plan}
    rough = sum(_rough_params(r, (chs.get(r.inputs[0]) or 3) if r.inputs[0] >= 0 else 3) for r in plan)
    if rough <= SCREEN_PARAMS:
        return
    with torch.device("meta"):
        sizes = [(sum(p.numel() for p in m.parameters()), r) for m, r in zip(build_modules(plan), plan)]
    total = sum(n for n, _ in sizes)
    if total > MAX_PARAMS:
        top = ", ".join(f"layer {r.i} ({r.name}) {n / 1e6:,.0f} M" for n, r in sorted(sizes, key=lambda x: -x[0])[:3])
        raise ConfigError(f"{source}: the model would have {total / 1e6:,.0f} M parameters (limit "
                          f"{MAX_PARAMS / 1e6:,.0f} M): largest {top}. Check width_multiple and the channel counts.")


def plan_rows(d: dict, rows: list, ch: int, depth: float, width: float, max_channels: float) -> list[Row]:
    """Resolve every row (names, 'from', arguments, channels) without building anything."""
    source = d.get("yaml_file", "<dict>")
    symbols = {"nc": d["nc"], "anchors": d.get("anchors")}
    check_names(rows, source)
    chs: list[int] = []
    plan: list[Row] = []
    for i, row in enumerate(rows):
        where = f"{source}: layer {i}"
        if not isinstance(row, (list, tuple)) or len(row) != 4:
            raise ConfigError(f"{where}: each row must be [from, number, module, args], got {row!r}")
        f, n, name, args = row
        if not isinstance(name, str):
            raise ConfigError(f"{where}: module name must be a string, got {name!r}")
        where = f"{source}: layer {i} ({name})"
        inputs = resolve_from(f, i, where)
        if not is_int(n) or n < 1:
            raise ConfigError(f"{where}: 'number' must be a positive int, got {n!r}")
        if not isinstance(args, list):
            raise ConfigError(f"{where}: args must be a list, got {args!r}")
        args = parse_arg(args, symbols, where)
        c_from = [ch if j == INPUT else chs[j] for j in inputs]
        try:  # another project's name (or, under `dialect:`, reading) -> our module and our arguments
            resolved = LAYERS.resolve(name, args, RowContext(c_from, d, width, max_channels, where), f, n)
        except KeyError as e:
            raise ConfigError(f"{where}: {e.args[0]}") from None
        spec, args = resolved.spec, resolved.args
        if resolved.shown:
            name, where = resolved.shown, f"{source}: layer {i} ({resolved.shown})"
        if spec.dispatch is not None:  # one YAML name, several classes: Detect [nc, anchors] -> AnchorDetect
            try:
                spec = LAYERS.get(spec.dispatch(args, d))
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
        c1 = c_from[0]
        n_ = n = max(round(n * depth), 1) if n > 1 else n
        if n > MAX_REPEATS:
            raise ConfigError(f"{where}: {n} repeats (after depth_multiple {depth:g}) is more than {MAX_REPEATS}; "
                              "check 'number' and depth_multiple")
        kwargs: dict = {}
        notes: list[str] = list(resolved.notes)
        kind = spec.kind
        if kind in ("conv", "repeat"):
            if not args or not is_int(args[0]) or args[0] < 1:
                raise ConfigError(f"{where}: first argument must be the output channel count (a positive int), "
                                  f"got {args!r}")
            c2 = scaled_width(args[0], width, max_channels)
            if c2 > MAX_CHANNELS:
                raise ConfigError(f"{where}: {args[0]} channels x width_multiple {width:g} = {c2}, more than "
                                  f"{MAX_CHANNELS}; check the channel count and width_multiple")
            args = [c1, c2, *args[1:]]
            if kind == "repeat":
                args.insert(2, n)
                n = 1
            kwargs = _activation_to_keyword(spec.cls, args)
        elif kind == "attention":
            hyper, kwargs = attention_arguments(spec, args, c1, where, width, max_channels, notes)
            args, c2 = [c1, *hyper], c1
        elif kind == "concat":
            c2 = sum(c_from)
        elif kind == "norm":
            args, c2 = [c1], c1
        elif kind == "passthrough":
            c2 = c1
        else:  # head / custom: the layer's own rule
            args, c2 = spec.make_args(args, RowContext(c_from, d, width, max_channels, where))
        plan.append(Row(i, f, inputs, name, spec, args, kwargs, n, n_, c2, notes, where))
        chs.append(c2)
    return plan


def check_names(rows: list, source: str) -> None:
    """Every row's module name must resolve; all that do not are reported at once (typos with the closest names)."""
    unknown = [(i, row[2]) for i, row in enumerate(rows) if isinstance(row, (list, tuple)) and len(row) == 4
               and isinstance(row[2], str) and not LAYERS.resolves(row[2])]
    if unknown:
        raise ConfigError(LAYERS.unknown_rows_message(source, unknown))


def build_modules(plan: list[Row]):
    """The module of every planned row, in order (a generator: a failing row stops the build with its location)."""
    for r in plan:
        spec, args, kwargs = r.spec, r.args, r.kwargs
        try:
            with head_legacy(spec.cls, spec.legacy):
                m = nn.Sequential(*(spec.cls(*args, **kwargs) for _ in range(r.n))) if r.n > 1 else spec.cls(*args, **kwargs)
        except ConfigError as e:  # a block's own row check (C3Att, ELANAtt: the attention it names)
            raise ConfigError(f"{r.where}: {e}") from None
        except Exception as e:
            raise ConfigError(f"{r.where}: building {r.name}{tuple(args)} failed: {type(e).__name__}: {e}") from e
        if spec.legacy is not None:
            m.legacy = spec.legacy  # the instance keeps the flag it was built with
        if spec.post_build is not None:  # e.g. SPPF: YOLOv5 rows keep the activation on cv1
            spec.post_build(m, args)
        yield m


def build_rows(plan: list[Row], verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
    """Build the planned rows; returns (layers, indices of layers whose outputs are kept)."""
    if verbose:
        LOGGER.info(f"\n{'':>3}{'from':>20}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}")
    layers, save = [], []
    for r, m_ in zip(plan, build_modules(plan)):
        m_.np = sum(x.numel() for x in m_.parameters())
        m_.i, m_.f, m_.type = r.i, r.f, r.name
        if verbose:
            shown = [*r.args, r.kwargs] if r.kwargs else r.args
            shown = [a if not isinstance(a, nn.Module) else type(a).__name__ for a in shown]
            LOGGER.info(f"{r.i:>3}{r.f!s:>20}{r.shown_n:>3}{m_.np:10.0f}  {r.name:<40}{shown!s:<30}")
            for note in r.notes + list(getattr(m_, "build_notes", None) or []):
                LOGGER.info(f"{'':>36}note: {note}")
        fs = r.f if isinstance(r.f, list) else [r.f]
        save.extend(j for x, j in zip(fs, r.inputs) if x != -1)  # outputs read by a later layer other than the next
        layers.append(m_)
    return nn.Sequential(*layers), sorted(set(save))
