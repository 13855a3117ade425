"""YOLO detector built from a YAML: config loading, the parser, and the model class.

The parser reads YOLOv5 (v6+) and YOLOv7-style YAMLs (``depth_multiple``/``width_multiple`` or an
ultralytics ``scales:`` table) and builds an ``nn.Sequential`` of layers that ultralytics' trainer,
validator, predictor and exporter use unchanged.

Safety: a YAML is input from strangers. Layer names resolve only through the registry
(:data:`models.registry.LAYERS`); string arguments are symbols (``nc``, ``anchors``), Python literals
(parsed with ``ast.literal_eval``), plain words such as ``nearest``, or whitelisted activation
constructors. Nothing is ``eval``-ed.

Channels: attention rows take their input channel count from the ``from`` layer. A first argument,
when given, is the nominal width a YOLOv5 YAML writes before ``width_multiple``; it is scaled exactly
like a Conv's output and must equal the real input width, otherwise building fails with a message that
names the layer.
"""

from __future__ import annotations

import ast
import inspect
import re
from copy import deepcopy
from pathlib import Path

import torch
from torch import nn
from ultralytics.nn.modules import Detect
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import LOGGER, YAML
from ultralytics.utils.ops import make_divisible
from ultralytics.utils.torch_utils import initialize_weights

import models.attention  # noqa: F401  (registers the attention modules)
import models.common  # noqa: F401  (registers the building blocks)
import models.attention_blocks  # noqa: F401  (C3Att, ResidualBlend)
import models.heads  # noqa: F401  (anchor-based Detect / IDetect, YOLOv7 blocks)
from models.registry import LAYERS

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
SCALE_RE = re.compile(r"^(yolov\d+)([nsmlx])(-.+)?$")


class ConfigError(ValueError):
    """A model YAML that cannot be built; the message names the file, the layer and the argument."""


# ----------------------------------------------------------------------------------------------------------------------
# Config files


def resolve_config(cfg: str | Path) -> tuple[Path, str]:
    """Find a model YAML by path or bare name; return (path, scale letter or '').

    ``yolov5s-cbam.yaml`` resolves to ``configs/yolov5s-cbam.yaml`` if it exists, else to
    ``configs/yolov5-cbam.yaml`` with scale ``s`` (the ultralytics naming rule).
    """
    p = Path(cfg)
    if p.suffix not in (".yaml", ".yml"):
        p = p.with_name(p.name + ".yaml")
    stem = p.stem
    m = SCALE_RE.match(stem)
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


def load_config(cfg: str | Path | dict) -> dict:
    """Load a model YAML (path, bare name or dict) into a dict with ``yaml_file`` and ``scale`` set."""
    if isinstance(cfg, dict):
        d = deepcopy(cfg)
        d.setdefault("yaml_file", "<dict>")
        return d
    path, scale = resolve_config(cfg)
    try:
        d = YAML.load(path)
    except Exception as e:  # malformed YAML text
        raise ConfigError(f"{path}: not a valid YAML file: {e}") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: a model YAML must be a mapping with nc, backbone and head")
    d["scale"] = scale or d.get("scale", "")
    d["yaml_file"] = str(path)
    return d


# ----------------------------------------------------------------------------------------------------------------------
# Safe argument parsing

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
# The parser


def _check_from(f, i: int, where: str) -> list[int]:
    fs = f if isinstance(f, list) else [f]
    if not fs or not all(isinstance(x, int) and not isinstance(x, bool) for x in fs):
        raise ConfigError(f"{where}: 'from' must be an int or a list of ints, got {f!r}")
    for x in fs:
        j = i + x if x < 0 else x
        if i == 0 and x == -1:
            continue  # the image
        if not 0 <= j < i:
            raise ConfigError(f"{where}: 'from' index {x} points to layer {j}, but only layers 0..{i - 1} exist before it")
    return fs


def _bind(cls, args: list, kwargs: dict, where: str):
    try:
        inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as e:
        params = [p for p in inspect.signature(cls).parameters][1:]
        raise ConfigError(f"{where}: bad arguments for {cls.__name__}: {e}. It accepts: {', '.join(params)}") from None


def _activation_to_keyword(cls, args: list) -> dict:
    """Move an activation written positionally into ``act`` (YOLOv7 rows put it where ultralytics' Conv has ``d``)."""
    params = list(inspect.signature(cls).parameters)
    if "act" not in params:
        return {}
    for k, a in enumerate(args):
        if isinstance(a, nn.Module) and k != params.index("act"):
            del args[k]
            return {"act": a}
    return {}


