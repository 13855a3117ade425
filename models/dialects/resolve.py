"""What the parser asks for every row: a name and its arguments -> the spec to build and the arguments in our form.

The dialect layer wraps the registry: a registered name keeps its arguments (unless the model YAML's ``dialect:``
names a project whose reading of that name is registered); another project's name is read by each of its readings,
and a row valid in exactly one translation is built with the translation in the layer table, while a row two
projects read differently, or none can read, is a :class:`ConfigError` showing the row in our form. Names neither
registered nor aliased fail with what this layer knows of them (another project's module we lack, the closest names).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from models.dialects import aliases, known  # noqa: F401  (importing them fills FOREIGN)
from models.dialects.names import DIALECTS, FOREIGN, Alias
from models.dialects.readings import our_row
from models.registry.values import flow
from models.registry import LAYERS, ConfigError, LayerSpec, RowContext, attention_arguments


@dataclass(frozen=True)
class Resolved:
    """What a row's name resolves to: the spec to build, the arguments in our form, notes for the layer table."""

    spec: LayerSpec
    args: list
    notes: tuple[str, ...] = ()
    shown: str = ""  # the layer-table name when it differs from the row's, e.g. "SEAttention -> SE"


def resolves(name) -> bool:
    """Whether a YAML row may use ``name``: a registered name or another project's name for one."""
    return name in LAYERS or FOREIGN.alias_of(name) is not None


def resolve(name: str, args: list, ctx: RowContext, f=-1, n=1) -> Resolved:
    """A row's name and arguments -> :class:`Resolved`. ``f`` and ``n`` are the row's, for rows shown in our form.

    Raises KeyError (with :func:`unknown_message`) for a name that does not resolve, :class:`ConfigError` for a row
    that cannot be read.
    """
    dialect = ctx.model.get("dialect") if isinstance(ctx.model, dict) else None
    if dialect is not None and dialect not in DIALECTS:
        raise ConfigError(f"{ctx.where.rsplit(': layer', 1)[0]}: dialect must be one of {', '.join(DIALECTS)} "
                          f"(how rows with this project's names are read), got {dialect!r}")
    if name in LAYERS:
        spec = LAYERS.get(name)
        readings = FOREIGN.readings_of(name)
        ours = [r for r in readings if dialect and r.dialect == dialect]
        if ours:
            return _translated(Alias(name, name, tuple(ours)), spec, args, ctx, f, n)
        if readings and spec.kind == "attention":
            _explain_foreign(spec, args, ctx, f, n)
        return Resolved(spec, list(args))
    alias = FOREIGN.alias_of(name)
    if alias is None:
        raise KeyError(unknown_message(name))
    return _translated(alias, LAYERS.get(alias.target), args, ctx, f, n)


def _translated(alias: Alias, spec: LayerSpec, args: list, ctx: RowContext, f, n) -> Resolved:
    head = f"{ctx.where}: {alias.name} [{', '.join(flow(a) for a in args)}]"
    forms, failed = _read(spec, alias.readings, args, ctx)
    if not forms:
        why = "; ".join(f"{r.source} reads it as {alias.name} {r.convention}: {e}" for r, e in failed)
        raise ConfigError(f"{head} cannot be read: {why}. In this project's form the row is "
                          f"{our_row(f, n, spec.name, {})} (defaults) or with hyperparameters by name, "
                          f"e.g. {our_row(f, n, spec.name, _example(spec))}")
    if len(forms) > 1:
        raise ConfigError(f"{head} means different modules in the projects that use the name: "
                          f"{_ways(alias.name, spec, forms, f, n)}. Write the row you mean in this project's form")
    group = next(iter(forms.values()))
    (r, t), sources = group[0], "/".join(dict.fromkeys(r.source for r, _ in group))
    same = alias.name == alias.target
    notes = (f"{alias.name} {'read as' if same else 'is'} {sources}'s {alias.name} {r.convention}: here "
             f"{our_row(f, n, spec.name, _compact(spec, t.kwargs))}", *t.notes, *([alias.note] if alias.note else []))
    shown = f"{alias.name} ({sources})" if same else f"{alias.name} -> {spec.name}"
    return Resolved(spec, [dict(t.kwargs)] if t.kwargs else [], notes, shown)


def _read(spec: LayerSpec, readings, args: list, ctx: RowContext):
    """Each reading's translation of ``args``: ({our form: [(reading, translation)]}, [(reading, why not)])."""
    forms: dict[str, list] = {}
    failed = []
    for r in readings:
        try:
            t = r.translate(list(args), ctx)
        except ConfigError as e:
            failed.append((r, str(e)))
            continue
        forms.setdefault(_normal(spec, t.kwargs), []).append((r, t))
    return forms, failed


