"""Stale ``from`` references: a row inserted by hand without shifting the later ``from`` indices.

The YAML then still builds (the parser infers channels), but a later ``Concat`` or the head reads the layer just
before the one it read in the model the rows were written for, and some layer's output is used by nobody: a
different, silently worse network. Two things show it:

- a *dead* layer: one whose output no later row reads (every layer of a YOLO model feeds a later one);
- the YAML's own layer-number comments (``# 10``): after a hand insertion they still count the old rows, so they say
  which layer each reference meant.

When the comments explain every dead layer (reading each reference in their numbering leaves none), the model is
refused with the exact corrected ``from`` of each row; a dead layer they do not explain is a warning.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from ultralytics.utils import LOGGER

from models.parse.read import INPUT, resolve_from, rows_of
from models.registry import ConfigError

LEADING_NUMBER_RE = re.compile(r"^\s*(\d+)(?=\D|$)")


def row_numbers(d: dict) -> list[int | None] | None:
    """The layer number each row's comment starts with (``# 10``, ``# 17 (P3/8-small)``), read from the model's YAML
    file, or None when there is no file or its rows cannot be matched."""
    path = Path(str(d.get("yaml_file", "")))
    try:
        text = path.read_text(encoding="utf-8") if path.suffix in (".yaml", ".yml") and path.is_file() else None
        root = yaml.compose(text, Loader=yaml.SafeLoader) if text else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    lines = text.splitlines()
    numbers = []
    for key, value in root.value:
        if key.value in ("backbone", "head") and isinstance(value, yaml.SequenceNode):
            for row in value.value:
                end = row.end_mark
                rest = lines[end.line][end.column:] if end.line < len(lines) else ""
                comment = rest.split("#", 1)[1] if "#" in rest else ""
                m = LEADING_NUMBER_RE.match(comment)
                numbers.append(int(m.group(1)) if m else None)
    return numbers


def _references(rows: list) -> list[list[int]] | None:
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(resolve_from(row[0], i, f"layer {i}"))
        except (ConfigError, TypeError, IndexError):
            return None  # the plan reports a malformed row itself
    return out


def dead_layers(refs: list[list[int]]) -> list[int]:
    """Layers (all but the last) whose output no later row reads."""
    read = {j for r in refs for j in r}
    return [j for j in range(len(refs) - 1) if j not in read]


def _renumbered(rows: list, numbers: list[int | None]) -> dict[int, list] | None:
    """``{row: corrected from}`` reading every reference in the comments' numbering (None when they say nothing)."""
    new_of = {}  # comment number -> the row that carries it now (the last one, when an inserted row copied it)
    for i, c in enumerate(numbers):
        if c is not None:
            new_of[c] = i
    fixes = {}
    for i, row in enumerate(rows):
        c = numbers[i]
        if c is None or c == i:
            continue  # an inserted row, or one before the insertion: its references are as written
        f = row[0]
        fs = f if isinstance(f, list) else [f]
        out = []
        for x in fs:
            if not isinstance(x, int) or (i == 0 and x == -1):
                return None
            if x == -1:  # the row above: a row inserted above this one is meant to feed it
                out.append(x)
                continue
            meant = x if x >= 0 else c + x  # the layer the reference meant, in the comments' numbering
            j = new_of.get(meant)
            if j is None or j >= i:
                out.append(x)
            else:
                out.append(j if x >= 0 else j - i)
        if out != fs:
            fixes[i] = out if isinstance(f, list) else out[0]
    return fixes or None


def _layer(rows: list, j: int) -> str:
    return f"{j} ({rows[j][2]})"


def check_stale_from(d: dict) -> None:
    """Refuse a model whose ``from`` references were left unshifted after a hand insertion (see the module doc), with
    the corrected rows; warn about a layer whose output nobody reads when the YAML's comments do not explain it."""
    try:
        rows = rows_of(d)
    except ConfigError:
        return  # the parser reports it
    refs = _references(rows)
    if not refs or not all(isinstance(r, (list, tuple)) and len(r) == 4 for r in rows):
        return
    dead = dead_layers(refs)
    if not dead:
        return
    source = d.get("yaml_file", "<dict>")
    unused = ", ".join(_layer(rows, j) for j in dead)
    numbers = row_numbers(d)
    fixes = _renumbered(rows, numbers) if numbers and len(numbers) == len(rows) else None
    if fixes:
        fixed = [[fixes.get(i, row[0]), *row[1:]] for i, row in enumerate(rows)]
        if not dead_layers(_references(fixed) or [[INPUT]]):
            shifted = sorted({i - c for i, c in enumerate(numbers) if c is not None and c != i})
            rows_text = "; ".join(f"layer {_layer(rows, i)}: from {rows[i][0]} -> {f}" for i, f in fixes.items())
            raise ConfigError(
                f"{source}: the 'from' indices were not shifted after a row was inserted by hand: the YAML's own "
                f"layer comments count {'/'.join(map(str, shifted))} row(s) fewer from layer "
                f"{min(i for i, c in enumerate(numbers) if c is not None and c != i)} on, and layer(s) {unused} would "
                f"be read by nobody, so a later Concat or the head reads a layer other than the one written for it. "
                f"Fix: {rows_text} (and renumber the comments), or insert rows with tools/insert.py, which shifts them")
    LOGGER.warning(f"{source}: layer(s) {unused}: output read by no later row, so they change nothing the model "
                   "computes. If a row was inserted by hand, every later 'from' index past it must be shifted "
                   "(tools/insert.py does it); else point a later row at them or remove them")
