"""How another project reads a row: a :class:`~models.dialects.names.Reading` built from its module's signature,
and the value translations the readings share.

The conventions, from the projects' own parsers:

- YOLOAir (``models/yolo.py`` ``parse_model``): for its attention names the first argument is the *nominal* channel
  count, scaled by ``width_multiple`` like a Conv's output; the module is built on the real input channels. Every
  other name gets its arguments as written (the first is the *real* channel count).
- ODS (objectdetection_script's cv-attention): the row writes only the module's remaining arguments,
  ``[-1, 1, EMA, [8]]``; an integer equal to the input's width (or its nominal width) is a channel count.
- EAP (External-Attention-pytorch) has no YOLO parser; blogs place its modules either way.
"""

from __future__ import annotations

import math
from typing import Callable

from models.dialects.names import Reading, Translation
from models.registry.values import flow
from models.registry import ConfigError, RowContext, is_int, nominal_width_problem, scaled_width

REQUIRED = object()  # a source parameter without a default

EAP = "EAP"  # xmu-xiaoma666/External-Attention-pytorch
ODS = "ODS"  # z1069614715/objectdetection_script, cv-attention
YOLOAIR = "YOLOAir"  # iscyy/yoloair
YOLOAIR2 = "yoloair2"  # iscyy/yoloair2, the newer generation
FORKS = "YOLOv5 and YOLOv7 forks"  # forks listing their attention with the convolutions: Module(c1, c2, ...)
ULTRA = "YOLOv8 and YOLO11 forks"  # ultralytics-based forks: c1 injected, the row's arguments after it
ARTICLE = "seed article"  # the blog articles this project was created from (shared/seeds)


class Values(dict):
    """A row's arguments bound to a source signature, defaults filled in; ``notes``: what translating decided."""

    def __init__(self, values: dict):
        super().__init__(values)
        self.notes: list[str] = []


ToOurs = Callable[[Values, RowContext], dict]


def _convention(params: tuple, channel: str | None) -> str:
    lead = {"nominal": ["c2 (x width_multiple)"], "real": ["c (the input channels, unscaled)"],
            "optional": ["(width, optional)"]}.get(channel, [])
    rest = [p if d is REQUIRED else f"{p}={_show(d)}" for p, d in params]
    return f"[{', '.join(lead + rest)}]"


def _show(v) -> str:
    return repr(list(v)) if isinstance(v, tuple) else repr(v)


def _check_channel(v, channel: str, ctx: RowContext, source: str) -> None:
    c_in, width = ctx.c_from[0], ctx.width
    if channel == "nominal":
        problem = nominal_width_problem(v, c_in, width, ctx.max_channels)
        if problem:
            raise ConfigError(f"{source} scales its first argument like a Conv's output width: {problem}")
    elif v != c_in:
        before = f"; {v} is its width before width_multiple {width:g}" if scaled_width(
            v, width, ctx.max_channels) == c_in and v != c_in else ""
        raise ConfigError(f"{source} passes the first argument {v} to the module as written, as its input channels, "
                          f"but the input has {c_in} channels (write {c_in}{before})")


def _looks_like_channels(v, ctx: RowContext) -> bool:
    """An integer a row writes where a width would stand: the input's width, or a nominal width that scales to it."""
    c_in, width = ctx.c_from[0], ctx.width
    return is_int(v) and v > 1 and (v == c_in or (width and v == c_in / width)
                                    or (v >= 16 and scaled_width(v, width, ctx.max_channels) == c_in))


