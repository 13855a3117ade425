"""Read: a model YAML file -> a checked dict. Finding the file (path or bare name, the scale letter in the name),
loading it safely (a strict YAML loader, size and encoding limits), the model keys (``nc``, scales, multiples,
``activation``) and the rows' ``from`` references. Argument values are read in :mod:`models.registry.values`.
"""

from __future__ import annotations

import difflib
import math
import re
from copy import deepcopy
from pathlib import Path

import ultralytics
import yaml
from ultralytics.utils import LOGGER

from models.registry.values import parse_activation
from models.registry import ConfigError, is_int

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs"
PACKAGED_DIR = Path(ultralytics.__file__).parent / "cfg" / "models"  # ultralytics' own YAMLs, one folder per family
# ultralytics' naming rule (ultralytics/nn/tasks.py guess_model_scale and yaml_model_load): the scale letter follows
# the version number anywhere in the name (my_yolov5s_cbam, yolov8s_ca, yolo11s-cbam: 's'), and the file that defines
# the scales is the name without it (yolo11s-cbam.yaml -> yolo11-cbam.yaml); yolov5s6 / yolov8s6 mean yolov5s-p6.
SCALE_RE = re.compile(r"yolo(e-)?v?\d+([nslmx])")
UNIFIED_RE = re.compile(r"(\d+)([nslmx])(.+)?$")
OLD_P6_RE = re.compile(r"^(yolov[58][nslmx])6$")
INPUT = -1  # a 'from' reference to the image (first row only)


# ----------------------------------------------------------------------------------------------------------------------
# Files


def scale_from_name(name: str | Path) -> str:
    """The scale letter in a model file's name by ultralytics' rule ('' when it has none): ``yolo11s-cbam.yaml`` and
    ``my_yolov5s_cbam.yaml`` -> 's'; ``yolov9c.yaml``, ``yolov7-tiny.yaml``, ``model.yaml`` -> ''."""
    m = SCALE_RE.search(Path(name).stem)
    return m.group(2) if m else ""


def resolve_config(cfg: str | Path) -> tuple[Path, str]:
    """Find a model YAML by path or bare name; return (path, scale letter or '').

    ``yolo11s-cbam.yaml`` resolves to ``configs/yolo11s-cbam.yaml`` if it exists, else to ``configs/yolo11-cbam.yaml``
    with scale ``s`` (the ultralytics naming rule, :func:`scale_from_name`); a bare name found in neither place is
    looked up among the YAMLs the installed ultralytics ships (``yolov9c.yaml``, ``yolov8n-p2.yaml``), as ultralytics
    itself does.
    """
    p = Path(cfg)
    if p.suffix not in (".yaml", ".yml"):
        p = p.with_name(p.name + ".yaml")
    if OLD_P6_RE.match(p.stem):
        p = p.with_name(OLD_P6_RE.sub(r"\1-p6", p.stem) + p.suffix)
    scale = scale_from_name(p)
    unified = UNIFIED_RE.sub(r"\1\3", p.name) if scale else None
    candidates = [p, CONFIG_DIR / p.name]
    if unified:
        candidates += [p.with_name(unified), CONFIG_DIR / unified]
    if len(p.parts) == 1:  # a bare name: ultralytics' own files last
        candidates += [c for name in (p.name, unified) if name for c in sorted(PACKAGED_DIR.glob(f"*/{name}"))]
    for c in candidates:
        if c.is_file():
            return c.resolve(), scale
    available = sorted({x.name for x in CONFIG_DIR.glob("*.yaml")} | {x.name for x in PACKAGED_DIR.glob("*/*.yaml")})
    close = difflib.get_close_matches(unified or p.name, available, n=5, cutoff=0.6)
    raise FileNotFoundError(
        f"model config '{cfg}' not found (looked for {', '.join(str(c) for c in candidates)} and among the YAMLs "
        f"ultralytics ships).{' Closest: ' + ', '.join(close) + '.' if close else ''} {len(available)} configs: "
        f"{CONFIG_DIR}/ (<family>-<module>.yaml, e.g. yolo11-cbam.yaml) and ultralytics' cfg/models"
    )


MAX_YAML_BYTES = 1 << 20  # a model YAML is a few KB; a 1 MB one is not a model
MAX_NESTING = 32  # lists and mappings inside each other; a model YAML needs about 6 (an argument list in a row)


