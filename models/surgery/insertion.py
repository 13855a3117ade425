"""Insert attention (or any shape-preserving) modules into a model dict without renumbering by hand.

A spec is ``MODULE[ARGS]@POSITION``; ``[ARGS]`` (a YAML list) or ``{KEYWORDS}`` is optional. Positions:

    <k> or after:<k>   after layer k (the new module reads layer k and becomes layer k+1)
    backbone_end       after the last backbone row (YOLOv5: SPPF)
    p3, p4, p5, ...    after the backbone layer of stride 8, 16, 32, ... that the neck reads
    neck_outputs       on every input of the detection head, just before it (alias: head_inputs)
    after:<Type>       after every row of that type, e.g. after:C3

Every ``from`` reference (absolute, relative such as -3/-5, lists, the head inputs) keeps pointing at
the same producing layer. A module inserted after layer k takes k's place for every layer that read k
(the feature is refined for all its readers); at ``neck_outputs`` only the detection head reads the new
module. Index and type positions refer to the dict you start from.

This module works on dicts (:func:`insert_layers` is pure); :func:`insert` also loads the config and
builds the result. Text output (keeping the source file's comments) is :mod:`models.parse.text`; the
command line is ``tools/insert.py``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import yaml

from models.parse.read import INPUT as IMAGE, load_config, resolve_from, rows_of, with_scale
from models.registry.protocol import init_identity
from models.registry import LAYERS, ConfigError, attention_specs, is_int
from models.parse.text import RowOrigin
from models.parse.values import flow

SPEC_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(\[.*\]|\{.*\})?\s*@\s*(\S.*?)\s*$", re.S)
POSITION_NAMES = ("backbone_end", "neck_outputs", "head_inputs", "p3", "p4", "p5", "after:<Type>", "<index>")


class InsertError(ConfigError):
    """An insertion that cannot be done; the message names what was asked and what exists."""


@dataclass
class Insertion:
    """One requested insertion: ``module`` with YAML ``args`` at ``position`` (as the user wrote it)."""

    module: str
    args: list = field(default_factory=list)
    position: str = "backbone_end"
    comment: str | None = None  # text after the layer number in the new row's comment

    @property
    def text(self) -> str:
        args = flow(self.args) if self.args else ""
        return f"{self.module}{args}@{self.position}"


@dataclass
class Inserted:
    """One row the insertion created."""

    index: int  # in the new YAML
    module: str
    args: list
    reads: int  # index (new YAML) of the layer it reads
    request: Insertion
    blended: bool = False


@dataclass
class InsertResult:
    cfg: dict  # the new model dict
    inserted: list[Inserted]
    index_map: dict[int, int]  # old layer index -> new layer index
    source: str = "<dict>"
    order: list = field(default_factory=list, repr=False)  # graph nodes in new order (for the text writer)
    requests: list = field(default_factory=list)  # the Insertions, as asked

    def origins(self) -> list[RowOrigin]:
        """Where each row of :attr:`cfg` comes from, for :func:`models.parse.text.to_text`."""
        requests = {r.index: r.request for r in self.inserted}
        out = []
        for i, nd in enumerate(self.order):
            if nd.old is not None:
                out.append(RowOrigin(nd.section, nd.old))
            else:
                req = requests[i]
                out.append(RowOrigin(nd.section, None, req.comment if req.comment is not None
                                     else f"{nd.module} inserted at {req.position}"))
        return out

    def summary(self) -> str:
        lines = [f"inserted {len(self.inserted)} layer(s) into {self.source}:"]
        for r in self.inserted:
            wrap = " (wrapped in ResidualBlend)" if r.blended else ""
            lines.append(f"  {r.index:>3} {r.module}{flow(r.args) if r.args else ''}{wrap}  reads {r.reads}  "
                         f"[{r.request.position}]")
        return "\n".join(lines)


def parse_insertion(text: str) -> Insertion:
    """``"CBAM@backbone_end"``, ``"CBAM[16, 7]@p4"``, ``"SE{reduction: 8}@after:C3"`` -> :class:`Insertion`."""
    m = SPEC_RE.match(text)
    if not m:
        raise InsertError(f"'{text}' is not a module spec; write MODULE@POSITION, e.g. CBAM@backbone_end, "
                          f"CBAM[16, 7]@p4 or 'SE{{reduction: 8}}@neck_outputs'. Positions: {', '.join(POSITION_NAMES)}")
    name, argtext, position = m.groups()
    args: list = []
    if argtext:
        try:
            parsed = yaml.safe_load(argtext)
        except yaml.YAMLError as e:
            raise InsertError(f"'{text}': arguments {argtext} are not a YAML list or mapping: {e}") from None
        args = parsed if isinstance(parsed, list) else [parsed]
    return Insertion(name, args, position)


# ----------------------------------------------------------------------------------------------------------------------
# The layer graph

INPUT = "<image>"


class _Node:
    """One row: ``inputs`` are nodes (or INPUT), ``styles`` say how each was written ('rel' -k or 'abs' index)."""

    __slots__ = ("module", "n", "args", "inputs", "styles", "is_list", "old", "section")

    def __init__(self, module, n, args, inputs, styles, is_list, old, section):
        self.module, self.n, self.args = module, n, args
        self.inputs, self.styles, self.is_list = inputs, styles, is_list
        self.old, self.section = old, section  # old: index in the source YAML (None for inserted rows)


def _graph(d: dict, source: str) -> list[_Node]:
    try:
        rows = rows_of(d)
    except ConfigError as e:
        raise InsertError(str(e)) from None
    nodes: list[_Node] = []
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
        nodes.append(_Node(module, n, copy.deepcopy(args), inputs, styles, isinstance(f, list), i,
                           "backbone" if i < nb else "head"))
    if not nodes:
        raise InsertError(f"{source}: the model has no layers")
    return nodes


def layer_strides(d: dict) -> list[int | None]:
    """Output stride of every layer of a model dict (input size / output size), from one probe of the built model.

    Strides do not depend on width or depth: a narrow, shallow copy (8-64 channels) is probed for speed, with
    attention rows' nominal widths dropped (a narrow Concat may round differently); if that copy does not build,
    the model as written is.
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
    try:
        model = build_model(narrow)
    except ConfigError:
        model = build_model(with_scale(d))
    return probe_strides(model)



