"""Resolve ``--data`` arguments and make the built-in dataset on first use.

``--data`` may be a path, a bare name of a YAML in ``data/`` (``shapes.yaml``), or an ultralytics
dataset name (``coco128.yaml``, ``VOC.yaml``, ``coco.yaml``), which ultralytics downloads where there
is internet. A YAML with a ``generator:`` section is made here, then handed to ultralytics as a
resolved copy with an absolute ``path``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

DATA_DIR = Path(__file__).resolve().parent


def find_data_yaml(data: str | Path) -> Path | None:
    p = Path(data)
    for c in (p, DATA_DIR / p.name, DATA_DIR / f"{p.name}.yaml"):
        if c.is_file():
            return c.resolve()
    return None


def prepare_data(data: str | Path) -> str:
    """Return what to pass to ultralytics as ``data=``; generates the synthetic dataset if the YAML asks for it."""
    path = find_data_yaml(data)
    if path is None:
        return str(data)  # an ultralytics built-in name, or a path ultralytics will report as missing
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not a valid dataset YAML: {e}") from e
    if not isinstance(d, dict) or "generator" not in d:
        return str(path)
    from data.synthetic import generate

    root = (path.parent / d.get("path", f"../datasets/{path.stem}")).resolve()
    params = d.pop("generator") or {}
    generate(root, **params)
    d["path"] = str(root)
    resolved = root / path.name
    text = yaml.safe_dump(d, sort_keys=False)
    if not resolved.exists() or resolved.read_text() != text:
        resolved.write_text(text)
    return str(resolved)
