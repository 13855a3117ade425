"""The layer contract: YAML names, how a row's arguments bind to a class, and the errors a bad row gets.

This is the bottom of the model side. A YAML row names a layer by string; the parser resolves it here
and nowhere else (no ``eval``, no module globals). Making a class placeable from a YAML is one
decorator on the class. Everything a row's arguments must satisfy lives here too, so the parser, the
blocks that take an attention module by name (``C3Att``, ``ResidualBlend``) and the insertion tool bind
arguments the same way and fail with the same :class:`ConfigError`:

- :func:`bind_arguments`: YAML arguments against the class signature (old hyperparameter names renamed,
  with a note), one error type naming the layer and what the class accepts;
- :func:`scaled_width`: the nominal-width rule (a YAML's channel count times ``width_multiple``, capped
  by ``max_channels``, rounded to a multiple of 8);
- :func:`attention_arguments`: an attention row's optional first argument checked against its real
  input width.

The registry imports the places that register into it the first time it is asked for a name
(:data:`LOCATIONS`, as mmengine's registries do), so ``LAYERS.get("CBAM")`` works after importing this
module alone, and nothing below the parser ever imports the parser.

Names from other projects (YOLOAir, External-Attention-pytorch, objectdetection_script) are registered too, as
:class:`Alias` entries (``models/dialects/aliases.py``): a foreign name, the module it means here, and one :class:`Reading`
per source project, which reads a row's arguments the way that project does and translates them into ours. The
parser asks :meth:`Registry.resolve` for every row; modules other projects have and this one lacks are
:class:`KnownModule` entries, so that their names fail as "not provided" rather than as typos.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ultralytics.utils.ops import make_divisible

# Modules whose import registers layers, imported on the first look-up (order: blocks the others build on first).
LOCATIONS = (
    "models.layers.blocks",
    "models.layers.yolov7",
    "models.attention",
    "models.layers.attention_blocks",
    "models.heads.anchor",
    "models.dialects.aliases",  # names other projects use for the modules above; last: they name registered modules
)

KINDS = ("attention", "conv", "repeat", "concat", "head", "passthrough", "norm", "custom")


class ConfigError(ValueError):
    """A model YAML that cannot be built; the message names the file, the layer and the argument."""


@dataclass(frozen=True)
class RowContext:
    """What a layer's own argument rule (:attr:`LayerSpec.make_args`) may read about its row."""

    c_from: list[int]  # channels of each 'from' input
    model: dict  # the whole model dict (nc, anchors, hyp, reg_max, ...)
    width: float = 1.0  # width_multiple
    max_channels: float = float("inf")
    where: str = "<row>"  # "file: layer i (Name)", for messages


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class LayerSpec:
    """How the parser treats one registered layer type.

    kind:
        ``attention``: shape-preserving, ``cls(c_in, *hyperparameters)``; output channels = input channels.
        ``conv``: ``cls(c1, c2, *rest)``; the YAML's first argument is the nominal output width (scaled).
        ``repeat``: like ``conv`` with the repeat count inserted as the third argument.
        ``concat``: output channels are the sum of the inputs.
        ``head``: detection head; :attr:`make_args` turns the row into constructor arguments.
        ``passthrough``: output channels equal input channels, arguments passed as written.
        ``norm``: ``cls(c_in)``, shape-preserving.
        ``custom``: :attr:`make_args` gives the constructor arguments and the output channels.
    """

    name: str
    cls: type
    kind: str
    # Parser hooks (None / False: not used)
    make_args: Callable[[list, RowContext], tuple[list, int | None]] | None = None
    # one YAML name, several classes: (args, model dict) -> registered name (Detect [nc, anchors] -> AnchorDetect;
    # Bottleneck in a YAML without 'scales:' -> yolov5.Bottleneck)
    dispatch: Callable[[list, dict], str] | None = None
    post_build: Callable[[Any, list], None] | None = None  # adjust the built module (e.g. SPPF's YOLOv5 activation)
    shape_preserving: bool = False  # may be inserted anywhere (attention, norms, wrappers)
    legacy: bool | None = None  # value of the head class's ``legacy`` flag while building (ultralytics Detect)
    renamed: Mapping[str, str] = field(default_factory=dict)  # old hyperparameter name -> current name
    # Attention metadata (only for kind 'attention')
    category: str = ""
    paper: str = ""
    arxiv: str = ""
    year: int = 0
    placement: str = "backbone_end"  # backbone_end | p5 | neck_outputs
    dense: bool = False  # builds an N x N (or similar) attention map
    onnx_dynamic: bool = True  # exports with dynamic H and W
    onnx_note: str = ""  # why not, when onnx_dynamic is False
    notes: str = ""  # where popular ports differ / departures from the paper
    forms: tuple[str, ...] = ()  # values of the class's ``form`` argument (official code / paper / named variants)
    config_name: str = ""  # file-name tag of configs/yolov5-<tag>.yaml (default: the name in lower case)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"layer '{self.name}': unknown kind '{self.kind}'; kinds are {', '.join(KINDS)}")
        if self.kind in ("head", "custom") and self.make_args is None:
            raise ValueError(f"layer '{self.name}': kind '{self.kind}' needs make_args")
        object.__setattr__(self, "renamed", _frozen(self.renamed))
        if self.kind in ("attention", "norm"):
            object.__setattr__(self, "shape_preserving", True)

    @property
    def tag(self) -> str:
        """File-name tag of the module's config: ``configs/yolov5-<tag>.yaml``."""
        return self.config_name or self.name.lower()