# ----------------------------------------------------------------------------------------------------------------------
# Positions

def describe_positions(d: dict, source: str = "<dict>") -> str:
    """Human-readable table: every layer with its stride, and what each position name resolves to."""
    nodes = _graph(d, source)
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


def _levels(nodes: list[_Node], nb: int, strides: list) -> dict[str, int]:
    """``{'p3': 4, 'p4': 6, 'p5': 9}``: per stride 2^k, the last backbone layer of that stride that the neck reads
    (or, if the neck reads none, the last backbone layer of that stride)."""
    read_by_neck = {x.old for nd in nodes[nb:] for x in nd.inputs if isinstance(x, _Node)}
    levels: dict[str, int] = {}
    for k in range(1, 8):
        same = [i for i in range(nb) if strides[i] == 2**k]
        if same:
            read = [i for i in same if i in read_by_neck]
            levels[f"p{k}"] = (read or same)[-1]
    return levels


@dataclass
class _Site:
    anchor: _Node
    head_only: bool = False  # only the detection head's reference is redirected


def _sites(nodes: list[_Node], nb: int, ins: Insertion, strides_fn, source: str) -> list[_Site]:
    pos = str(ins.position).strip()
    head = nodes[-1]
    last = len(nodes) - 1

    def at_index(k: int) -> _Site:
        if not 0 <= k < last:
            raise InsertError(f"{ins.text}: there is no layer {k} to insert after in {source}; layers are 0..{last}, "
                              f"and {last} is the detection head ({head.module}), so valid indices are 0..{last - 1}")
        return _Site(nodes[k])

    low = pos.lower()
    m = re.fullmatch(r"(?:after:)?(-?\d+)", low)
    if m:
        return [at_index(int(m.group(1)))]
    if low == "backbone_end":
        return [at_index(nb - 1)]
    if low in ("neck_outputs", "head_inputs"):
        if not head.inputs or any(x is INPUT for x in head.inputs):
            raise InsertError(f"{ins.text}: the last layer of {source} ({head.module}) has no layer inputs")
        return [_Site(x, head_only=True) for x in dict.fromkeys(head.inputs)]
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
        return [_Site(nd) for nd in hits]
    raise InsertError(f"{ins.text}: unknown position '{pos}'. Positions: {', '.join(POSITION_NAMES)} "
                      f"(index 0..{last - 1} in {source})")


def _check_module(ins: Insertion) -> None:
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


# ----------------------------------------------------------------------------------------------------------------------
# Insertion (pure: dict in, dict out)


