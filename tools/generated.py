"""Generated documentation files: write them, or check that they are what their generator gives now."""

from __future__ import annotations

from pathlib import Path


def write_or_check(path: Path, text: str, check: bool, command: str, root: Path) -> int:
    """Write ``text`` to ``path`` (0), or with ``check`` return 1 and say ``command`` when the file differs."""
    if check:
        old = path.read_text() if path.exists() else None
        if old != text:
            first = next((f"line {k + 1}: {a[:160]!r} -> {b[:160]!r}" for k, (a, b) in
                          enumerate(zip(old.splitlines(), text.splitlines())) if a != b), "") if old else "missing"
            print(f"{path} is out of date ({first or 'lines added or removed'}): run {command}")
            return 1
        return 0
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    print(f"wrote {path.relative_to(root)}")
    return 0
