"""The store of other projects' names: aliases of our modules, their readings of rows, modules we lack.

:data:`FOREIGN` is filled by :mod:`models.dialects.aliases` and :mod:`models.dialects.known`; the parser reaches it
through :mod:`models.dialects.resolve`, which falls back to the registry for every other name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from models.registry import RowContext

DIALECTS = ("yoloair", "ods")  # values of a model YAML's `dialect:` key (how rows with our own names are read)


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


class ForeignNames:
    """Other projects' names: aliases of registered modules (with their readings), readings of rows that use our own
    names (applied under ``dialect:``), and modules this project does not provide."""

    def __init__(self):
        self._aliases: dict[str, Alias] = {}
        self._readings: dict[str, tuple[Reading, ...]] = {}
        self._known: dict[str, KnownModule] = {}

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

    def alias_of(self, name) -> Alias | None:
        return self._aliases.get(name) if isinstance(name, str) else None

    def known_module(self, name) -> KnownModule | None:
        return self._known.get(name) if isinstance(name, str) else None

    def aliases(self) -> list[Alias]:
        return sorted(self._aliases.values(), key=lambda a: a.name.lower())

    def readings_of(self, name: str) -> tuple[Reading, ...]:
        """Other projects' readings of rows with our own registered name ``name``."""
        return self._readings.get(name, ())

    def known_modules(self, registered=()) -> list[KnownModule]:
        """Modules other projects have that are neither in ``registered`` nor aliases here."""
        return sorted((k for k in self._known.values() if k.name not in registered and k.name not in self._aliases),
                      key=lambda k: (k.source, k.name.lower()))


FOREIGN = ForeignNames()
