"""Model YAML text: write a model dict back as YAML, keeping the source file's layout and comments.

Used by the insertion tool and by the run's model YAML (``models/engine/run_yaml.py``). Values are written in
YAML flow style (:func:`flow`) so that ``yaml.safe_load`` reads back exactly the dict that was written;
:func:`to_text` checks that it does, and falls back to a plain layout for source layouts it does not
understand. Row comments that begin with a layer number are renumbered.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from models.registry.values import flow

INTERNAL_KEYS = ("yaml_file", "channels")  # set by load_config / the model, never written


@dataclass(frozen=True)
class RowOrigin:
    """Where one row of a written model comes from: its section, its index in the source YAML (None for a new row)
    and, for new rows, the comment to write after its layer number."""

    section: str  # 'backbone' | 'head'
    old: int | None
    comment: str | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Whole files

KEY_RE = re.compile(r"^([A-Za-z_][\w\-]*)\s*:(.*)$")
LEADING_NUMBER_RE = re.compile(r"^(\s*)(\d+)(?=\D|$)")


@dataclass
class _Section:
    key_line: str
    rows: list[tuple[list[str], str | None]]  # per row: decoration lines before it, its comment
    trailing: list[str]


def _split_blocks(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(header lines, [(top-level key, its lines incl. the key line and anything up to the next key)])."""
    header, blocks = [], []
    for line in text.splitlines():
        m = KEY_RE.match(line)
        if m:
            blocks.append((m.group(1), [line]))
        elif blocks:
            blocks[-1][1].append(line)
        else:
            header.append(line)
    return header, blocks


def _parse_section(lines: list[str], n_rows: int) -> _Section | None:
    key_line, body = lines[0], lines[1:]
    inline = key_line.split("#", 1)[0].split(":", 1)[1].strip()
    if inline:
        return None
    rows, pending = [], []
    for line in body:
        code, _, comment = line.partition("#")
        if not code.strip():
            pending.append(line)
        elif re.fullmatch(r"[\s\[\],\-]*", code):
            continue  # a bracket of a flow-style list
        else:
            rows.append((pending, comment.strip() or None))
            pending = []
    if len(rows) != n_rows:
        return None
    return _Section(key_line, rows, pending)


def _renumber(comment: str | None, old: int, new: int) -> str | None:
    if comment is None:
        return None
    m = LEADING_NUMBER_RE.match(comment)
    if m and int(m.group(2)) == old:
        return f"{m.group(1)}{new}{comment[m.end():]}"
    return comment


def _row_line(row: list, comment: str | None) -> str:
    return f"  - {flow(row)}" + (f" # {comment}" if comment else "")


def to_text(d: dict, origins: list[RowOrigin], template: str | None = None, header: list[str] | None = None,
            note: list[str] | None = None) -> str:
    """YAML text of the model dict ``d``, whose rows (backbone then head) came from ``origins``.

    With ``template`` (the source file's text) its layout is kept: comments, blank lines, the order and
    spelling of the other keys; layer rows are written one per line (block style) with their comments,
    renumbered. ``header`` replaces the template's leading comment lines; ``note`` lines are put first.
    """
    order = origins
    keep = {k: v for k, v in d.items() if k not in INTERNAL_KEYS and not (k == "scale" and not v)}
    if keep.get("scale") and not keep.get("scales"):
        keep.pop("scale")
    head_lines, blocks = _split_blocks(template) if template else ([], [])
    sections = {}
    for key, lines in blocks:
        if key in ("backbone", "head"):
            sections[key] = _parse_section(lines, sum(1 for nd in order if nd.old is not None and nd.section == key))

    def section_lines(key: str) -> list[str]:
        sec = sections.get(key)
        out = [sec.key_line if sec else f"{key}:"]
        rows = iter(d[key])
        k_old = 0
        for i, nd in enumerate(order):
            if nd.section != key:
                continue
            if nd.old is not None:
                deco, comment = sec.rows[k_old] if sec else ([], None)
                k_old += 1
                out += deco
                comment = _renumber(comment, nd.old, i) if sec else f"{i}"
            else:
                comment = f"{i} {nd.comment}" if nd.comment else f"{i}"
            out.append(_row_line(next(rows), comment))
        return out + (sec.trailing if sec else [])

    lines = list(note or []) + (header if header is not None else head_lines)
    written = set()
    extra_keys = [k for k in keep if k not in {b for b, _ in blocks} and k not in ("backbone", "head")]
    for key, blines in blocks:
        if key in ("backbone", "head"):
            if extra_keys:
                gap = []
                while lines and not lines[-1].strip():
                    gap.insert(0, lines.pop())
                lines += [f"{k}: {flow(keep[k])}" for k in extra_keys] + gap
            extra_keys = []
            lines += section_lines(key)
        elif key in keep:
            try:
                same = yaml.safe_load("\n".join(blines)) == {key: keep[key]}
            except yaml.YAMLError:
                same = False
            if same:
                lines += blines
            else:  # changed value: rewrite the key, keep the blank/comment lines that followed the block
                k = len(blines)
                while k > 1 and (not blines[k - 1].strip() or blines[k - 1].lstrip().startswith("#")):
                    k -= 1
                lines += [f"{key}: {flow(keep[key])}", *blines[k:]]
        written.add(key)
    for key in extra_keys:
        lines.append(f"{key}: {flow(keep[key])}")
        written.add(key)
    for key in ("backbone", "head"):
        if key not in written:
            lines += section_lines(key)
    text = "\n".join(lines).rstrip("\n") + "\n"
    if not _reads_back(text, keep):
        if template is not None:  # a layout this writer does not understand: write the plain form instead
            return to_text(d, origins, None, header=header if header is not None else head_lines, note=note)
        raise RuntimeError("internal error: the written YAML does not read back as the model it describes")
    return text


def _reads_back(text: str, expected: dict) -> bool:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return isinstance(loaded, dict) and all(loaded.get(k) == v for k, v in expected.items())


def write_text(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: an interrupted write never leaves half a YAML."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