def attention_args(spec, args: list, c_in: int, width: float, max_channels: float, where: str) -> tuple[list, dict]:
    """Split an attention row's arguments into (positional hyperparameters, keyword hyperparameters), checking channels."""
    args = list(args)
    kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        nominal = args.pop(0)
        scaled = make_divisible(min(nominal, max_channels) * width, 8)
        if scaled != c_in:
            exact = c_in / width if width else c_in
            fix = f"write {int(exact)}" if float(exact).is_integer() and make_divisible(min(exact, max_channels) * width, 8) == c_in else "omit it"
            raise ConfigError(
                f"{where}: {spec.name} was given {nominal} channels, which width_multiple {width:g} scales to {scaled}, "
                f"but its input (the 'from' layer) has {c_in} channels. Fix the first argument ({fix}) or leave it out: "
                "attention modules take their input channels from the 'from' layer."
            )
    _bind(spec.cls, [c_in, *args], kwargs, where)
    return args, kwargs


def parse_model(d: dict, ch: int = 3, verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
    """Build the layers of a YOLO YAML dict. Returns (layers, indices of layers whose outputs are kept)."""
    source = d.get("yaml_file", "<dict>")
    for key in ("nc", "backbone", "head"):
        if key not in d:
            raise ConfigError(f"{source}: missing required key '{key}'")
    nc = d["nc"]
    scales, scale = d.get("scales"), d.get("scale")
    max_channels = float("inf")
    depth, width = d.get("depth_multiple", 1.0), d.get("width_multiple", 1.0)
    if scales:
        if not scale:
            scale = next(iter(scales))
            LOGGER.warning(f"{source}: no scale letter in the model name, using scale '{scale}'")
        if scale not in scales:
            raise ConfigError(f"{source}: scale '{scale}' not in scales {list(scales)}")
        depth, width, max_channels = scales[scale]
    if d.get("activation"):
        try:
            act = parse_activation(d["activation"])
        except ValueError as e:
            raise ConfigError(f"{source}: activation: {e}") from None
        from ultralytics.nn.modules import Conv

        Conv.default_act = act
    symbols = {"nc": nc, "anchors": d.get("anchors")}

    if verbose:
        LOGGER.info(f"\n{'':>3}{'from':>20}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}")
    rows = list(d["backbone"]) + list(d["head"])
    chs: list[int] = []
    layers, save = [], []
    for i, row in enumerate(rows):
        where = f"{source}: layer {i}"
        if not isinstance(row, (list, tuple)) or len(row) != 4:
            raise ConfigError(f"{where}: each row must be [from, number, module, args], got {row!r}")
        f, n, name, args = row
        if not isinstance(name, str):
            raise ConfigError(f"{where}: module name must be a string, got {name!r}")
        where = f"{source}: layer {i} ({name})"
        try:
            spec = LAYERS.get(name)
        except KeyError as e:
            raise ConfigError(f"{where}: {e.args[0]}") from None
        fs = _check_from(f, i, where)
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"{where}: 'number' must be a positive int, got {n!r}")
        if not isinstance(args, list):
            raise ConfigError(f"{where}: args must be a list, got {args!r}")
        args = parse_arg(args, symbols, where)
        if "dispatch" in spec.extra:  # one YAML name, several classes: Detect [nc, anchors] -> AnchorDetect
            spec = LAYERS.get(spec.extra["dispatch"](args))
        c_from = [ch if (i == 0 and x == -1) else chs[x] for x in fs]
        c1 = c_from[0]
        n_ = n = max(round(n * depth), 1) if n > 1 else n
        kwargs = {}
        kind = spec.kind
        if kind in ("conv", "repeat"):
            if not args or not isinstance(args[0], int):
                raise ConfigError(f"{where}: first argument must be the output channel count, got {args!r}")
            c2 = make_divisible(min(args[0], max_channels) * width, 8)
            args = [c1, c2, *args[1:]]
            if kind == "repeat":
                args.insert(2, n)
                n = 1
            kwargs = _activation_to_keyword(spec.cls, args)
        elif kind == "attention":
            hyper, kwargs = attention_args(spec, args, c1, width, max_channels, where)
            args, c2 = [c1, *hyper], c1
        elif kind == "concat":
            c2 = sum(c_from)
        elif kind == "head":
            args = spec.extra["make_args"](args, c_from, d)
            c2 = None
            if "legacy" in spec.extra:
                spec.cls.legacy = spec.extra["legacy"]
        elif kind == "norm":
            args, c2 = [c1], c1
        elif kind == "passthrough":
            c2 = c1
        elif "make_args" in spec.extra:  # custom kinds registered by other modules
            args, c2 = spec.extra["make_args"](args, c_from, d, width=width, max_channels=max_channels)
        else:
            raise ConfigError(f"{where}: layer kind '{kind}' has no parser rule")
        try:
            m_ = nn.Sequential(*(spec.cls(*args, **kwargs) for _ in range(n))) if n > 1 else spec.cls(*args, **kwargs)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"{where}: building {name}{tuple(args)} failed: {type(e).__name__}: {e}") from e
        if "post_build" in spec.extra:  # e.g. SPPF: YOLOv5 rows keep the activation on cv1
            spec.extra["post_build"](m_, args)
        m_.np = sum(x.numel() for x in m_.parameters())
        m_.i, m_.f, m_.type = i, f, name
        if verbose:
            shown = [*args, kwargs] if kwargs else args
            shown = [a if not isinstance(a, nn.Module) else type(a).__name__ for a in shown]
            LOGGER.info(f"{i:>3}{f!s:>20}{n_:>3}{m_.np:10.0f}  {name:<40}{shown!s:<30}")
            for note in getattr(m_, "build_notes", []) or []:
                LOGGER.info(f"{'':>36}note: {note}")
        save.extend(x % i for x in fs if x != -1)
        layers.append(m_)
        chs.append(c2)
    return nn.Sequential(*layers), sorted(set(save))


