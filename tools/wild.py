"""Forks and blog posts: the attention YAMLs of tests/fixtures/wild/corpus.json, built here and held against the
parameter counts their home projects' own code gives (measured outside this project; see that folder's README).

Each YAML is built as it was found (no key added), on the meta device (counts only), and sorted into one outcome:

- ``exact``: the whole model has the home project's parameter count;
- ``stated``: it differs, and every attention layer that differs has a warning saying how (printed on build);
- ``refused``: the build stops with a message saying what to write;
- ``home fails``: the home project's own code cannot build it (``built`` or ``refused`` here);
- ``base differs``: the attention layers are equal, only a standard block the fork rewrote differs (the entry's
  ``home.note`` says which; a base-model question, not an attention one);
- ``silent``: a layer differs and no warning (or note) says so (the test keeps this at zero).

In ``stated``, a difference outside the attention layers is allowed only where ``home.note`` records it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fixtures" / "wild" / "corpus.json"
OUTCOMES = ("exact", "stated", "refused", "home fails", "base differs", "silent")


@dataclass
class Outcome:
    entry: dict
    kind: str  # one of OUTCOMES
    params: int | None = None  # here
    layers: list = field(default_factory=list)  # [layer, home type, home params, here params, warned]
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    outside: int = 0  # parameters here minus at home outside the attention layers (a fork's own standard block)

    @property
    def home(self) -> int | None:
        return self.entry["home"].get("params")


def load_corpus(path: Path = CORPUS) -> list[dict]:
    return json.loads(path.read_text())["entries"]


def _model_dict(e: dict) -> dict:
    d = dict(e["model"])
    d["yaml_file"] = e["path"].rsplit("/", 1)[-1]
    if e.get("scale"):
        d["scale"] = e["scale"]
    return d


def build_entry(e: dict) -> Outcome:
    """Build one corpus YAML here (meta device) and sort the result into an :class:`Outcome`."""
    import torch
    from ultralytics.utils import LOGGER

    from models.parse.build import parse_model
    from models.registry import ConfigError

    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda r: records.append(r.getMessage().split("WARNING ⚠️ ", 1)[-1])
    LOGGER.addHandler(handler)
    try:
        with torch.device("meta"):
            layers, _ = parse_model(_model_dict(e), verbose=False)
    except ConfigError as ex:
        return Outcome(e, "home fails" if e["home"].get("error") else "refused", error=str(ex))
    finally:
        LOGGER.removeHandler(handler)
    warnings = [w for w in records if "no scale letter" not in w]
    params = sum(p.numel() for p in layers.parameters())
    rows = []
    for i, kind, theirs in e["home"].get("attention", []):
        ours = sum(p.numel() for p in layers[i].parameters()) if i < len(layers) else None
        rows.append([i, kind.rsplit(".", 1)[-1], theirs, ours, any(f"layer {i} (" in w for w in warnings)])
    attention_ok = all(warned or theirs == ours for *_, theirs, ours, warned in rows)
    outside = (params - sum(r[3] or 0 for r in rows)) - (e["home"].get("params", 0) - sum(r[2] for r in rows))
    if e["home"].get("error"):
        kind = "home fails"
    elif params == e["home"]["params"]:
        kind = "exact"
    elif not attention_ok or (outside and not e["home"].get("note")):
        kind = "silent"
    elif outside and not any(theirs != ours for *_, theirs, ours, _ in rows):
        kind = "base differs"  # only a standard block the fork changed differs (its home.note says which)
    else:
        kind = "stated"
    return Outcome(e, kind, params, rows, warnings, outside=outside)


@lru_cache(maxsize=1)
def outcomes(path: Path = CORPUS) -> tuple[Outcome, ...]:
    """Every corpus entry built here (once per process)."""
    import offline

    offline.configure()
    return tuple(build_entry(e) for e in load_corpus(path))


def counts(results) -> dict[str, int]:
    return {k: sum(o.kind == k for o in results) for k in OUTCOMES}


# ----------------------------------------------------------------------------------------------------------------------
# The docs/peers.md section

SECTION = """## Forks and blog posts

{n} attention YAMLs from {repos} public forks, attention collections and blog-post repositories
(`tests/fixtures/wild/corpus.json`, each at a recorded commit; {styles}),
built here as they were found, with no key added, and held against the parameter count each one's home project gives
(its own code, run outside this project). *Outcome*: `exact` (the home project's count), `stated` (it differs, and
the build prints a warning for every attention layer that differs: which module was built, how the other reading
differs, the edit that selects it), `refused` (the build stops with the row to write), `home fails` (the home
project's own code cannot build it either), `base differs` (only a standard block the fork rewrote differs), `silent`
(a difference nothing states; `tests/test_wild_corpus.py` keeps it at 0). *Attention layers*: each layer's
parameters, home / here (`!` where they differ). The last column is the first part of the build's message.

| outcome | YAMLs |
|---|---:|
{counts}

| YAML | style | params home | params here | outcome | attention layers: home / here | the build says |
|---|---|---:|---:|---|---|---|
{rows}
"""


def _cut(text: str, limit: int = 180) -> str:
    text = " ".join(text.split())
    head, sep, rest = text.partition(": layer ")
    if sep and head.endswith(".yaml"):
        text = "layer " + rest
    return (text[:limit].rstrip() + " …" if len(text) > limit else text).replace("|", "\\|")


def _row(o: Outcome) -> str:
    e = o.entry
    name = f"`{e['repo']}@{e['commit'][:7]}` `{e['path']}`"
    layers = "; ".join(f"`{kind}` {theirs:,} / {ours:,}{'' if theirs == ours else ' !'}"
                       for _, kind, theirs, ours, _ in o.layers if ours is not None) or "-"
    if o.error:
        says = _cut(o.error.splitlines()[0] + (" " + o.error.splitlines()[1].strip() if "\n" in o.error else ""))
    elif o.warnings:
        says = _cut(o.warnings[0]) + (f" (+{len(o.warnings) - 1} more)" if len(o.warnings) > 1 else "")
    else:
        says = "-"
    if e["home"].get("error"):
        says = f"home: {_cut(e['home']['error'], 90)}; here: {says}"
    if o.outside and e["home"].get("note"):
        says += f"; outside the attention layers: {_cut(e['home']['note'], 120)}"
    home = f"{o.home:,}" if o.home is not None else "fails"
    here = f"{o.params:,}" if o.params is not None else "-"
    return f"| {name} | {e['style']} | {home} | {here} | {o.kind} | {layers} | {says} |"


def render(results=None) -> str:
    """The "Forks and blog posts" section of docs/peers.md."""
    results = outcomes() if results is None else results
    entries = [o.entry for o in results]
    styles = ", ".join(f"{sum(e['style'] == s for e in entries)} {s}-style" for s in ("yolov5", "yolov7", "ultralytics"))
    order = {"yolov5": 0, "yolov7": 1, "ultralytics": 2}
    rows = sorted(results, key=lambda o: (order.get(o.entry["style"], 3), o.entry["repo"].lower(), o.entry["path"]))
    return SECTION.format(n=len(results), repos=len({e["repo"] for e in entries}), styles=styles,
                          counts="\n".join(f"| {k} | {v} |" for k, v in counts(results).items()),
                          rows="\n".join(_row(o) for o in rows))
