"""What the parser asks for every row: a name and its arguments -> the spec to build and the arguments in our form.

The dialect layer wraps the registry. A registered name is read this project's way, checked against the other
projects' readings of the same row (:mod:`models.dialects.rivals`: a warning naming each different module, or a
refusal where a written value means another hyperparameter there), unless the model YAML's ``dialect:`` names a
project whose reading of the name is registered. Another project's name is read by each of its readings (those of
the ``dialect:`` when it names one): a row valid in exactly one translation is built with the translation in the
layer table, while a row two projects read differently, or none can read, is a :class:`ConfigError` showing the row
in our form. Other projects' block names build our block or answer with the row to write; names neither registered
nor known fail with what this layer knows of them (another project's module we lack, the closest names).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from models.dialects import aliases, blocks, known, own  # noqa: F401  (importing them fills FOREIGN)
from models.dialects.blocks import block_hint
from models.dialects.names import DIALECTS, FOREIGN, Alias, NoEquivalent
from models.dialects.readings import our_row
from models.dialects.rivals import check_ours, compact, dialect_edit, params_of, sources
from models.registry.values import flow
from models.registry import LAYERS, ConfigError, LayerSpec, RowContext


@dataclass(frozen=True)
class Resolved:
    """What a row's name resolves to: the spec to build, the arguments in our form, notes for the layer table."""

    spec: LayerSpec
    args: list
    notes: tuple[str, ...] = ()
    shown: str = ""  # the layer-table name when it differs from the row's, e.g. "SEAttention -> SE"
    warnings: tuple[str, ...] = ()  # how other projects' reading of the row differs (printed as warnings)


def resolves(name) -> bool:
    """Whether a YAML row may use ``name``: a registered name, or another project's name for a module or block here."""
    if name in LAYERS or FOREIGN.alias_of(name) is not None:
        return True
    block = FOREIGN.block_of(name)
    return block is not None and bool(block.target)


def model_dialect(model, where: str = "<model>") -> str | None:
    """The model YAML's ``dialect:`` (checked), None when it names none."""
    dialect = model.get("dialect") if isinstance(model, dict) else None
    if dialect is not None and dialect not in DIALECTS:
        known_ = "; ".join(f"{k}: {v}" for k, v in DIALECTS.items())
        raise ConfigError(f"{where}: dialect must be one of {', '.join(DIALECTS)} (the project whose conventions the "
                          f"rows follow), got {dialect!r}. {known_}")
    return dialect


def resolve(name: str, args: list, ctx: RowContext, f=-1, n=1) -> Resolved:
    """A row's name and arguments -> :class:`Resolved`. ``f`` and ``n`` are the row's, for rows shown in our form.

    Raises KeyError (with :func:`unknown_message`) for a name that does not resolve, :class:`ConfigError` for a row
    that cannot be read.
    """
    dialect = model_dialect(ctx.model, ctx.where.rsplit(": layer", 1)[0])
    if name in LAYERS:
        spec = LAYERS.get(name)
        readings = FOREIGN.readings_of(name)
        if spec.kind == "attention" and (not readings or dialect == "native"):
            check_ours(spec, args, ctx, (), f, n)  # our reading and the values, nothing to compare with
        if not readings or spec.kind != "attention" or dialect == "native":
            return Resolved(spec, list(args))
        if dialect:
            chosen = tuple(r for r in readings if dialect in r.dialects)
            if chosen:
                return _translated(Alias(name, name, chosen), spec, args, ctx, f, n)
            return Resolved(spec, list(args))
        return Resolved(spec, list(args), warnings=check_ours(spec, args, ctx, readings, f, n))
    alias = FOREIGN.alias_of(name)
    if alias is not None:
        chosen = tuple(r for r in alias.readings if dialect in r.dialects) if dialect else ()
        if chosen:  # the others' mentions (a module with no equivalent here) are not this YAML's
            alias = Alias(alias.name, alias.target, chosen, alias.note)
        return _translated(alias, LAYERS.get(alias.target), args, ctx, f, n)
    block = FOREIGN.block_of(name)
    if block is not None and block.target:
        spec = LAYERS.get(block.target)
        return Resolved(spec, list(args), (f"{name} is {block.source}'s name for this project's {spec.name}",),
                        f"{name} -> {spec.name}", (f"{ctx.where}: {block.warning}",) if block.warning else ())
    raise KeyError(unknown_message(name, args))


