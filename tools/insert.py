"""Insert attention (or any shape-preserving) modules into a model YAML without renumbering by hand.

    python tools/insert.py configs/yolov5.yaml CBAM@backbone_end SE@neck_outputs -o my.yaml
    python tools/insert.py yolov5s.yaml "CBAM{reduction: 8}@p4" ECA@after:C3 -o my.yaml
    python tools/insert.py configs/yolov5.yaml --positions      # what each position name means here
    python tools/insert.py configs/yolov5.yaml --identity-support  # which modules can start as the identity

A spec is ``MODULE[ARGS]@POSITION``; ``[ARGS]`` (a YAML list) or ``{KEYWORDS}`` is optional. Positions:

    <k> or after:<k>   after layer k (the new module reads layer k and becomes layer k+1)
    backbone_end       after the last backbone row (YOLOv5: SPPF)
    p3, p4, p5, ...    after the backbone layer of stride 8, 16, 32, ... that the neck reads
    neck_outputs       on every input of the detection head, just before it (alias: head_inputs)
    after:<Type>       after every row of that type, e.g. after:C3

Every ``from`` reference (absolute, relative such as -3/-5, lists, the head inputs) keeps pointing at
the same producing layer. A module inserted after layer k takes k's place for every layer that read k
(the feature is refined for all its readers); at ``neck_outputs`` only the detection head reads the new
module. Index and type positions refer to the YAML you start from. Row comments that begin with the old
layer number are renumbered. The result is built before anything is written; on any error nothing is.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SPEC_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(\[.*\]|\{.*\})?\s*@\s*(\S.*?)\s*$", re.S)
POSITION_NAMES = ("backbone_end", "neck_outputs", "head_inputs", "p3", "p4", "p5", "after:<Type>", "<index>")
INSERTABLE_KINDS = ("attention", "norm")
INTERNAL_KEYS = ("yaml_file", "channels")


class InsertError(ValueError):
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
# YAML flow text for values (round-trips through yaml.safe_load)


def flow(v) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return ".nan"
        if v in (float("inf"), float("-inf")):
            return ".inf" if v > 0 else "-.inf"
        r = repr(v)
        if "e" in r and "." not in r.split("e")[0]:
            mant, exp = r.split("e")
            r = f"{mant}.0e{exp if exp[0] in '+-' else '+' + exp}"
        return r
    if isinstance(v, str):
        if re.fullmatch(r"[A-Za-z_][\w.\-()+*/ ]*", v) and not v.endswith(" "):
            try:
                if yaml.safe_load(f"[{v}]") == [v]:
                    return v
            except yaml.YAMLError:
                pass
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(flow(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{flow(k)}: {flow(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} value {v!r} to a model YAML")


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
    for key in ("backbone", "head"):
        if not isinstance(d.get(key), list):
            raise InsertError(f"{source}: '{key}' must be a list of [from, number, module, args] rows")
    nodes: list[_Node] = []
    nb = len(d["backbone"])
    for i, row in enumerate(list(d["backbone"]) + list(d["head"])):
        if not isinstance(row, (list, tuple)) or len(row) != 4:
            raise InsertError(f"{source}: layer {i}: each row must be [from, number, module, args], got {row!r}")
        f, n, module, args = row
        fs = f if isinstance(f, list) else [f]
        inputs, styles = [], []
        for x in fs:
            if not isinstance(x, int) or isinstance(x, bool):
                raise InsertError(f"{source}: layer {i} ({module}): 'from' must be an int or a list of ints, got {f!r}")
            if i == 0 and x == -1:
                inputs.append(INPUT)
                styles.append("rel")
                continue
            j = i + x if x < 0 else x
            if not 0 <= j < i:
                raise InsertError(f"{source}: layer {i} ({module}): 'from' {x} points to layer {j}, "
                                  f"but only layers 0..{i - 1} exist before it")
            inputs.append(nodes[j])
            styles.append("rel" if x < 0 else "abs")
        nodes.append(_Node(module, n, copy.deepcopy(args), inputs, styles, isinstance(f, list), i,
                           "backbone" if i < nb else "head"))
    if not nodes:
        raise InsertError(f"{source}: the model has no layers")
    return nodes


# ----------------------------------------------------------------------------------------------------------------------
# Positions


def layer_strides(d: dict) -> list[int | None]:
    """Output stride of every layer (input size / output size), from one forward pass of the built model."""
    import torch

    from models.yolo import build_model

    from models.registry import LAYERS
    from models.yolo import ConfigError

    # Strides do not depend on width or depth: probe a narrow, shallow copy (8-64 channels) for speed, with attention
    # rows' nominal widths dropped (a narrow Concat may round differently); fall back to the model as written.
    narrow = copy.deepcopy(d)
    narrow.pop("scales", None)
    narrow["depth_multiple"], narrow["width_multiple"] = 0.01, 1 / 16
    for row in narrow["backbone"] + narrow["head"]:
        spec = LAYERS.get(row[2]) if isinstance(row[2], str) and row[2] in LAYERS else None
        if spec and (spec.kind == "attention" or spec.extra.get("shape_preserving")) and isinstance(row[3], list) \
                and row[3] and isinstance(row[3][0], int) and not isinstance(row[3][0], bool):
            row[3] = row[3][1:]
    try:
        model = build_model(narrow).eval()
    except ConfigError:
        d = copy.deepcopy(d)
        if d.get("scales") and not d.get("scale"):
            d["scale"] = next(iter(d["scales"]))
        model = build_model(d).eval()
    size, strides = 256, [None] * len(model.model)

    def hook(i):
        def fn(_m, _inp, out):
            if isinstance(out, torch.Tensor) and out.dim() == 4:
                strides[i] = round(size / out.shape[-1])
        return fn

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(model.model)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, d.get("channels", 3), size, size))
    finally:
        for h in handles:
            h.remove()
    return strides


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
    from models.registry import LAYERS
    import models.yolo  # noqa: F401  (registers every layer)

    try:
        spec = LAYERS.get(ins.module)
    except KeyError as e:
        raise InsertError(f"{ins.text}: {e.args[0]}") from None
    if spec.kind not in INSERTABLE_KINDS and not spec.extra.get("shape_preserving"):
        raise InsertError(f"{ins.text}: {ins.module} is a '{spec.kind}' layer; only shape-preserving layers can be "
                          f"inserted (attention modules, norms, ResidualBlend). Attention modules: "
                          f"{', '.join(LAYERS.names('attention'))}")
    if not isinstance(ins.args, list):
        raise InsertError(f"{ins.text}: arguments must be a list")


# ----------------------------------------------------------------------------------------------------------------------
# Insertion (pure: dict in, dict out)


def insert_layers(cfg: dict, insertions: list[Insertion | str], strides: list | None = None) -> InsertResult:
    """Insert modules into a model dict; return the new dict (the input is not modified) and what was inserted.

    ``strides`` (per layer, as from :func:`layer_strides`) is only needed for ``p3``/``p4``/``p5`` positions
    and is computed by building the model when not given.
    """
    source = cfg.get("yaml_file", "<dict>")
    insertions = [parse_insertion(x) if isinstance(x, str) else x for x in insertions]
    if not insertions:
        raise InsertError("nothing to insert: give at least one MODULE@POSITION")
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

    d = copy.deepcopy(d)
    if d.get("scales") and not d.get("scale"):
        d["scale"] = next(iter(d["scales"]))
    return build_model(d)


def validate(result: InsertResult):
    """Build the new model and return it; a failure is reported against the insertion that caused it."""
    from models.yolo import ConfigError

    try:
        return _build(result.cfg)
    except ConfigError as e:
        msg = str(e)
        m = re.search(r"layer (\d+)", msg)
        culprit = next((r for r in result.inserted if m and r.index == int(m.group(1))), None)
        what = culprit.request.text if culprit else ", ".join(dict.fromkeys(r.request.text for r in result.inserted))
        raise InsertError(f"inserting {what} into {result.source} gives a model that does not build: {msg}") from None


def blend_non_identity(result: InsertResult, model=None) -> list[int]:
    """Wrap every inserted attention module that cannot start as the identity in ResidualBlend (in place).

    ``model`` is ``result.cfg`` built (built here when not given). Returns the new-YAML indices that were
    wrapped. See models/attention_blocks.py for why and when.
    """
    from models.attention_blocks import init_identity
    from models.registry import LAYERS

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
        lead = [args[0]] if args and isinstance(args[0], int) and not isinstance(args[0], bool) else []
        row[2], row[3] = "ResidualBlend", [*lead, r.module, *args[len(lead):]]
        r.blended = True
        wrapped.append(r.index)
    return wrapped


def insert(cfg, insertions, identity_blend: bool = False) -> InsertResult:
    """Load ``cfg`` (path, bare name or dict), insert, build the result; raise :class:`InsertError` on any problem."""
    from models.yolo import ConfigError, load_config

    try:
        d = load_config(cfg)
    except (ConfigError, FileNotFoundError) as e:
        raise InsertError(str(e)) from None
    result = insert_layers(d, insertions)
    model = validate(result)
    if identity_blend and blend_non_identity(result, model):
        validate(result)
    return result


# ----------------------------------------------------------------------------------------------------------------------
# Text: keep the source YAML's layout and comments

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


def to_text(result: InsertResult, template: str | None = None, header: list[str] | None = None,
            note: list[str] | None = None) -> str:
    """YAML text of ``result.cfg``.

    With ``template`` (the source file's text) its layout is kept: comments, blank lines, the order and
    spelling of the other keys; layer rows are written one per line (block style) with their comments,
    renumbered. ``header`` replaces the template's leading comment lines; ``note`` lines are put first.
    """
    d = result.cfg
    order = result.order
    keep = {k: v for k, v in d.items() if k not in INTERNAL_KEYS and not (k == "scale" and not v)}
    if keep.get("scale") and not keep.get("scales"):
        keep.pop("scale")
    head_lines, blocks = _split_blocks(template) if template else ([], [])
    sections = {}
    for key, lines in blocks:
        if key in ("backbone", "head"):
            sections[key] = _parse_section(lines, sum(1 for nd in order if nd.old is not None and nd.section == key))
    requests = {r.index: r.request for r in result.inserted}

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
                req = requests[i]
                comment = f"{i} {req.comment if req.comment is not None else f'{nd.module} inserted at {req.position}'}"
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
            return to_text(result, None, header=header if header is not None else head_lines, note=note)
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
    import os

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_yaml_text(cfg, insertions, identity_blend: bool = False, note: list[str] | None = None,
                    header: list[str] | None = None) -> tuple[str, InsertResult]:
    """Insert, build, and render: (YAML text, result). Reads the source text for its layout when ``cfg`` is a file."""
    from models.yolo import resolve_config

    result = insert(cfg, insertions, identity_blend=identity_blend)
    template = None
    if not isinstance(cfg, dict):
        template = resolve_config(cfg)[0].read_text()
    if note is None:
        note = [f"# Built by tools/insert.py from {Path(result.source).name}: "
                f"{' '.join(r.text for r in result.requests)}"]
    return to_text(result, template, header=header, note=note), result


def write_run_yaml(cfg, specs: list[str], save_dir, weights: str | None = None, identity_blend: bool = False) -> str:
    """train.py ``--attention``: insert ``specs`` into ``cfg`` (or, without one, into the YAML stored in ``weights``),
    write the result as ``save_dir/model.yaml`` and return its path. Raises :class:`InsertError` before writing."""
    if not cfg:
        if not weights:
            raise InsertError("--attention needs a model to insert into: give --cfg or --weights")
        from ultralytics.nn.tasks import load_checkpoint

        cfg = copy.deepcopy(getattr(load_checkpoint(weights)[0], "yaml", None))
        if not isinstance(cfg, dict):
            raise InsertError(f"{weights} stores no model YAML to insert into; give --cfg")
        cfg["yaml_file"] = f"{Path(weights).name} (its model YAML)"
    text, result = build_yaml_text(cfg, specs, identity_blend=identity_blend)
    path = Path(save_dir) / "model.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
    print(result.summary())
    return str(path)


def identity_support(channels: int = 64) -> str:
    """Which registered attention modules can start as the exact identity (``init_identity()``) and which cannot."""
    from models.attention_blocks import init_identity
    from models.registry import attention_specs

    native, blend = [], []
    for spec in attention_specs():
        (native if init_identity(spec.cls(channels)) else blend).append(spec.name)
    return (f"identity on their own ({len(native)}): {', '.join(native)}\n"
            f"need --identity-blend / ResidualBlend ({len(blend)}): {', '.join(blend)}")


# ----------------------------------------------------------------------------------------------------------------------
# CLI


def main(argv=None) -> int:
    import tools.common  # noqa: F401  (offline environment)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cfg", nargs="?", help="model YAML: a path or a name in configs/ (yolov5s.yaml picks scale s)")
    ap.add_argument("specs", nargs="*", help="MODULE[ARGS]@POSITION, e.g. CBAM@backbone_end SE@neck_outputs")
    ap.add_argument("-o", "--output", help="where to write the new YAML (default: print it)")
    ap.add_argument("--identity-blend", action="store_true",
                    help="wrap inserted modules that cannot start as the identity (SE, CBAM, ...) in ResidualBlend")
    ap.add_argument("--positions", action="store_true", help="list the layers and what each position name means")
    ap.add_argument("--identity-support", action="store_true",
                    help="list which attention modules can start as the identity on their own (the rest need --identity-blend)")
    args = ap.parse_args(argv)
    from models.yolo import ConfigError, load_config

    if args.identity_support:
        print(identity_support())
        return 0
    if not args.cfg:
        ap.error("give a model YAML")
    try:
        if args.positions:
            d = load_config(args.cfg)
            print(describe_positions(d, Path(d["yaml_file"]).name))
            return 0
        text, result = build_yaml_text(args.cfg, args.specs, identity_blend=args.identity_blend)
    except (InsertError, ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.output:
        write_text(Path(args.output), text)
        print(result.summary(), file=sys.stderr)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