@dataclass(frozen=True)
class Translation:
    """A row's arguments translated into this project's form: keyword hyperparameters of the target module."""

    kwargs: dict
    notes: tuple[str, ...] = ()  # what the reading decided on the way (shown under the row on build)


@dataclass(frozen=True)
class Reading:
    """How one source project reads the arguments of a row with a given name, and their translation to ours.

    translate(args, ctx) gets the row's arguments (values parsed, nothing translated yet) and the row's context
    (input channels, width_multiple); it returns the target module's keyword hyperparameters, or raises
    :class:`ConfigError` saying why the row is not valid in that project (which is then not a reading of the row).
    """

    source: str  # "YOLOAir", "EAP" (External-Attention-pytorch), "ODS" (objectdetection_script), ...
    convention: str  # the source's row form, e.g. "[c2 (nominal: x width_multiple), reduction=16]"
    translate: Callable[[list, RowContext], Translation]
    dialect: str = ""  # the model YAML's `dialect:` value under which this reading applies to one of our own names
    example: tuple = ()  # a row's arguments this reading accepts after 1024 nominal (512 real) channels at width 0.5


@dataclass(frozen=True)
class Alias:
    """A name another project uses for one of our modules, with one reading per project that uses it."""

    name: str
    target: str  # the registered name it means
    readings: tuple[Reading, ...]
    note: str = ""  # where the source's module differs from ours in structure (shown under the row on build)

    @property
    def sources(self) -> str:
        return "/".join(dict.fromkeys(r.source for r in self.readings))


@dataclass(frozen=True)
class KnownModule:
    """A module another project places from its YAMLs and this one does not provide."""

    name: str
    source: str  # "YOLOAir", "YOLOv7", "EAP", "ODS", ...
    what: str = ""  # what it is, in a few words
    instead: str = ""  # the closest module here, when there is one


@dataclass(frozen=True)
class Resolved:
    """What a row's name resolves to: the spec to build, the arguments in our form, notes for the layer table."""

    spec: LayerSpec
    args: list
    notes: tuple[str, ...] = ()
    shown: str = ""  # the layer-table name when it differs from the row's, e.g. "SEAttention -> SE"


DIALECTS = ("yoloair", "ods")  # values of a model YAML's `dialect:` key (how rows with our own names are read)


