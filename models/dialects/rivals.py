"""A row of one of our own names, read this project's way, compared with how the other projects read it.

Without ``dialect:`` a row with our name builds our module; every other project's reading of the same row
(:mod:`models.dialects.own`) that builds something else is named in one warning line, with its parameter count and
the edit that selects it (``{form: ...}`` or ``dialect: ...``). A reading that puts a value the row writes into
another hyperparameter (``CBAM [1024, 3]``: reduction here, kernel_size in ultralytics) refuses the row instead:
guessing would change the experiment. Where our reading fails, the error says how the others read the row.
"""

from __future__ import annotations

import inspect

import torch

from models.dialects.names import NoEquivalent, Reading
from models.dialects.readings import our_row
from models.registry.arguments import build_failure
from models.registry.values import flow
from models.registry import ConfigError, LayerSpec, RowContext, attention_arguments

NATIVE_HINT = "`dialect: native` in the model YAML reads every row this project's way without this warning"


def params_of(spec: LayerSpec, c: int, kwargs: dict) -> int | None:
    """Parameters of ``spec.cls(c, **kwargs)``, counted on the meta device (nothing allocated); None if it fails."""
    try:
        with torch.device("meta"):
            return sum(p.numel() for p in spec.cls(c, **kwargs).parameters())
    except Exception:  # noqa: BLE001  (a reading's module that cannot be built here is reported without a count)
        return None


def same_module(spec: LayerSpec, c: int, a: dict, b: dict) -> bool:
    """Whether two keyword sets build the same module: the same layers (repr), state shapes and form."""
    if a == b:
        return True
    try:
        with torch.device("meta"):
            ma, mb = spec.cls(c, **a), spec.cls(c, **b)
    except Exception:  # noqa: BLE001
        return False
    shapes = [(k, tuple(v.shape)) for k, v in ma.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in mb.state_dict().items()]
    return shapes and repr(ma) == repr(mb) and getattr(ma, "form", None) == getattr(mb, "form", None) and \
        vars(ma).get("residual") == vars(mb).get("residual")


def compact(spec: LayerSpec, kwargs: dict, c: int | None = None) -> dict:
    """Keywords without those equal to the target's defaults (what a rewritten row needs to say); with ``c``, also
    without those the form's own defaults give (``{form: bubbliiiing, kernel_size: 7}`` -> ``{form: bubbliiiing}``)."""
    params = inspect.signature(spec.cls).parameters
    out = {k: v for k, v in kwargs.items() if k not in params or params[k].default != v
           or type(params[k].default) is not type(v)}
    if c is not None:  # a key goes where the module stays the same without it, at this width, a narrow and a wide one
        for k in [k for k in out if k != "form"]:
            fewer = {key: v for key, v in out.items() if key != k}
            if all(same_module(spec, w, out, fewer) for w in (24, c, max(8 * c, 2048))):
                out = fewer
    return out


def sources(readings) -> str:
    return ", ".join(dict.fromkeys(r.source for r in readings))


def dialect_edit(readings) -> str:
    """`` or `dialect: forks` `` for the readings' dialects ('' when none selects them)."""
    dialects = list(dict.fromkeys(d for r in readings for d in r.dialects))
    if not dialects:
        return ""
    return f" or `dialect: {dialects[0]}`" + "".join(f" / `{d}`" for d in dialects[1:])


def _grouped(spec: LayerSpec, c: int, found: list) -> list[tuple[list[Reading], dict | None, str]]:
    """(readings, their keywords or None, NoEquivalent text) with the same result merged."""
    groups: list[tuple[list[Reading], dict | None, str]] = []
    for r, kwargs, text in found:
        for readings, kw, t in groups:
            if t == text and (kw is None) == (kwargs is None) and (kw is None or same_module(spec, c, kw, kwargs)):
                readings.append(r)
                break
        else:
            groups.append(([r], kwargs, text))
    return groups


def _count(spec: LayerSpec, c: int, kwargs: dict) -> str:
    """"33,412 parameters, " (or "" where the module cannot be built from ``kwargs``)."""
    count = params_of(spec, c, kwargs)
    return f"{count:,} parameters, " if count is not None else ""


def _way(spec: LayerSpec, c: int, readings: list[Reading], kwargs: dict | None, text: str, f, n) -> str:
    if kwargs is None:
        return f"{sources(readings)}: {text}"
    row = our_row(f, n, spec.name, compact(spec, kwargs, c))
    return f"{sources(readings)}: {_count(spec, c, kwargs)}{row}{dialect_edit(readings)}"