class _ModelYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter: no anchors or aliases (an alias bomb expands exponentially in anything that
    walks the tree) and no duplicate keys (a second ``nc:`` silently replaced the first)."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.MarkedYAMLError(None, None, "YAML anchors and aliases (&name, *name, <<) are not allowed in a "
                                       "model YAML: write the values out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.MarkedYAMLError(None, None, f"key {key!r} appears twice (first on line {seen[key]}); "
                                               "keep one", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: let the constructor report it
                pass
        return super().construct_mapping(node, deep)


def read_yaml(path: Path):
    """A model YAML's content: UTF-8 text (a bad byte is an error naming its line), under 1 MB, strict loader."""
    data = Path(path).read_bytes()
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: {len(data):,} bytes is too large for a model YAML (limit {MAX_YAML_BYTES:,})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: byte 0x{data[e.start]:02x} is not UTF-8 text; save the file as UTF-8 "
                          "(a name with a stray byte would not be the layer you meant)") from None
    too_deep = ConfigError(f"{path}: lists or mappings nested more than {MAX_NESTING} levels deep, which no model YAML "
                           "needs (a row's arguments nest about 3); check the brackets of the rows")
    try:
        d = yaml.load(text, Loader=_ModelYamlLoader)  # noqa: S506  (a SafeLoader subclass)
    except RecursionError:
        raise too_deep from None
    except yaml.MarkedYAMLError as e:  # one line: where, then what (PyYAML's own text adds a quoted snippet)
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = "; ".join(str(t) for t in (e.context, e.problem) if t)
        raise ConfigError(f"{path}: not a valid model YAML: {where}{what}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not a valid model YAML: {' '.join(str(e).split())}") from None
    if _nesting(d) > MAX_NESTING:
        raise too_deep
    return d


def _nesting(obj) -> int:
    """How deeply lists and mappings nest in ``obj`` (counted without recursion)."""
    deepest, todo = 0, [(obj, 1)]
    while todo:
        o, depth = todo.pop()
        if isinstance(o, (list, tuple, dict)):
            deepest = max(deepest, depth)
            if depth <= MAX_NESTING:
                todo += [(v, depth + 1) for v in (o.values() if isinstance(o, dict) else o)]
    return deepest


def load_config(cfg: str | Path | dict) -> dict:
    """Load a model YAML (path, bare name or dict) into a dict with ``yaml_file`` and ``scale`` set."""
    if isinstance(cfg, dict):
        d = deepcopy(cfg)
        d.setdefault("yaml_file", "<dict>")
        return d
    path, scale = resolve_config(cfg)
    d = read_yaml(path)
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: a model YAML must be a mapping with nc, backbone and head")
    d["scale"] = scale or d.get("scale", "")
    d["yaml_file"] = str(path)
    return d


# ----------------------------------------------------------------------------------------------------------------------
# Scale


def model_scale(d: dict, warn: bool = True) -> tuple[float, float, float, str]:
    """(depth_multiple, width_multiple, max_channels, scale letter) of a model dict.

    A ``scales:`` table (ultralytics form) is indexed by the dict's ``scale`` letter; without one the first
    scale is used (with a warning). Classic YAMLs give ``depth_multiple``/``width_multiple`` directly.
    """
    source = d.get("yaml_file", "<dict>")
    scales, scale = d.get("scales"), d.get("scale") or ""
    if not scales:
        return d.get("depth_multiple", 1.0), d.get("width_multiple", 1.0), float("inf"), scale
    if not isinstance(scales, dict):
        raise ConfigError(f"{source}: scales must be a mapping of letter -> [depth, width, max_channels]")
    if not scale:
        scale = next(iter(scales))
        if warn:
            LOGGER.warning(f"{source}: no scale letter in the model name, using scale '{scale}'")
    if scale not in scales:
        raise ConfigError(f"{source}: scale '{scale}' not in scales {list(scales)}")
    depth, width, max_channels = scales[scale]
    return depth, width, max_channels, scale


def with_scale(d: dict) -> dict:
    """A copy of ``d`` whose scale letter is set (the first of its ``scales:`` when it names none)."""
    d = deepcopy(d)
    if d.get("scales") and not d.get("scale"):
        d["scale"] = model_scale(d, warn=False)[3]
    return d


# ----------------------------------------------------------------------------------------------------------------------
# Rows and 'from' references


