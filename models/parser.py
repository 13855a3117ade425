"""The parser: a model dict (YOLOv5 / YOLOv7 / ultralytics YAML) -> an ``nn.Sequential`` of layers.

It reads YOLOv5 (v6+) and YOLOv7-style YAMLs (``depth_multiple``/``width_multiple`` or an ultralytics
``scales:`` table). Layer names resolve only through the registry (:data:`models.registry.LAYERS`);
argument values through :func:`models.config.parse_arg` (never evaluated as code).

Channels: attention rows take their input channel count from the ``from`` layer. A first argument,
when given, is the nominal width a YOLOv5 YAML writes before ``width_multiple``; it is scaled exactly
like a Conv's output and must equal the real input width, otherwise building fails with a message that
names the layer (:func:`models.registry.attention_arguments`).
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

from torch import nn
from ultralytics.nn.modules import Conv
from ultralytics.utils import LOGGER

from models.config import INPUT, model_scale, parse_activation, parse_arg, resolve_from, rows_of
from models.registry import LAYERS, ConfigError, RowContext, attention_arguments, is_int, scaled_width


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


def parse_model(d: dict, ch: int = 3, verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
    """Build the layers of a YOLO YAML dict. Returns (layers, indices of layers whose outputs are kept)."""
    source = d.get("yaml_file", "<dict>")
    if "nc" not in d:
        raise ConfigError(f"{source}: missing required key 'nc'")
    rows = rows_of(d)
    depth, width, max_channels, _ = model_scale(d)
    act = _model_activation(d, source)
    with default_activation(act):
        return _parse_rows(d, rows, ch, depth, width, max_channels, verbose)


def _parse_rows(d, rows, ch, depth, width, max_channels, verbose):
    source = d.get("yaml_file", "<dict>")
    symbols = {"nc": d["nc"], "anchors": d.get("anchors")}
    if verbose:
        LOGGER.info(f"\n{'':>3}{'from':>20}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}")
    chs: list[int] = []
    layers, save = [], []
    for i, row in enumerate(rows):
        where = f"{source}: layer {i}"
        if not isinstance(row, (list, tuple)) or len(row) != 4:
            raise ConfigError(f"{where}: each row must be [from, number, module, args], got {row!r}")
        f, n, name, args = row
        if not isinstance(name, str):
            raise ConfigError(f"{where}: module name must be a string, got {name!r}")
        where = f"{source}: layer {i} ({name})"
        try:
            spec = LAYERS.get(name)
        except KeyError as e:
            raise ConfigError(f"{where}: {e.args[0]}") from None
        inputs = resolve_from(f, i, where)
        if not is_int(n) or n < 1:
            raise ConfigError(f"{where}: 'number' must be a positive int, got {n!r}")
        if not isinstance(args, list):
            raise ConfigError(f"{where}: args must be a list, got {args!r}")
        args = parse_arg(args, symbols, where)
        if spec.dispatch is not None:  # one YAML name, several classes: Detect [nc, anchors] -> AnchorDetect
            try:
                spec = LAYERS.get(spec.dispatch(args, d))
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
        c_from = [ch if j == INPUT else chs[j] for j in inputs]
        c1 = c_from[0]
        n_ = n = max(round(n * depth), 1) if n > 1 else n
        kwargs: dict = {}
        notes: list[str] = []
        kind = spec.kind
        if kind in ("conv", "repeat"):
            if not args or not is_int(args[0]):
                raise ConfigError(f"{where}: first argument must be the output channel count, got {args!r}")
            c2 = scaled_width(args[0], width, max_channels)
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
        try:
            with head_legacy(spec.cls, spec.legacy):
                m_ = nn.Sequential(*(spec.cls(*args, **kwargs) for _ in range(n))) if n > 1 else spec.cls(*args, **kwargs)
        except ConfigError as e:  # a block's own row check (C3Att, ELANAtt: the attention it names)
            raise ConfigError(f"{where}: {e}") from None
        except Exception as e:
            raise ConfigError(f"{where}: building {name}{tuple(args)} failed: {type(e).__name__}: {e}") from e
        if spec.legacy is not None:
            m_.legacy = spec.legacy  # the instance keeps the flag it was built with
        if spec.post_build is not None:  # e.g. SPPF: YOLOv5 rows keep the activation on cv1
            spec.post_build(m_, args)
        m_.np = sum(x.numel() for x in m_.parameters())
        m_.i, m_.f, m_.type = i, f, name
        if verbose:
            shown = [*args, kwargs] if kwargs else args
            shown = [a if not isinstance(a, nn.Module) else type(a).__name__ for a in shown]
            LOGGER.info(f"{i:>3}{f!s:>20}{n_:>3}{m_.np:10.0f}  {name:<40}{shown!s:<30}")
            for note in notes + list(getattr(m_, "build_notes", None) or []):
                LOGGER.info(f"{'':>36}note: {note}")
        fs = f if isinstance(f, list) else [f]
        save.extend(j for x, j in zip(fs, inputs) if x != -1)  # outputs read by a later layer other than the next
        layers.append(m_)
        chs.append(c2)
    return nn.Sequential(*layers), sorted(set(save))
