"""Plan: every row of a checked model dict resolved, without building anything.

Names resolve through the dialect layer (:func:`models.dialects.resolve.resolve`: other projects' names and readings,
then the registry); every name is checked before any row is planned, and all unknown ones are reported at once.
Argument values go through :func:`models.registry.values.parse_arg` (never evaluated as code). Channels: an attention
row takes its input channel count from its ``from`` layer; a first argument, when given, is the nominal width a YOLOv5
YAML writes before ``width_multiple`` and must scale to the real input width
(:func:`models.registry.attention_arguments`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from torch import nn

from models.dialects.resolve import check_names, resolve
from models.layers.families import rule_of
from models.parse.read import INPUT, MAX_CHANNELS, MAX_REPEATS, resolve_from
from models.registry.values import parse_arg
from models.registry import LAYERS, ConfigError, LayerSpec, RowContext, attention_arguments, is_int, scaled_width


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
    c2: int | list | None  # a list: the widths of a multi-output row (CBLinear), read by CBFuse only
    notes: list[str]
    where: str
    legacy: bool | None = None  # a head's legacy branch (ultralytics Detect), as the rows above it decide
    warnings: tuple[str, ...] = ()  # how other projects read the row differently (printed under the layer table)


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



def plan_rows(d: dict, rows: list, ch: int, depth: float, width: float, max_channels: float,
              scale: str = "") -> list[Row]:
    """Resolve every row (names, 'from', arguments, channels) without building anything.

    ``scale`` is the model's scale letter: ultralytics' newer blocks take arguments that depend on it, and some turn
    the head's legacy branch off (:mod:`models.layers.families`, applied here as ultralytics' parser applies them).
    """
    source = d.get("yaml_file", "<dict>")
    symbols = {"nc": d["nc"], "anchors": d.get("anchors")}
    check_names(rows, source)
    chs: list[int | list] = []
    plan: list[Row] = []
    legacy = True  # the head's legacy branch until a row turns it off
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
            resolved = resolve(name, args, RowContext(c_from, d, width, max_channels, where), f, n)
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
        if spec.kind != "custom" and any(isinstance(c, list) for c in c_from):
            j = next(j for j, c in zip(inputs, c_from) if isinstance(c, list))
            raise ConfigError(f"{where}: layer {j} outputs several maps ({chs[j]} channels: a CBLinear), which only a "
                              "CBFuse row reads; place the layer after the CBFuse")
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
            rule = rule_of(spec.name)
            if rule is not None:
                legacy = legacy and rule.head_legacy
                args = rule.at_scale(args, scale) if rule.at_scale else args
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
        head_legacy = (spec.legacy and legacy) if spec.legacy is not None else None
        plan.append(Row(i, f, inputs, name, spec, args, kwargs, n, n_, c2, notes, where, head_legacy, resolved.warnings))
        chs.append(c2)
    return plan