def _ways(name: str, spec: LayerSpec, forms: dict, f, n) -> str:
    return "; ".join(f"{'/'.join(dict.fromkeys(r.source for r, _ in group))} ({name} {group[0][0].convention}): "
                     f"{our_row(f, n, spec.name, group[0][1].kwargs)}" for group in forms.values())


def _explain_foreign(spec: LayerSpec, args: list, ctx: RowContext, f, n) -> None:
    """A row of our own attention name that fails in our reading: say how the other projects read it."""
    try:
        attention_arguments(spec, args, ctx.c_from[0], ctx.where, ctx.width, ctx.max_channels)
        return
    except ConfigError as e:
        ours = str(e).rstrip(".")
    hints = []
    by_dialect: dict[str, list] = {}
    for r in FOREIGN.readings_of(spec.name):
        by_dialect.setdefault(r.dialect, []).append(r)
    for dialect, readings in by_dialect.items():
        forms, failed = _read(spec, readings, args, ctx)
        source = "/".join(dict.fromkeys(r.source for r in readings))
        if len(forms) == 1:
            (r, t) = next(iter(forms.values()))[0]
            key = f" (`dialect: {dialect}` in the model YAML reads its rows so)" if dialect else ""
            hints.append(f"{source} reads it ({spec.name} {r.convention}) as "
                         f"{our_row(f, n, spec.name, _compact(spec, t.kwargs))}{key}")
        elif forms:
            hints.append(f"{source}'s sources read it differently: {_ways(spec.name, spec, forms, f, n)}")
        else:
            hints.append("; ".join(f"{r.source} ({spec.name} {r.convention}): {e}" for r, e in failed))
    raise ConfigError(f"{ours}. Other projects: " + "; ".join(hints))


def _compact(spec: LayerSpec, kwargs: dict) -> dict:
    """Translated keywords without those equal to the target's defaults (what a rewritten row needs to say)."""
    params = inspect.signature(spec.cls).parameters
    return {k: v for k, v in kwargs.items() if k not in params or params[k].default != v
            or type(params[k].default) is not type(v)}


def _normal(spec: LayerSpec, kwargs: dict) -> str:
    """Translated keywords with the target's defaults filled in, as a comparable key."""
    params = inspect.signature(spec.cls).parameters
    full = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    full.update({spec.renamed.get(k, k): v for k, v in kwargs.items()})
    return repr(sorted((k, repr(v)) for k, v in full.items()))


def _example(spec: LayerSpec) -> dict:
    params = [p for p in list(inspect.signature(spec.cls).parameters.values())[1:]
              if p.default is not inspect.Parameter.empty]
    return {params[0].name: params[0].default} if params else {}


# ----------------------------------------------------------------------------------------------------------------------
# Names that do not resolve


def closest(name, n: int = 5) -> list[str]:
    """Up to ``n`` registered names and other projects' names closest to ``name``, best first."""
    return LAYERS.closest(name, n, extra={a.name: a.target for a in FOREIGN.aliases()})


def describe(name: str) -> str:
    """A suggested name as a hint shows it: another project's name with the module it means."""
    alias = FOREIGN.alias_of(name)
    return f"{name} (= {alias.target})" if alias else name


def unknown_message(name) -> str:
    alias = FOREIGN.alias_of(name)
    if alias is not None:
        return (f"'{name}' is {alias.sources}'s name for {alias.target}; write {alias.target} here (other projects' "
                "names are read in model YAML rows only)")
    mod = FOREIGN.known_module(name)
    if mod is not None:
        what = f" ({mod.what})" if mod.what else ""
        instead = f"; closest here: {mod.instead}" if mod.instead else ""
        return f"'{name}' is a known module from {mod.source}{what}, not provided here{instead}"
    close = closest(name)
    hint = f" Did you mean: {', '.join(describe(c) for c in close)}?" if close else ""
    return f"unknown {LAYERS.what} '{name}'.{hint} All names: docs/modules.md, docs/aliases.md"


def unknown_rows_message(source: str, rows: list[tuple[int, str]]) -> str:
    """One message for every row whose name is neither registered nor another project's name for a module here."""
    lines = [f"layer {i} ({name}): {unknown_message(name)}" for i, name in rows]
    if len(lines) == 1:
        return f"{source}: {lines[0]}"
    return f"{source}: {len(lines)} layer names are not provided here:\n  " + "\n  ".join(lines)


def check_names(rows: list, source: str) -> None:
    """Every row's module name must resolve; all that do not are reported at once (typos with the closest names)."""
    unknown = [(i, row[2]) for i, row in enumerate(rows) if isinstance(row, (list, tuple)) and len(row) == 4
               and isinstance(row[2], str) and not resolves(row[2])]
    if unknown:
        raise ConfigError(unknown_rows_message(source, unknown))


if unknown_message not in LAYERS.explainers:  # a block's attention name (C3Att [256, SEAttention]) explained too
    LAYERS.explainers.append(unknown_message)