def flow(v) -> str:
    """A value in YAML flow style, as a row would write it: {reduction: 8}, 'att', true, [1, 3]."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(flow(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        return f"'{v}'"
    return f"{v:g}" if isinstance(v, float) else str(v)


def our_row(f, n, name: str, kwargs: dict) -> str:
    """A row in this project's form: [from, number, module, [{hyperparameters}]] (channels come from 'from')."""
    return f"[{flow(f)}, {n}, {name}, [{flow(kwargs) if kwargs else ''}]]"


class Registry:
    """A mapping from YAML names to :class:`LayerSpec`; imports ``locations`` on the first look-up."""

    def __init__(self, what: str, locations: tuple[str, ...] = ()):
        self.what = what
        self.locations = locations
        self._specs: dict[str, LayerSpec] = {}
        self._aliases: dict[str, Alias] = {}  # foreign names of registered modules
        self._readings: dict[str, tuple[Reading, ...]] = {}  # foreign readings of rows with our own names
        self._known: dict[str, KnownModule] = {}  # foreign modules not provided here
        self._state = "empty"  # empty -> loading -> loaded

    # -- registration --------------------------------------------------------------------------------------------------

    def register(self, name: str | None = None, *, kind: str, **fields) -> Callable[[type], type]:
        """Class decorator: register ``cls`` under ``name`` (default: the class name)."""

        def deco(cls: type) -> type:
            key = name or cls.__name__
            old = self._specs.get(key)
            if old is not None and old.cls is not cls:
                raise KeyError(f"{self.what} name '{key}' is already registered by {old.cls!r}")
            self._specs[key] = LayerSpec(name=key, cls=cls, kind=kind, **fields)
            return cls

        return deco

    def add(self, cls: type, *, kind: str, name: str | None = None, **fields) -> None:
        self.register(name, kind=kind, **fields)(cls)

    def alias(self, name: str, target: str, *readings: Reading, note: str = "") -> None:
        """Register ``name`` (another project's) for the registered ``target``, read as ``readings`` say.

        With ``name == target`` the readings are how other projects read rows of our own name: they apply under
        the model YAML's ``dialect:`` key and explain a row that fails in our reading.
        """
        if not readings:
            raise ValueError(f"alias '{name}': give at least one reading")
        if name == target:
            self._readings[name] = self._readings.get(name, ()) + tuple(readings)
            return
        if name in self._aliases:
            raise KeyError(f"alias '{name}' is already registered (for {self._aliases[name].target})")
        self._aliases[name] = Alias(name, target, tuple(readings), note)

    def known(self, name: str, source: str, what: str = "", instead: str = "") -> None:
        """Record ``name`` as a module of ``source`` that is not provided here (reported as such, not as a typo)."""
        old = self._known.get(name)
        self._known[name] = KnownModule(name, f"{old.source}/{source}" if old else source, what or (old and old.what)
                                        or "", instead or (old and old.instead) or "")

    # -- look-up -------------------------------------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if self._state != "empty":
            return  # loaded, or a location is importing right now (its own registrations need no look-up)
        self._state = "loading"
        try:
            for location in self.locations:
                importlib.import_module(location)
        except BaseException:
            self._state = "empty"
            raise
        self._state = "loaded"

    def get(self, name: str) -> LayerSpec:
        """The spec registered as ``name``; aliases are not followed (their arguments need :meth:`resolve`)."""
        self._ensure_loaded()
        try:
            return self._specs[name]
        except (KeyError, TypeError):
            raise KeyError(self.unknown_message(name)) from None

    def resolves(self, name) -> bool:
        """Whether a YAML row may use ``name``: a registered name or an alias."""
        self._ensure_loaded()
        return isinstance(name, str) and (name in self._specs or name in self._aliases)

    def resolve(self, name: str, args: list, ctx: RowContext, f=-1, n=1) -> Resolved:
        """A row's name and arguments -> the spec to build and the arguments in our form.

        A registered name keeps its arguments, unless the model dict's ``dialect:`` names a project whose reading
        of that name is registered; an alias is read by each of its readings: rows valid in exactly one
        translation are translated, rows two projects read differently or none can read raise
        :class:`ConfigError` with the row written in our form. ``f`` and ``n`` are the row's, for those rewrites.
        """
        self._ensure_loaded()
        dialect = ctx.model.get("dialect") if isinstance(ctx.model, dict) else None
        if dialect is not None and dialect not in DIALECTS:
            raise ConfigError(f"{ctx.where.rsplit(': layer', 1)[0]}: dialect must be one of {', '.join(DIALECTS)} "
                              f"(how rows with this project's names are read), got {dialect!r}")
        if name in self._specs:
            spec = self._specs[name]
            ours = [r for r in self._readings.get(name, ()) if dialect and r.dialect == dialect]
            if ours:
                return self._translated(Alias(name, name, tuple(ours)), spec, args, ctx, f, n)
            if self._readings.get(name) and spec.kind == "attention":
                self._explain_foreign(spec, args, ctx, f, n)
            return Resolved(spec, list(args))
        alias = self._aliases.get(name)
        if alias is None:
            raise KeyError(self.unknown_message(name))
        return self._translated(alias, self._specs[alias.target], args, ctx, f, n)

    def _translated(self, alias: Alias, spec: LayerSpec, args: list, ctx: RowContext, f, n) -> Resolved:
        head = f"{ctx.where}: {alias.name} [{', '.join(flow(a) for a in args)}]"
        forms, failed = self._read(spec, alias.readings, args, ctx)
        if not forms:
            why = "; ".join(f"{r.source} reads it as {alias.name} {r.convention}: {e}" for r, e in failed)
            raise ConfigError(f"{head} cannot be read: {why}. In this project's form the row is "
                              f"{our_row(f, n, spec.name, {})} (defaults) or with hyperparameters by name, "
                              f"e.g. {our_row(f, n, spec.name, self._example(spec))}")
        if len(forms) > 1:
            raise ConfigError(f"{head} means different modules in the projects that use the name: "
                              f"{self._ways(alias.name, spec, forms, f, n)}. Write the row you mean in this "
                              "project's form")
        group = next(iter(forms.values()))
        (r, t), sources = group[0], "/".join(dict.fromkeys(r.source for r, _ in group))
        same = alias.name == alias.target
        notes = (f"{alias.name} {'read as' if same else 'is'} {sources}'s {alias.name} {r.convention}: here "
                 f"{our_row(f, n, spec.name, self._compact(spec, t.kwargs))}", *t.notes,
                 *([alias.note] if alias.note else []))
        shown = f"{alias.name} ({sources})" if same else f"{alias.name} -> {spec.name}"
        return Resolved(spec, [dict(t.kwargs)] if t.kwargs else [], notes, shown)

    def _read(self, spec: LayerSpec, readings, args: list, ctx: RowContext):
        """Each reading's translation of ``args``: ({our form: [(reading, translation)]}, [(reading, why not)])."""
        forms: dict[str, list] = {}
        failed = []
        for r in readings:
            try:
                t = r.translate(list(args), ctx)
            except ConfigError as e:
                failed.append((r, str(e)))
                continue
            forms.setdefault(self._normal(spec, t.kwargs), []).append((r, t))
        return forms, failed

    def _ways(self, name: str, spec: LayerSpec, forms: dict, f, n) -> str:
        return "; ".join(f"{'/'.join(dict.fromkeys(r.source for r, _ in group))} ({name} {group[0][0].convention}): "
                         f"{our_row(f, n, spec.name, group[0][1].kwargs)}" for group in forms.values())

    def _explain_foreign(self, spec: LayerSpec, args: list, ctx: RowContext, f, n) -> None:
        """A row of our own attention name that fails in our reading: say how the other projects read it."""
        try:
            attention_arguments(spec, args, ctx.c_from[0], ctx.where, ctx.width, ctx.max_channels)
            return
        except ConfigError as e:
            ours = str(e).rstrip(".")
        hints = []
        by_dialect: dict[str, list[Reading]] = {}
        for r in self._readings[spec.name]:
            by_dialect.setdefault(r.dialect, []).append(r)
        for dialect, readings in by_dialect.items():
            forms, failed = self._read(spec, readings, args, ctx)
            source = "/".join(dict.fromkeys(r.source for r in readings))
            if len(forms) == 1:
                (r, t) = next(iter(forms.values()))[0]
                key = f" (`dialect: {dialect}` in the model YAML reads its rows so)" if dialect else ""
                hints.append(f"{source} reads it ({spec.name} {r.convention}) as "
                             f"{our_row(f, n, spec.name, self._compact(spec, t.kwargs))}{key}")
            elif forms:
                hints.append(f"{source}'s sources read it differently: {self._ways(spec.name, spec, forms, f, n)}")
            else:
                hints.append("; ".join(f"{r.source} ({spec.name} {r.convention}): {e}" for r, e in failed))
        raise ConfigError(f"{ours}. Other projects: " + "; ".join(hints))

    @staticmethod
    def _compact(spec: LayerSpec, kwargs: dict) -> dict:
        """Translated keywords without those equal to the target's defaults (what a rewritten row needs to say)."""
        params = inspect.signature(spec.cls).parameters
        return {k: v for k, v in kwargs.items() if k not in params or params[k].default != v
                or type(params[k].default) is not type(v)}

    @staticmethod
    def _normal(spec: LayerSpec, kwargs: dict) -> str:
        """Translated keywords with the target's defaults filled in, as a comparable key."""
        params = inspect.signature(spec.cls).parameters
        full = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
        full.update({spec.renamed.get(k, k): v for k, v in kwargs.items()})
        return repr(sorted((k, repr(v)) for k, v in full.items()))

    @staticmethod
    def _example(spec: LayerSpec) -> dict:
        params = [p for p in list(inspect.signature(spec.cls).parameters.values())[1:]
                  if p.default is not inspect.Parameter.empty]
        return {params[0].name: params[0].default} if params else {}

    def closest(self, name, n: int = 5) -> list[str]:
        """Up to ``n`` registered names and aliases closest to ``name`` (case-insensitive), best first."""
        self._ensure_loaded()
        by_lower: dict[str, str] = {}
        for key in [*self._specs, *self._aliases]:
            by_lower.setdefault(key.lower(), key)
        low = str(name).lower()

        def score(key: str) -> float:  # similarity, with a name that begins the other (CoordAtt, CoordAttention) close
            short, long_ = sorted((key, low), key=len)
            prefix = 0.9 if len(short) >= 4 and long_.startswith(short) else 0.0
            return 2.0 if key == low else max(prefix, difflib.SequenceMatcher(None, low, key).ratio())

        ranked = sorted(by_lower, key=lambda k: -score(k))
        return [by_lower[k] for k in ranked if score(k) >= 0.6][:n]

    def describe(self, name: str) -> str:
        """A suggested name as a hint shows it: aliases with the module they mean."""
        alias = self._aliases.get(name)
        return f"{name} (= {alias.target})" if alias else name

    def unknown_message(self, name) -> str:
        self._ensure_loaded()
        alias = self._aliases.get(name) if isinstance(name, str) else None
        if alias is not None:
            return (f"'{name}' is {alias.sources}'s name for {alias.target}; write {alias.target} here (other "
                    "projects' names are read in model YAML rows only)")
        known = self._known.get(name) if isinstance(name, str) else None
        if known is not None:
            what = f" ({known.what})" if known.what else ""
            instead = f"; closest here: {known.instead}" if known.instead else ""
            return f"'{name}' is a known module from {known.source}{what}, not provided here{instead}"
        close = self.closest(name)
        hint = f" Did you mean: {', '.join(self.describe(c) for c in close)}?" if close else ""
        return f"unknown {self.what} '{name}'.{hint} All names: docs/modules.md, docs/aliases.md"

    def unknown_rows_message(self, source: str, rows: list[tuple[int, str]]) -> str:
        """One message for every row whose name is neither registered nor an alias."""
        lines = [f"layer {i} ({name}): {self.unknown_message(name)}" for i, name in rows]
        if len(lines) == 1:
            return f"{source}: {lines[0]}"
        return f"{source}: {len(lines)} layer names are not provided here:\n  " + "\n  ".join(lines)

    def aliases(self) -> list[Alias]:
        self._ensure_loaded()
        return sorted(self._aliases.values(), key=lambda a: a.name.lower())

    def readings_of(self, name: str) -> tuple[Reading, ...]:
        """Other projects' readings of rows with our own registered name ``name``."""
        self._ensure_loaded()
        return self._readings.get(name, ())

    def known_modules(self) -> list[KnownModule]:
        self._ensure_loaded()
        return sorted((k for k in self._known.values() if k.name not in self._specs and k.name not in self._aliases),
                      key=lambda k: (k.source, k.name.lower()))

    def __contains__(self, name) -> bool:
        self._ensure_loaded()
        return isinstance(name, str) and name in self._specs

    def __iter__(self):
        self._ensure_loaded()
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._specs)

    def names(self, kind: str | None = None) -> list[str]:
        self._ensure_loaded()
        return sorted(k for k, s in self._specs.items() if kind is None or s.kind == kind)

    def specs(self, kind: str | None = None) -> list[LayerSpec]:
        """Registered specs (of one kind), sorted by name."""
        self._ensure_loaded()
        return sorted((s for s in self._specs.values() if kind is None or s.kind == kind), key=lambda s: s.name)