def rows_of(d: dict) -> list:
    """The layer rows of a model dict, backbone then head; :class:`ConfigError` when either is not a list."""
    source = d.get("yaml_file", "<dict>")
    example = {"backbone": "- [-1, 1, Conv, [64, 6, 2, 2]]", "head": "- [[17, 20, 23], 1, Detect, [nc]]"}
    for key in ("backbone", "head"):
        fix = (f"list its layers under '{key}:', one row '- [from, number, module, args]' a line, e.g. "
               f"'{example[key]}' (configs/yolov5.yaml is a whole model)")
        if key not in d:
            raise ConfigError(f"{source}: missing required key '{key}': {fix}")
        if d[key] is None or (d[key] == [] and key == "backbone"):  # (an empty head: a backbone alone, as parsed in tests)
            raise ConfigError(f"{source}: '{key}' is empty: {fix}")
        if not isinstance(d[key], list):
            raise ConfigError(f"{source}: '{key}' must be a list of [from, number, module, args] rows, got "
                              f"{type(d[key]).__name__}: {fix}")
    return list(d["backbone"]) + list(d["head"])


def resolve_from(f, i: int, where: str) -> list[int]:
    """Absolute layer indices a row's ``from`` refers to (:data:`INPUT` for the image); checks every reference.

    ``f`` is an int or a list of ints, relative (negative) or absolute; every reference must point at an
    earlier layer (the first row may read the image with -1).
    """
    fs = f if isinstance(f, list) else [f]
    if not fs or not all(isinstance(x, int) and not isinstance(x, bool) for x in fs):
        raise ConfigError(f"{where}: 'from' must be an int or a list of ints, got {f!r}")
    out = []
    for x in fs:
        if i == 0 and x == -1:
            out.append(INPUT)
            continue
        j = i + x if x < 0 else x
        if not 0 <= j < i:
            raise ConfigError(f"{where}: 'from' index {x} points to layer {j}, but only layers 0..{i - 1} exist before it")
        out.append(j)
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Checks of the model keys

# Bounds: a typo (width_multiple 25 for 0.25, a repeat count of 1e9) must be a clear error, not a hang or an
# out-of-memory crash. They are far above every published YOLO model (yolov5x: depth 1.33, width 1.25, 12 repeats,
# 1280 channels; yolov7-e6e: 151 M parameters).
MAX_MULTIPLE = 4.0  # depth_multiple, width_multiple
MAX_REPEATS = 100  # a row's repeat count after depth scaling
MAX_CHANNELS = 8192  # a layer's output channels after width scaling
MAX_PARAMS = 1_000_000_000  # the whole model (4 GB of fp32 weights, four times that to train)
SCREEN_PARAMS = 50_000_000  # above this rough row-by-row estimate, the exact count is taken before allocating


def check_model_keys(d: dict, source: str) -> None:
    if "nc" not in d:
        raise ConfigError(f"{source}: missing required key 'nc' (the number of classes)")
    nc = d["nc"]
    if not is_int(nc) or nc < 1:
        raise ConfigError(f"{source}: nc must be a positive whole number of classes, got {nc!r}")


def _number(v, key: str, source: str) -> float:
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise ConfigError(f"{source}: {key} must be a number, got {v!r}") from None
        raise ConfigError(f"{source}: {key}: {v!r} was read as text (YAML 1.1 needs a decimal point and a signed "
                          f"exponent, e.g. 1.0e+6); write it as a plain number, e.g. {v:g}")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{source}: {key} must be a finite number, got {v!r}")
    return float(v)


def check_multiples(depth, width, source: str) -> None:
    for key, v in (("depth_multiple", depth), ("width_multiple", width)):
        v = _number(v, key, source)
        if not 0 < v <= MAX_MULTIPLE:
            hint = f" (did you mean {v / 100:g}?)" if v > MAX_MULTIPLE and v / 100 <= MAX_MULTIPLE else ""
            raise ConfigError(f"{source}: {key} must be in (0, {MAX_MULTIPLE:g}], got {v:g}{hint}; yolov5n..x use "
                              "depth 0.33-1.33 and width 0.25-1.25")


def model_activation(d: dict, source: str):
    """The model's ``activation:`` (e.g. ``nn.LeakyReLU(0.1)``) as a module, None when the YAML names none."""
    if not d.get("activation"):
        return None
    try:
        return parse_activation(d["activation"])
    except ValueError as e:
        raise ConfigError(f"{source}: activation: {e}") from None
