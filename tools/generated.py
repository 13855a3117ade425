"""Generated documentation files: write them, or check that they are what their generator gives now."""

from __future__ import annotations

from pathlib import Path


def write_or_check(path: Path, text: str, check: bool, command: str, root: Path) -> int:
    """Write ``text`` to ``path`` (0), or with ``check`` return 1 and say ``command`` when the file differs."""
    if check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is out of date: run {command}")
            return 1
        return 0
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    print(f"wrote {path.relative_to(root)}")
    return 0