LAYERS = Registry("layer", locations=LOCATIONS)


def register_attention(
    name: str | None = None,
    *,
    category: str,
    paper: str,
    arxiv: str = "",
    year: int = 0,
    placement: str = "backbone_end",
    dense: bool = False,
    onnx_dynamic: bool = True,
    onnx_note: str = "",
    notes: str = "",
    renamed: Mapping[str, str] | None = None,
    forms: tuple[str, ...] = (),
    config_name: str = "",
) -> Callable[[type], type]:
    """Class decorator: make an attention module placeable from a model YAML.

    The class subclasses :class:`models.registry.protocol.AttentionModule`, takes the input channel count as its first
    positional argument, keeps the input shape, and gives its hyperparameters the paper's defaults. ``renamed``
    maps hyperparameter names a module used to accept (or that popular ports use) to the current ones; YAML rows
    may still write them. ``forms`` lists the values of the class's ``form`` argument where a module offers several
    (``"official"``: the official code's forward, checked by the golden tests; ``"paper"``: the paper's equations;
    named variants); the signature's default must be one of them.
    """

    def deco(cls: type) -> type:
        from models.registry.protocol import AttentionModule  # torch-level base class; imported late to keep this file light

        if not (isinstance(cls, type) and issubclass(cls, AttentionModule)):
            raise TypeError(f"@register_attention: {getattr(cls, '__name__', cls)!r} must subclass "
                            "models.registry.protocol.AttentionModule (build notes, init_identity, attention_maps)")
        params = list(inspect.signature(cls).parameters)
        for old, new in (renamed or {}).items():
            if new not in params:
                raise TypeError(f"@register_attention({name or cls.__name__}): renamed {old!r} -> {new!r}, "
                                f"but {cls.__name__} has no parameter {new!r}")
        if forms:
            form = inspect.signature(cls).parameters.get("form")
            if form is None or form.default not in forms or len(set(forms)) != len(forms):
                raise TypeError(f"@register_attention({name or cls.__name__}): forms={forms!r} needs a 'form' parameter "
                                "whose default is one of them (each listed once)")
        return LAYERS.register(
            name, kind="attention", category=category, paper=paper, arxiv=arxiv, year=year, placement=placement,
            dense=dense, onnx_dynamic=onnx_dynamic, onnx_note=onnx_note, notes=notes, renamed=renamed or {},
            forms=tuple(forms), config_name=config_name,
        )(cls)

    return deco