def _translated(alias: Alias, spec: LayerSpec, args: list, ctx: RowContext, f, n) -> Resolved:
    head = f"{ctx.where}: {alias.name} [{', '.join(flow(a) for a in args)}]"
    forms, failed, mentions = _read(spec, alias.readings, args, ctx)
    if not forms and mentions:
        raise ConfigError(f"{head}: " + "; ".join(f"{r.source}: {text}" for r, text in mentions))
    if not forms:
        why = "; ".join(f"{r.source} reads it as {alias.name} {r.convention}: {e}" for r, e in failed)
        raise ConfigError(f"{head} cannot be read: {why}. In this project's form the row is "
                          f"{our_row(f, n, spec.name, {})} (defaults) or with hyperparameters by name, "
                          f"e.g. {our_row(f, n, spec.name, _example(spec))}")
    if len(forms) > 1:
        say = ("Say which project the YAML follows with `dialect:`, or write" if any(
            r.dialects for group in forms.values() for r, _ in group) else "Write")
        raise ConfigError(f"{head} means different modules in the projects that use the name: "
                          f"{_ways(alias.name, spec, forms, ctx, f, n)}. {say} the row you mean in this project's form")
    group = next(iter(forms.values()))
    (r, t), by = group[0], sources(r for r, _ in group)
    same = alias.name == alias.target
    notes = (f"{alias.name} {'read as' if same else 'is'} {by}'s {alias.name} {r.convention}: here "
             f"{our_row(f, n, spec.name, compact(spec, t.kwargs, ctx.c_from[0]))}", *t.notes)
    differs = [f"it differs from {by}'s: {alias.note}"] if alias.note else []
    differs += [f"{m.source} means another module: {text}" for m, text in mentions]
    warnings = (f"{head} is built as {by}'s ({our_row(f, n, spec.name, compact(spec, t.kwargs, ctx.c_from[0]))}); "
                + "; ".join(differs),) if differs else ()
    shown = f"{alias.name} ({by})" if same else f"{alias.name} -> {spec.name}"
    return Resolved(spec, [dict(t.kwargs)] if t.kwargs else [], notes, shown, warnings)


def _read(spec: LayerSpec, readings, args: list, ctx: RowContext):
    """Each reading's translation of ``args``: ({our form: [(reading, translation)]}, [(reading, why not)],
    [(reading, what its module is)] for readings whose module has no equivalent here)."""
    forms: dict[str, list] = {}
    failed, mentions = [], []
    for r in readings:
        try:
            t = r.translate(list(args), ctx)
        except NoEquivalent as e:
            mentions.append((r, str(e)))
            continue
        except ConfigError as e:
            failed.append((r, str(e)))
            continue
        forms.setdefault(_normal(spec, t.kwargs), []).append((r, t))
    return forms, failed, mentions


def _ways(name: str, spec: LayerSpec, forms: dict, ctx: RowContext, f, n) -> str:
    out = []
    for group in forms.values():
        readings = [r for r, _ in group]
        kwargs = compact(spec, group[0][1].kwargs, ctx.c_from[0])
        count = params_of(spec, ctx.c_from[0], kwargs)
        out.append(f"{sources(readings)} ({name} {readings[0].convention}): "
                   f"{f'{count:,} parameters, ' if count is not None else ''}{our_row(f, n, spec.name, kwargs)}"
                   f"{dialect_edit(readings)}")
    return "; ".join(out)


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
    extra = {a.name: a.target for a in FOREIGN.aliases()}
    extra.update({b.name: b.target for b in FOREIGN.blocks() if b.target})
    return LAYERS.closest(name, n, extra=extra)


def describe(name: str) -> str:
    """A suggested name as a hint shows it: another project's name with the module it means."""
    alias = FOREIGN.alias_of(name) or FOREIGN.block_of(name)
    return f"{name} (= {alias.target})" if alias else name


def unknown_message(name, args: list | None = None) -> str:
    alias = FOREIGN.alias_of(name)
    if alias is not None:
        return (f"'{name}' is another project's name for {alias.target} ({alias.sources}); write {alias.target} here "
                "(other projects' names are read in model YAML rows only)")
    hint = block_hint(name, args)
    if hint is not None:
        return hint
    mod = FOREIGN.known_module(name)
    if mod is not None:
        what = f" ({mod.what})" if mod.what else ""
        instead = f"; closest here: {mod.instead}" if mod.instead else ""
        return f"'{name}' is a known module from {mod.source}{what}, not provided here{instead}"
    close = closest(name)
    hint = f" Did you mean: {', '.join(describe(c) for c in close)}?" if close else ""
    return f"unknown {LAYERS.what} '{name}'.{hint} All names: docs/modules.md, docs/aliases.md"


def unknown_rows_message(source: str, rows: list[tuple]) -> str:
    """One message for every row whose name is neither registered nor another project's name for a module here;
    ``rows``: (index, name) or (index, name, arguments)."""
    by_name: dict[str, list] = {}
    for i, name, *rest in rows:  # one line per name: the layers that use it, the message for its first row
        by_name.setdefault(name, []).append((i, rest))
    lines = [f"layer{'s' if len(uses) > 1 else ''} {', '.join(str(i) for i, _ in uses)} ({name}): "
             f"{unknown_message(name, *uses[0][1])}" for name, uses in by_name.items()]
    if len(rows) == 1:
        return f"{source}: {lines[0]}"
    return f"{source}: {len(rows)} layer names are not provided here:\n  " + "\n  ".join(lines)


def check_names(rows: list, source: str) -> None:
    """Every row's module name must resolve; all that do not are reported at once (typos with the closest names)."""
    unknown = [(i, row[2], row[3] if isinstance(row[3], list) else None) for i, row in enumerate(rows)
               if isinstance(row, (list, tuple)) and len(row) == 4 and isinstance(row[2], str) and not resolves(row[2])]
    if unknown:
        raise ConfigError(unknown_rows_message(source, unknown))


if unknown_message not in LAYERS.explainers:  # a block's attention name (C3Att [256, SEAttention]) explained too
    LAYERS.explainers.append(unknown_message)
