"""The rules by which ultralytics' newer families (YOLOv8 ... YOLO26) read their rows, beyond a block's signature.

ultralytics' ``parse_model`` (``ultralytics/nn/tasks.py``) decides three things a row's arguments do not say:

- The detection head's classification branch: ``Detect.legacy`` starts True (v3/v5/v8/v9 heads: two 3x3 convs)
  and a ``C3k2``, ``A2C2f`` or ``C2fCIB`` row anywhere before the head turns it False (YOLOv10/11/12/26 heads:
  depthwise-separable convs). A head row reads the value the rows above it left.
- Scale-dependent arguments: at scales m/l/x a ``C3k2`` gets ``c3k=True`` (C3k inner blocks; written or not), and at
  l/x an ``A2C2f`` gets ``residual=True, mlp_ratio=1.2``. The scale letter changes the layer, not only its widths.
- ``Bottleneck``/``BottleneckCSP`` mean ultralytics' blocks in its files; YOLOv5's own YAMLs (no ``scales:``, an
  ``anchors:`` key: YOLOv5's Detect needs anchors) mean YOLOv5's.

:func:`rule_of` gives the rule of a registered layer name; the plan (:mod:`models.parse.plan`) applies it to the
constructor arguments of ``conv``/``repeat`` rows, whose layout is ``[c1, c2, n, ...]`` as ultralytics builds them.
Blocks of this project that stand in for these (``C3k2Att``) declare the same rule with :func:`add_rule`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class FamilyRule:
    """What a row of one layer type decides beyond its own arguments.

    ``head_legacy``: False when the row turns the detection head's legacy classification branch off (for the model);
    ``at_scale(args, scale)``: the constructor arguments ``[c1, c2, n, ...]`` at a scale letter (may return ``args``).
    """

    head_legacy: bool = True
    at_scale: Callable[[list, str], list] | None = None


def c3k_at_mlx(args: list, scale: str) -> list:
    """C3k2 at scales m/l/x: ``c3k=True`` (the fourth constructor argument), whatever the row wrote."""
    if scale in ("m", "l", "x"):
        args = list(args)
        args[3:4] = [True]
    return args


def area_blocks_at_lx(args: list, scale: str) -> list:
    """A2C2f at scales l/x: ``residual=True, mlp_ratio=1.2`` appended after the row's own arguments."""
    return [*args, True, 1.2] if scale in ("l", "x") else args


_RULES: dict[str, FamilyRule] = {
    "C3k2": FamilyRule(head_legacy=False, at_scale=c3k_at_mlx),
    "A2C2f": FamilyRule(head_legacy=False, at_scale=area_blocks_at_lx),
    "C2fCIB": FamilyRule(head_legacy=False),
}


def add_rule(name: str, rule: FamilyRule) -> None:
    """Declare the rule of a registered layer name (a block standing in for one of ultralytics')."""
    if name in _RULES and _RULES[name] != rule:
        raise KeyError(f"a family rule for '{name}' is already declared")
    _RULES[name] = rule


def rule_of(name: str) -> FamilyRule | None:
    """The family rule of the registered layer ``name``; None for layers without one."""
    return _RULES.get(name)


def ultralytics_yaml(model: dict) -> bool:
    """True for a model dict in ultralytics' form: a ``scales:`` table, or no ``anchors:`` (YOLOv5's and YOLOv7's
    own YAMLs always have anchors: their Detect needs them; ultralytics' anchor-free YOLOv3/YOLOv9 files have none)."""
    return bool(model.get("scales")) or "anchors" not in model