def attention_specs() -> list[LayerSpec]:
    """All registered attention modules, sorted by name."""
    return LAYERS.specs("attention")


# ----------------------------------------------------------------------------------------------------------------------
# Argument binding


def scaled_width(nominal: float, width: float = 1.0, max_channels: float = float("inf")) -> int:
    """The nominal-width rule: a YAML channel count times ``width_multiple``, capped, rounded to a multiple of 8."""
    return make_divisible(min(nominal, max_channels) * width, 8)


def accepted_parameters(cls) -> list[str]:
    """Constructor parameters after the first (the input channels), as a YAML row may name them."""
    return list(inspect.signature(cls).parameters)[1:]


def bind_arguments(cls, args: list, kwargs: dict, where: str, renamed: Mapping[str, str] | None = None,
                   notes: list[str] | None = None) -> dict:
    """Check ``cls(*args, **kwargs)`` against the signature; return the keywords with old names renamed.

    ``renamed`` maps accepted old hyperparameter names to current ones; each rename is added to ``notes``.
    Raises :class:`ConfigError` naming ``where``, the problem and the accepted parameters.
    """
    kwargs = dict(kwargs)
    for old, new in (renamed or {}).items():
        if old in kwargs:
            if new in kwargs:
                raise ConfigError(f"{where}: {cls.__name__} got both '{old}' (the old name) and '{new}'; write '{new}' only")
            kwargs[new] = kwargs.pop(old)
            if notes is not None:
                notes.append(f"'{old}' is the old name of '{new}'")
    try:
        inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as e:
        params = ", ".join(accepted_parameters(cls))
        old = f" (old names: {', '.join(f'{o} -> {n}' for o, n in renamed.items())})" if renamed else ""
        raise ConfigError(f"{where}: bad arguments for {cls.__name__}: {e}. It accepts: {params}{old}") from None
    return kwargs


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def attention_arguments(spec: LayerSpec, args: list, c_in: int, where: str, width: float = 1.0,
                        max_channels: float = float("inf"), notes: list[str] | None = None) -> tuple[list, dict]:
    """An attention row's arguments -> (positional hyperparameters, keywords), checked against the input width.

    ``args`` is what the row writes after the module name: an optional nominal channel count (the width a YOLOv5
    YAML writes before ``width_multiple``), positional hyperparameters and an optional trailing dict of keywords.
    """
    args = list(args)
    kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
    if args and is_int(args[0]):
        nominal = args.pop(0)
        scaled = scaled_width(nominal, width, max_channels)
        if scaled != c_in:
            exact = c_in / width if width else c_in
            ok = float(exact).is_integer() and scaled_width(exact, width, max_channels) == c_in
            fix = f"write {int(exact)}" if ok else "omit it"
            raise ConfigError(
                f"{where}: {spec.name} was given {nominal} channels, which width_multiple {width:g} scales to {scaled}, "
                f"but its input (the 'from' layer) has {c_in} channels. Fix the first argument ({fix}) or leave it out: "
                "attention modules take their input channels from the 'from' layer."
            )
    kwargs = bind_arguments(spec.cls, [c_in, *args], kwargs, where, spec.renamed, notes)
    return args, kwargs


def attention_spec(name, where: str) -> LayerSpec:
    """The registered attention module ``name``; :class:`ConfigError` for unknown names and non-attention layers."""
    if not isinstance(name, str):
        raise ConfigError(f"{where}: the attention module must be a registered name, got {name!r}")
    try:
        spec = LAYERS.get(name)
    except KeyError as e:
        raise ConfigError(f"{where}: {e.args[0]}") from None
    if spec.kind != "attention":
        raise ConfigError(f"{where}: '{name}' is a '{spec.kind}' layer, not an attention module. "
                          f"Attention modules: {', '.join(LAYERS.names('attention'))}")
    return spec