# ----------------------------------------------------------------------------------------------------------------------
# The model


class AttentionDetectionModel(DetectionModel):
    """ultralytics ``DetectionModel`` built by our parser. Trainer, validator, predictor and exporter use it unchanged."""

    def __init__(self, cfg: str | Path | dict = "yolov5s.yaml", ch: int = 3, nc: int | None = None, verbose: bool = True):
        nn.Module.__init__(self)
        self.yaml = load_config(cfg)
        self.yaml["channels"] = ch
        if nc and nc != self.yaml["nc"]:
            if verbose:
                LOGGER.info(f"Overriding model.yaml nc={self.yaml['nc']} with nc={nc}")
            self.yaml["nc"] = nc
        from ultralytics.nn.modules import Conv

        default_act = Conv.default_act
        try:
            self.model, self.save = parse_model(deepcopy(self.yaml), ch=ch, verbose=verbose)
        finally:
            Conv.default_act = default_act  # process-wide state: restore
        self.names = {i: f"{i}" for i in range(self.yaml["nc"])}
        self.inplace = self.yaml.get("inplace", True)

        head = self.model[-1]
        if isinstance(head, Detect):
            s = 256
            head.inplace = self.inplace
            self.model.eval()
            head.training = True
            with torch.no_grad():
                feats = self.forward(torch.zeros(1, ch, s, s))
            feats = feats["feats"] if isinstance(feats, dict) else feats
            head.stride = torch.tensor([s / x.shape[-2] for x in feats])
            self.stride = head.stride
            self.model.train()
            head.bias_init()
        elif hasattr(head, "setup_strides"):  # custom heads (e.g. anchor-based) compute their own strides
            self.stride = head.setup_strides(self, ch)
        else:
            self.stride = torch.Tensor([32])
        initialize_weights(self)
        if verbose:
            self.info()
            LOGGER.info("")

    def init_criterion(self):
        """The head's own loss when it has one (anchor-based heads: YOLOv5's loss), else ultralytics' default."""
        head = self.model[-1]
        return head.make_criterion(self) if hasattr(head, "make_criterion") else super().init_criterion()

    def fuse(self, verbose: bool = True, imgsz: int = 640):
        """ultralytics' Conv+BN / RepConv fusion, plus the head's own (YOLOv7 IDetect folds its implicit layers)."""
        head = self.model[-1]
        if not isinstance(head, Detect) and hasattr(head, "fuse"):
            head.fuse()
        return super().fuse(verbose=verbose, imgsz=imgsz)


def build_model(cfg: str | Path | dict, nc: int | None = None, ch: int = 3, verbose: bool = False) -> AttentionDetectionModel:
    """Convenience: build a model from a config path, bare name or dict."""
    return AttentionDetectionModel(cfg, ch=ch, nc=nc, verbose=verbose)
