"""Model YAMLs as data: finding and loading them, the scale rule, safe argument values, ``from`` references.

Safety: a YAML is input from strangers. String arguments are symbols (``nc``, ``anchors``), Python
literals (parsed with ``ast.literal_eval``), plain words such as ``nearest``, or whitelisted activation
constructors. Nothing is ``eval``-ed.
"""

from __future__ import annotations

import ast
import re
from copy import deepcopy
from pathlib import Path

import yaml
from torch import nn
from ultralytics.utils import LOGGER

from models.registry import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs"
SCALE_RE = re.compile(r"^(yolov\d+)([nsmlx])(-.+)?$")
INPUT = -1  # a 'from' reference to the image (first row only)


# ----------------------------------------------------------------------------------------------------------------------
# Files


def resolve_config(cfg: str | Path) -> tuple[Path, str]:
    """Find a model YAML by path or bare name; return (path, scale letter or '').

    ``yolov5s-cbam.yaml`` resolves to ``configs/yolov5s-cbam.yaml`` if it exists, else to
    ``configs/yolov5-cbam.yaml`` with scale ``s`` (the ultralytics naming rule).
    """
    p = Path(cfg)
    if p.suffix not in (".yaml", ".yml"):
        p = p.with_name(p.name + ".yaml")
    m = SCALE_RE.match(p.stem)
    scale = m.group(2) if m else ""
    unified = f"{m.group(1)}{m.group(3) or ''}{p.suffix}" if m else None
    candidates = [p, CONFIG_DIR / p.name]
    if unified:
        candidates += [p.with_name(unified), CONFIG_DIR / unified]
    for c in candidates:
        if c.is_file():
            return c.resolve(), scale
    available = sorted(x.name for x in CONFIG_DIR.glob("*.yaml"))
    raise FileNotFoundError(
        f"model config '{cfg}' not found (looked for {', '.join(str(c) for c in candidates)}). "
        f"Configs in {CONFIG_DIR}: {', '.join(available)}"
    )


MAX_YAML_BYTES = 1 << 20  # a model YAML is a few KB; a 1 MB one is not a model


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
    try:
        return yaml.load(text, Loader=_ModelYamlLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.MarkedYAMLError as e:  # one line: where, then what (PyYAML's own text adds a quoted snippet)
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = "; ".join(str(t) for t in (e.context, e.problem) if t)
        raise ConfigError(f"{path}: not a valid model YAML: {where}{what}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not a valid model YAML: {' '.join(str(e).split())}") from None


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
# Safe argument values

ACTIVATIONS = {
    "SiLU": nn.SiLU,
    "ReLU": nn.ReLU,
    "ReLU6": nn.ReLU6,
    "LeakyReLU": nn.LeakyReLU,
    "Hardswish": nn.Hardswish,
    "Mish": nn.Mish,
    "GELU": nn.GELU,
    "Sigmoid": nn.Sigmoid,
    "Tanh": nn.Tanh,
    "Identity": nn.Identity,
}
ACT_RE = re.compile(r"^\s*(?:nn\.|torch\.nn\.)?(\w+)\s*\((.*)\)\s*$", re.S)
WORD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def parse_activation(spec: str) -> nn.Module:
    """Build an activation from text like ``nn.LeakyReLU(0.1)``: whitelisted class, literal arguments only."""
    m = ACT_RE.match(spec)
    if not m or m.group(1) not in ACTIVATIONS:
        raise ValueError(f"'{spec}' is not an allowed activation; allowed: {', '.join(f'nn.{k}(...)' for k in ACTIVATIONS)}")
    name, inner = m.groups()
    try:
        call = ast.parse(f"f({inner})", mode="eval").body
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError) as e:
        raise ValueError(f"'{spec}': activation arguments must be literals") from e
    return ACTIVATIONS[name](*args, **kwargs)


def parse_arg(a, symbols: dict, where: str):
    """Resolve one YAML argument: symbols, literals and plain words; reject anything that looks like code."""
    if isinstance(a, str):
        if a in symbols:
            return symbols[a]
        try:
            return ast.literal_eval(a)
        except (ValueError, SyntaxError):
            pass
        if ACT_RE.match(a):
            try:
                return parse_activation(a)
            except ValueError as e:
                raise ConfigError(f"{where}: {e}") from None
        if WORD_RE.match(a):
            return a  # e.g. 'nearest'
        raise ConfigError(f"{where}: argument {a!r} is not a number, literal, known symbol or plain word; "
                          "YAML arguments are never evaluated as code")
    if isinstance(a, list):
        return [parse_arg(x, symbols, where) for x in a]
    if isinstance(a, dict):
        return {k: parse_arg(v, symbols, where) for k, v in a.items()}
    return a


# ----------------------------------------------------------------------------------------------------------------------
# Rows and 'from' references


def rows_of(d: dict) -> list:
    """The layer rows of a model dict, backbone then head; :class:`ConfigError` when either is not a list."""
    source = d.get("yaml_file", "<dict>")
    for key in ("backbone", "head"):
        if key not in d:
            raise ConfigError(f"{source}: missing required key '{key}'")
        if not isinstance(d[key], list):
            raise ConfigError(f"{source}: '{key}' must be a list of [from, number, module, args] rows")
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
