"""Insert attention (or any shape-preserving) modules into a model dict without renumbering by hand.

A spec is ``MODULE[ARGS]@POSITION`` (the syntax and the positions: ``models.surgery.spec.POSITIONS_HELP``).

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

from models.parse.read import load_config, with_scale
from models.parse.text import RowOrigin
from models.registry.values import flow
from models.registry import LAYERS, ConfigError, attention_specs, is_int
from models.registry.protocol import init_identity
from models.surgery.graph import INPUT, Node, check_module, graph_of, layer_strides, sites
from models.surgery.spec import InsertError, Insertion, parse_insertion


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
    nodes = graph_of(cfg, source)
    nb = len(cfg["backbone"])
    head = nodes[-1]
    cache: dict = {}

    def strides_fn():
        if "s" not in cache:
            cache["s"] = strides if strides is not None else layer_strides(cfg)
        return cache["s"]

    tail = {id(nd): nd for nd in nodes}  # original node -> its latest refinement
    after: dict[int, list[Node]] = {id(nd): [] for nd in nodes}
    before_head: list[Node] = []
    made: list[tuple[Node, Insertion]] = []
    for ins in insertions:
        check_module(ins)
        for site in sites(nodes, nb, ins, strides_fn, source):
            if site.head_only:
                src = site.anchor
                new = Node(ins.module, 1, copy.deepcopy(ins.args), [src], ["abs"], False, None, head.section)
                head.inputs = [new if x is src else x for x in head.inputs]
                before_head.append(new)
            else:
                src = tail[id(site.anchor)]
                new = Node(ins.module, 1, copy.deepcopy(ins.args), [src], ["rel"], False, None, site.anchor.section)
                for nd in nodes + [n for n, _ in made] + before_head:
                    if nd is not new:
                        nd.inputs = [new if x is src else x for x in nd.inputs]
                after[id(site.anchor)].append(new)
                tail[id(site.anchor)] = new
            made.append((new, ins))

    order: list[Node] = []
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
    """Insert, build, and render: (YAML text, result). Keeps the source file's layout when ``cfg`` is a file;
    ``note``: comment lines written above the rows (what made the file)."""
    from models.parse.read import resolve_config
    from models.parse.text import to_text

    result = insert(cfg, insertions, identity_blend=identity_blend)
    template = None if isinstance(cfg, dict) else resolve_config(cfg)[0].read_text()
    return to_text(result.cfg, result.origins(), template, header=header, note=note), result