def check_ours(spec: LayerSpec, args: list, ctx: RowContext, readings: tuple[Reading, ...], f, n) -> tuple[str, ...]:
    """Our reading of a row of our own name, against the other projects' readings: the warnings to print.

    Raises :class:`ConfigError` when our reading fails (saying how the others read the row) and when another
    project reads a value the row writes as a different hyperparameter.
    """
    c = ctx.c_from[0]
    if not isinstance(c, int):  # several maps (a CBLinear): the parser refuses the row and says why
        return ()
    try:
        hyper, kwargs = attention_arguments(spec, args, c, ctx.where, ctx.width, ctx.max_channels)
    except ConfigError as e:
        explain_foreign(spec, args, ctx, readings, f, n, str(e).rstrip("."))
    names = list(inspect.signature(spec.cls).parameters)[1:]
    written = {spec.renamed.get(k, k): v for k, v in zip(names, hyper)}
    ours = {**written, **kwargs}
    check_values(spec, args, ctx, ours, written, f, n)
    if "form" in kwargs:  # the row names the module it means
        return ()
    defaults = {k: p.default for k, p in inspect.signature(spec.cls).parameters.items()}
    others, conflicts = [], []
    for r in readings:
        try:
            t = r.translate(list(args), ctx)
        except NoEquivalent as e:
            (conflicts if written else others).append((r, None, str(e)))
            continue
        except ConfigError:
            continue
        if same_module(spec, c, ours, t.kwargs):
            continue
        misread = any(t.kwargs.get(k, defaults.get(k)) != v for k, v in written.items())
        (conflicts if misread else others).append((r, t.kwargs, ""))
    row = f"{spec.name} [{', '.join(_show(a) for a in args)}]"
    if conflicts:
        shown = ", ".join(f"{k}={v!r}" for k, v in written.items())
        ways = "; ".join(_way(spec, c, rs, kw, text, f, n) for rs, kw, text in _grouped(spec, c, conflicts))
        raise ConfigError(f"{ctx.where}: {row} means different modules in the projects that use the name: this "
                          f"project reads {shown} ({_count(spec, c, ours)}{our_row(f, n, spec.name, ours)}); {ways}. "
                          "Write the row you mean with its hyperparameters by name, or say which project the YAML "
                          "follows with `dialect:`")
    if not others:
        return ()
    form = f" (form '{_default_form(spec)}')" if spec.forms else ""
    ways = "; ".join(_way(spec, c, rs, kw, text, f, n) for rs, kw, text in _grouped(spec, c, others))
    return (f"{ctx.where}: {row} built this project's {spec.name}{form}, {_count(spec, c, ours)[:-2]}; other projects "
            f"read the row as {ways}. {NATIVE_HINT}",)


def check_values(spec: LayerSpec, args: list, ctx: RowContext, kwargs: dict, written: dict, f, n) -> None:
    """Build the row's module on the meta device; a constructor's ValueError becomes one line naming the value and
    the row to write (a width written where a hyperparameter stands: ``ACmix [1024, 1024]``, kernel_att=1024)."""
    c = ctx.c_from[0]
    try:
        with torch.device("meta"):
            spec.cls(c, **kwargs)
    except ValueError as e:
        defaults = {k: p.default for k, p in inspect.signature(spec.cls).parameters.items()}
        row = f"{spec.name} [{', '.join(_show(a) for a in args)}]"
        for key, value in written.items():
            if value == c or (ctx.width and value == round(c / ctx.width)):  # a width where a hyperparameter stands
                fix = our_row(f, n, spec.name, compact(spec, {k: v for k, v in kwargs.items() if k != key}))
                raise ConfigError(f"{ctx.where}: {row}: {key}={value!r} ({e}); {value} is this layer's width: did you "
                                  f"mean the output width? {spec.name} takes its channels from the 'from' layer: write "
                                  f"{fix} ({key} {defaults.get(key)!r}) or set {key} by name") from None
        raise ConfigError(f"{ctx.where}: {row}: {e}") from None
    except Exception:  # noqa: BLE001  (some modules cannot be built on the meta device: built for real to tell)
        try:
            spec.cls(c, **kwargs)
        except Exception as e:  # noqa: BLE001  a value of the row the constructor refuses: say which, before the
            # other projects' readings are compared (a row of values no reading builds is not a dialect question)
            raise ConfigError(f"{ctx.where}: {build_failure(spec.name, spec.cls, [c], kwargs, e)}") from None


def _default_form(spec: LayerSpec) -> str:
    return inspect.signature(spec.cls).parameters["form"].default


def _show(a) -> str:
    return flow(a)


def explain_foreign(spec: LayerSpec, args: list, ctx: RowContext, readings: tuple[Reading, ...], f, n,
                    ours: str) -> None:
    """A row of our own name that fails in our reading: raise saying how the other projects that accept it read it."""
    c = ctx.c_from[0]
    built = []
    for r in readings:
        try:
            built.append((r, r.translate(list(args), ctx).kwargs, ""))
        except NoEquivalent as e:
            built.append((r, None, str(e)))
        except ConfigError:
            continue
    if not built:
        raise ConfigError(f"{ours} (no other project this one knows reads the row either)")
    ways = "; ".join(f"{_way(spec, c, rs, kw, text, f, n)} ({spec.name} {rs[0].convention})"
                     for rs, kw, text in _grouped(spec, c, built))
    raise ConfigError(f"{ours}. Other projects read it: {ways}")