def insert_layers(cfg: dict, insertions: list[Insertion | str], strides: list | None = None) -> InsertResult:
    """Insert modules into a model dict; return the new dict (the input is not modified) and what was inserted.

    With no insertions the result is the same model (its rows, as a result the text writer can render).

    ``strides`` (per layer, as from :func:`layer_strides`) is only needed for ``p3``/``p4``/``p5`` positions
    and is computed by building the model when not given.
    """
    source = cfg.get("yaml_file", "<dict>")
    insertions = [parse_insertion(x) if isinstance(x, str) else x for x in insertions]
    nodes = _graph(cfg, source)
    nb = len(cfg["backbone"])
    head = nodes[-1]
    cache: dict = {}

    def strides_fn():
        if "s" not in cache:
            cache["s"] = strides if strides is not None else layer_strides(cfg)
        return cache["s"]

    tail = {id(nd): nd for nd in nodes}  # original node -> its latest refinement
    after: dict[int, list[_Node]] = {id(nd): [] for nd in nodes}
    before_head: list[_Node] = []
    made: list[tuple[_Node, Insertion]] = []
    for ins in insertions:
        _check_module(ins)
        for site in _sites(nodes, nb, ins, strides_fn, source):
            if site.head_only:
                src = site.anchor
                new = _Node(ins.module, 1, copy.deepcopy(ins.args), [src], ["abs"], False, None, head.section)
                head.inputs = [new if x is src else x for x in head.inputs]
                before_head.append(new)
            else:
                src = tail[id(site.anchor)]
                new = _Node(ins.module, 1, copy.deepcopy(ins.args), [src], ["rel"], False, None, site.anchor.section)
                for nd in nodes + [n for n, _ in made] + before_head:
                    if nd is not new:
                        nd.inputs = [new if x is src else x for x in nd.inputs]
                after[id(site.anchor)].append(new)
                tail[id(site.anchor)] = new
            made.append((new, ins))

    order: list[_Node] = []
    for nd in nodes:
        if nd is head:
            order += before_head
        order.append(nd)
        order += after[id(nd)]
    index = {id(nd): i for i, nd in enumerate(order)}

    rows = {"backbone": [], "head": []}
    for i, nd in enumerate(order):
        fs = []
        for x, style in zip(nd.inputs, nd.styles):
            if x is INPUT:
                fs.append(-1)
            else:
                j = index[id(x)]
                fs.append(j - i if style == "rel" or (nd.old is None and j == i - 1) else j)
        f = fs if (nd.is_list or len(fs) > 1) else fs[0]
        rows[nd.section].append([f, nd.n, nd.module, copy.deepcopy(nd.args)])
    out = copy.deepcopy(cfg)
    out["backbone"], out["head"] = rows["backbone"], rows["head"]
    inserted = [Inserted(index[id(nd)], nd.module, nd.args, index[id(nd.inputs[0])], ins) for nd, ins in made]
    return InsertResult(out, inserted, {nd.old: index[id(nd)] for nd in nodes}, source, order, insertions)


# ----------------------------------------------------------------------------------------------------------------------
# Building, identity blending


def _build(d: dict):
    from models.yolo import build_model

    return build_model(with_scale(d))


def validate(result: InsertResult):
    """Build the new model and return it; a failure is reported against the insertion that caused it."""
    try:
        return _build(result.cfg)
    except ConfigError as e:
        if not result.inserted:
            raise
        msg = str(e)
        m = re.search(r"layer (\d+)", msg)
        culprit = next((r for r in result.inserted if m and r.index == int(m.group(1))), None)
        what = culprit.request.text if culprit else ", ".join(dict.fromkeys(r.request.text for r in result.inserted))
        raise InsertError(f"inserting {what} into {result.source} gives a model that does not build: {msg}") from None


def blend_non_identity(result: InsertResult, model=None) -> list[int]:
    """Wrap every inserted attention module that cannot start as the identity in ResidualBlend (in place).

    ``model`` is ``result.cfg`` built (built here when not given). Returns the new-YAML indices that were
    wrapped. See models/layers/attention_blocks.py for why and when.
    """
    model = model if model is not None else _build(result.cfg)
    rows = result.cfg["backbone"] + result.cfg["head"]
    wrapped = []
    for r in result.inserted:
        if LAYERS.get(r.module).kind != "attention":
            continue
        if init_identity(copy.deepcopy(model.model[r.index])):
            continue
        row = rows[r.index]
        args = row[3]
        lead = [args[0]] if args and is_int(args[0]) else []
        row[2], row[3] = "ResidualBlend", [*lead, r.module, *args[len(lead):]]
        r.blended = True
        wrapped.append(r.index)
    return wrapped


def insert(cfg, insertions, identity_blend: bool = False) -> InsertResult:
    """Load ``cfg`` (path, bare name or dict), insert, build the result; raise :class:`InsertError` on any problem."""
    try:
        d = load_config(cfg)
    except (ConfigError, FileNotFoundError) as e:
        raise InsertError(str(e)) from None
    if not insertions:
        raise InsertError("nothing to insert: give at least one MODULE@POSITION")
    result = insert_layers(d, insertions)
    model = validate(result)
    if identity_blend and blend_non_identity(result, model):
        validate(result)
    return result


def identity_support(channels: int = 64) -> str:
    """Which registered attention modules can start as the exact identity (``init_identity()``) and which cannot."""
    native, blend = [], []
    for spec in attention_specs():
        (native if init_identity(spec.cls(channels)) else blend).append(spec.name)
    return (f"identity on their own ({len(native)}): {', '.join(native)}\n"
            f"need --identity-blend / ResidualBlend ({len(blend)}): {', '.join(blend)}")


def build_yaml_text(cfg, insertions, identity_blend: bool = False, note: list[str] | None = None,
                    header: list[str] | None = None) -> tuple[str, InsertResult]:
    """Insert, build, and render: (YAML text, result). Keeps the source file's layout when ``cfg`` is a file."""
    from models.parse.read import resolve_config
    from models.parse.text import to_text

    result = insert(cfg, insertions, identity_blend=identity_blend)
    template = None if isinstance(cfg, dict) else resolve_config(cfg)[0].read_text()
    if note is None:
        note = [f"# Built by tools/insert.py from {result.source.rsplit('/', 1)[-1]}: "
                f"{' '.join(r.text for r in result.requests)}"]
    return to_text(result.cfg, result.origins(), template, header=header, note=note), result
