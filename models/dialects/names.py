"""The store of other projects' names: aliases of our modules, their readings of rows, modules we lack.

:data:`FOREIGN` is filled by :mod:`models.dialects.aliases` and :mod:`models.dialects.known`; the parser reaches it
through :mod:`models.dialects.resolve`, which falls back to the registry for every other name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from models.registry import ConfigError, RowContext

# Values of a model YAML's `dialect:` key: the project whose conventions its rows follow (how rows with our own names,
# and other projects' names that several projects use, are read), with what each means.
DIALECTS = {
    "yoloair": "YOLOAir (iscyy/yoloair): its attention rows write the nominal width first (x width_multiple)",
    "yoloair2": "the newer YOLOAir (iscyy/yoloair2): its parser builds Module(c1, c2, ...) for its attention list, so "
                "a module's second parameter (SEAttention's reduction) receives the layer's width",
    "ods": "objectdetection_script's cv-attention: rows write the module's own arguments, no channel count",
    "eap": "External-Attention-pytorch's classes, placed as cv-attention places its own (no channel count)",
    "ultralytics": "ultralytics and the YOLOv8/YOLO11 forks: the input channels injected, the row's arguments are the "
                   "module's after c1 (CBAM(c1, kernel_size)); a leading width is dropped",
    "forks": "YOLOv5/YOLOv7 forks that list their attention with the convolutions, Module(c1, c2, ...): the bias-free "
             "ports CBAM(c1, c2, ratio, kernel_size), SE(c1, c2, ratio), ECA(c1, c2, k_size)",
    "native": "this project: every row read this project's way, no warnings about other readings",
}


class NoEquivalent(ConfigError):
    """A reading accepts the row, but its module has no equivalent here (the message says what it is)."""


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
    dialect: str = ""  # the model YAML's `dialect:` value that selects this reading
    example: tuple = ()  # a row's arguments this reading accepts after 1024 nominal (512 real) channels at width 0.5
    takes_width: bool = False  # the source puts the layer's width into a hyperparameter (yoloair2's reduction = c2)

    @property
    def dialects(self) -> tuple[str, ...]:
        """The ``dialect:`` values that select this reading ("yoloair/yoloair2" -> both)."""
        return tuple(self.dialect.split("/")) if self.dialect else ()


@dataclass(frozen=True)
class Alias:
    """A name another project uses for one of our modules, with one reading per project that uses it."""

    name: str
    target: str  # the registered name it means
    readings: tuple[Reading, ...]
    note: str = ""  # where the source's module differs from ours in structure (shown under the row on build)

    @property
    def sources(self) -> str:
        return ", ".join(dict.fromkeys(r.source for r in self.readings))


@dataclass(frozen=True)
class BlockName:
    """Another project's name for a block that is not an attention module: built as one of ours (``target``, the
    row's arguments as written), or answered with the row to write (``hint``)."""

    name: str
    source: str
    target: str = ""  # the registered block it builds ("" when none does: the hint answers)
    warning: str = ""  # what else the name means, printed when it is built
    hint: Callable[[list], str] | None = None  # the row's arguments -> the row(s) to write here


@dataclass(frozen=True)
class KnownModule:
    """A module another project places from its YAMLs and this one does not provide."""

    name: str
    source: str  # "YOLOAir", "YOLOv7", "EAP", "ODS", ...
    what: str = ""  # what it is, in a few words
    instead: str = ""  # the closest module here, when there is one


class ForeignNames:
    """Other projects' names: aliases of registered modules (with their readings), readings of rows that use our own
    names (applied under ``dialect:``), and modules this project does not provide."""

    def __init__(self):
        self._aliases: dict[str, Alias] = {}
        self._readings: dict[str, tuple[Reading, ...]] = {}
        self._known: dict[str, KnownModule] = {}
        self._blocks: dict[str, BlockName] = {}

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

    def block(self, name: str, source: str, target: str = "", warning: str = "",
              hint: Callable[[list], str] | None = None) -> None:
        """Register ``name`` (another project's block): built as the registered ``target``, or answered by ``hint``."""
        if name in self._blocks or name in self._aliases:
            raise KeyError(f"'{name}' is already another project's name here")
        self._blocks[name] = BlockName(name, source, target, warning, hint)

    def known(self, name: str, source: str, what: str = "", instead: str = "") -> None:
        """Record ``name`` as a module of ``source`` that is not provided here (reported as such, not as a typo)."""
        old = self._known.get(name)
        self._known[name] = KnownModule(name, f"{old.source}/{source}" if old else source, what or (old and old.what)
                                        or "", instead or (old and old.instead) or "")

    # -- look-up -------------------------------------------------------------------------------------------------------

    def alias_of(self, name) -> Alias | None:
        return self._aliases.get(name) if isinstance(name, str) else None

    def block_of(self, name) -> BlockName | None:
        return self._blocks.get(name) if isinstance(name, str) else None

    def blocks(self) -> list[BlockName]:
        return sorted(self._blocks.values(), key=lambda b: b.name.lower())

    def known_module(self, name) -> KnownModule | None:
        return self._known.get(name) if isinstance(name, str) else None

    def aliases(self) -> list[Alias]:
        return sorted(self._aliases.values(), key=lambda a: a.name.lower())

    def readings_of(self, name: str) -> tuple[Reading, ...]:
        """Other projects' readings of rows with our own registered name ``name``."""
        return self._readings.get(name, ())

    def known_modules(self, registered=()) -> list[KnownModule]:
        """Modules other projects have that are neither in ``registered`` nor aliases here."""
        return sorted((k for k in self._known.values() if k.name not in registered and k.name not in self._aliases
                       and k.name not in self._blocks),
                      key=lambda k: (k.source, k.name.lower()))


FOREIGN = ForeignNames()