def reading(source: str, params: tuple = (), to_ours: ToOurs | None = None, *, channel: str | None = None,
            dialect: str = "", convention: str = "", example: tuple = (), takes_width: bool = False) -> Reading:
    """A :class:`Reading` of rows written against a source signature.

    ``params``: the source module's parameters after its channel argument, as (name, default) pairs (``REQUIRED``
    for none); ``channel``: ``"nominal"`` or ``"real"`` when the row writes a channel count first (required, as in
    the source), ``"optional"`` when a leading width is dropped if the row writes one (the YOLOv8 forks' parsers
    inject c1 either way), ``None`` when it does not; ``to_ours(values, ctx)``: the bound source values -> our
    hyperparameters (raises :class:`ConfigError` for a value without an equivalent). ``dialect``: the model YAML's
    ``dialect:`` value that selects this reading; ``takes_width``: the source's parser puts the layer's width into
    a hyperparameter (the reading cannot be guessed: a row it accepts is refused unless ``dialect:`` says).
    ``example``: values of the required parameters for the documented example row (after 1024 nominal / 512 real
    channels of a width-0.5 model).
    """
    to_ours = to_ours or (lambda v, ctx: {})
    names = [p for p, _ in params]

    def translate(args: list, ctx: RowContext) -> Translation:
        args = list(args)
        kwargs = dict(args.pop()) if args and isinstance(args[-1], dict) else {}
        if channel == "optional":
            if args and _looks_like_channels(args[0], ctx):
                args.pop(0)
        elif channel:
            if not args or not is_int(args[0]):
                raise ConfigError(f"{source} rows write the channel count first")
            _check_channel(args.pop(0), channel, ctx, source)
        elif args and _looks_like_channels(args[0], ctx) and names:
            raise ConfigError(f"{args[0]} is the input's channel count, which {source} rows do not write "
                              f"(its first argument is {names[0]})")
        if len(args) > len(names):
            raise ConfigError(f"{source}'s module takes {len(names)} argument(s) here ({', '.join(names) or 'none'}), "
                              f"the row gives {len(args)}")
        given = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                raise ConfigError(f"{source}'s module has no argument '{k}' (it takes: {', '.join(names) or 'none'})")
            if k in given:
                raise ConfigError(f"'{k}' given twice")
            given[k] = v
        missing = [p for p, d in params if d is REQUIRED and p not in given]
        if missing:
            raise ConfigError(f"{source}'s module needs {', '.join(missing)}")
        values = Values({**{p: d for p, d in params}, **given})
        out = to_ours(values, ctx)
        return Translation(out, tuple(values.notes))

    lead = {"nominal": (1024,), "real": (512,)}.get(channel, ())
    return Reading(source, convention or _convention(params, channel), translate, dialect, (*lead, *example),
                   takes_width)


# ----------------------------------------------------------------------------------------------------------------------
# Value translations shared by the readings


def _int(v, what: str, low: int = 1) -> int:
    if not is_int(v) or v < low:
        raise ConfigError(f"{what} must be an integer >= {low}, got {v!r}")
    return v


def _flag(v, what: str, values: Values) -> bool:
    if isinstance(v, bool):
        return v
    if is_int(v):
        values.notes.append(f"{what}: {v} is read as {bool(v)} (the source tests it for truth)")
        return bool(v)
    raise ConfigError(f"{what} must be true or false, got {v!r}")


def _exact_reduction(ctx: RowContext, reduction, what: str = "reduction") -> int:
    """A C -> C // r reduction the source takes without a floor; r must leave at least one channel."""
    r = _int(reduction, what)
    if ctx.c_from[0] // r < 1:
        raise ConfigError(f"{what} {r} leaves {ctx.c_from[0]} // {r} = 0 hidden channels (the source module fails)")
    return r


def _ratio(ctx: RowContext, ratio, what: str = "ratio") -> int:
    """GCNet's hidden-width ratio (planes = int(C * ratio)) as our reduction (hidden = C // reduction)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ConfigError(f"{what} must be a number in (0, 1] (hidden width = C x {what}), got {ratio!r}")
    r = round(1 / ratio)
    c = ctx.c_from[0]
    if not math.isclose(1 / ratio, r, rel_tol=1e-6) or int(c * ratio) != c // r or c // r < 1:
        raise ConfigError(f"{what} {ratio:g} gives int({c} x {ratio:g}) = {int(c * ratio)} hidden channels, which no "
                          f"integer reduction of {c} gives; write a ratio 1/r with r dividing {c}")
    return r


def _divides(ctx: RowContext, g, what: str, times: int = 1) -> int:
    g = _int(g, what)
    if ctx.c_from[0] % (g * times):
        raise ConfigError(f"{what} {g}: the source needs the channel count ({ctx.c_from[0]}) divisible by "
                          f"{g * times if times > 1 else g}")
    return g


def _only(values: Values, what: str, allowed, why: str) -> None:
    if values[what] not in allowed:
        raise ConfigError(f"{what}={values[what]!r} has no equivalent here ({why})")




def our_row(f, n, name: str, kwargs: dict) -> str:
    """A row in this project's form: [from, number, module, [{hyperparameters}]] (channels come from 'from')."""
    return f"[{flow(f)}, {n}, {name}, [{flow(kwargs) if kwargs else ''}]]"
