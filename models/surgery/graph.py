"""A model dict as a graph of rows, and where each insertion position lands in it.

Positions: ``<k>`` / ``after:<k>`` (after layer k), ``backbone_end``, ``p3``/``p4``/``p5``... (after the backbone layer of
that stride that the neck reads; strides from one probe of the built model), ``neck_outputs`` (on every input of the
detection head), ``after:<Type>`` (after every row of that type).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from models.parse.read import INPUT as IMAGE, resolve_from, rows_of, with_scale
from models.registry import LAYERS, ConfigError, scaled_width
from models.surgery.spec import POSITION_NAMES, InsertError, Insertion

INPUT = "<image>"


class Node:
    """One row: ``inputs`` are nodes (or INPUT), ``styles`` say how each was written ('rel' -k or 'abs' index)."""

    __slots__ = ("module", "n", "args", "inputs", "styles", "is_list", "old", "section")

    def __init__(self, module, n, args, inputs, styles, is_list, old, section):
        self.module, self.n, self.args = module, n, args
        self.inputs, self.styles, self.is_list = inputs, styles, is_list
        self.old, self.section = old, section  # old: index in the source YAML (None for inserted rows)


def graph_of(d: dict, source: str) -> list[Node]:
    try:
        rows = rows_of(d)
    except ConfigError as e:
        raise InsertError(str(e)) from None
    nodes: list[Node] = []
    nb = len(d["backbone"])
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != 4:
            raise InsertError(f"{source}: layer {i}: each row must be [from, number, module, args], got {row!r}")
        f, n, module, args = row
        try:
            refs = resolve_from(f, i, f"{source}: layer {i} ({module})")
        except ConfigError as e:
            raise InsertError(str(e)) from None
        fs = f if isinstance(f, list) else [f]
        inputs = [INPUT if j == IMAGE else nodes[j] for j in refs]
        styles = ["rel" if x < 0 else "abs" for x in fs]
        nodes.append(Node(module, n, copy.deepcopy(args), inputs, styles, isinstance(f, list), i,
                           "backbone" if i < nb else "head"))
    if not nodes:
        raise InsertError(f"{source}: the model has no layers")
    return nodes


def layer_strides(d: dict) -> list[int | None]:
    """Output stride of every layer of a model dict (input size / output size), from one probe of the built model.

    Strides do not depend on width or depth: a narrow, shallow copy (8-64 channels) is probed for speed, with
    attention rows' nominal widths dropped (a narrow Concat may round differently) and CBLinear's widths (which
    ultralytics does not scale) narrowed like the rest; if that copy does not build (YOLO12's area attention needs
    multiples of 32 channels), the model as written is.
    """
    from models.parse.probe import layer_strides as probe_strides
    from models.yolo import build_model

    narrow = copy.deepcopy(d)
    narrow.pop("scales", None)
    narrow["depth_multiple"], narrow["width_multiple"] = 0.01, 1 / 16
    for row in narrow["backbone"] + narrow["head"]:
        spec = LAYERS.get(row[2]) if row[2] in LAYERS else None
        if spec and spec.shape_preserving and isinstance(row[3], list) and row[3] and isinstance(row[3][0], int) \
                and not isinstance(row[3][0], bool):
            row[3] = row[3][1:]
        if row[2] == "CBLinear" and row[3] and isinstance(row[3][0], list):
            row[3] = [[scaled_width(c, narrow["width_multiple"]) for c in row[3][0]], *row[3][1:]]
    try:
        model = build_model(narrow)
    except ConfigError:
        model = build_model(with_scale(d))
    return probe_strides(model)



# ----------------------------------------------------------------------------------------------------------------------
# Positions

def describe_positions(d: dict, source: str = "<dict>") -> str:
    """Human-readable table: every layer with its stride, and what each position name resolves to."""
    nodes = graph_of(d, source)
    strides = layer_strides(d)
    nb = len(d["backbone"])
    lines = [f"{source}: {len(nodes)} layers ({nb} backbone)", f"{'idx':>4} {'stride':>6}  module"]
    for nd, s in zip(nodes, strides):
        lines.append(f"{nd.old:>4} {s or '':>6}  {nd.module}")
    lines.append("positions:")
    lines.append(f"  backbone_end  -> after layer {nb - 1} ({nodes[nb - 1].module})")
    for level, k in _levels(nodes, nb, strides).items():
        lines.append(f"  {level:<13} -> after layer {k} ({nodes[k].module})")
    head = nodes[-1]
    lines.append(f"  neck_outputs  -> on the head's inputs {[x.old for x in head.inputs]} (before layer {head.old} {head.module})")
    types = sorted({nd.module for nd in nodes[:-1]})
    lines.append(f"  after:<Type>  -> Type in {', '.join(types)}")
    return "\n".join(lines)


def _levels(nodes: list[Node], nb: int, strides: list) -> dict[str, int]:
    """``{'p3': 4, 'p4': 6, 'p5': 9}``: per stride 2^k, the last backbone layer of that stride that the neck reads
    (or, if the neck reads none, the last backbone layer of that stride)."""
    read_by_neck = {x.old for nd in nodes[nb:] for x in nd.inputs if isinstance(x, Node)}
    levels: dict[str, int] = {}
    for k in range(1, 8):
        same = [i for i in range(nb) if strides[i] == 2**k]
        if same:
            read = [i for i in same if i in read_by_neck]
            levels[f"p{k}"] = (read or same)[-1]
    return levels


@dataclass
class Site:
    anchor: Node
    head_only: bool = False  # only the detection head's reference is redirected


def sites(nodes: list[Node], nb: int, ins: Insertion, strides_fn, source: str) -> list[Site]:
    pos = str(ins.position).strip()
    head = nodes[-1]
    last = len(nodes) - 1

    def at_index(k: int) -> Site:
        if not 0 <= k < last:
            raise InsertError(f"{ins.text}: there is no layer {k} to insert after in {source}; layers are 0..{last}, "
                              f"and {last} is the detection head ({head.module}), so valid indices are 0..{last - 1}")
        return Site(nodes[k])

    low = pos.lower()
    m = re.fullmatch(r"(?:after:)?(-?\d+)", low)
    if m:
        return [at_index(int(m.group(1)))]
    if low == "backbone_end":
        return [at_index(nb - 1)]
    if low in ("neck_outputs", "head_inputs"):
        if not head.inputs or any(x is INPUT for x in head.inputs):
            raise InsertError(f"{ins.text}: the last layer of {source} ({head.module}) has no layer inputs")
        return [Site(x, head_only=True) for x in dict.fromkeys(head.inputs)]
    if re.fullmatch(r"p\d+", low):
        levels = _levels(nodes, nb, strides_fn())
        if low not in levels:
            raise InsertError(f"{ins.text}: {source} has no backbone output at stride {2 ** int(low[1:])} ({low}); "
                              f"backbone levels: {', '.join(f'{k} (layer {v})' for k, v in levels.items()) or 'none'}")
        return [at_index(levels[low])]
    if low.startswith("after:"):
        kind = pos.split(":", 1)[1].strip()
        hits = [nd for nd in nodes[:-1] if nd.module == kind]
        if not hits:
            types = sorted({nd.module for nd in nodes[:-1]})
            raise InsertError(f"{ins.text}: no layer of type '{kind}' in {source}; types present: {', '.join(types)}")
        return [Site(nd) for nd in hits]
    raise InsertError(f"{ins.text}: unknown position '{pos}'. Positions: {', '.join(POSITION_NAMES)} "
                      f"(index 0..{last - 1} in {source})")


def check_module(ins: Insertion) -> None:
    try:
        spec = LAYERS.get(ins.module)
    except KeyError as e:
        raise InsertError(f"{ins.text}: {e.args[0]}") from None
    if not spec.shape_preserving:
        raise InsertError(f"{ins.text}: {ins.module} is a '{spec.kind}' layer; only shape-preserving layers can be "
                          f"inserted (attention modules, norms, ResidualBlend). Attention modules: "
                          f"{', '.join(LAYERS.names('attention'))}")
    if not isinstance(ins.args, list):
        raise InsertError(f"{ins.text}: arguments must be a list")
