"""Blocks that place a registered attention module inside (or around) another computation.

- :class:`C3Att`: YOLOv5's C3 with an attention module inside every bottleneck, after the 3x3 conv and
  before the residual add (the ``C3_CBAM``/``C3SE``/... blocks of the "add attention to YOLOv5" posts,
  written once for every module). The attention is named in the YAML row and resolved through the
  registry::

      - [-1, 3, C3Att, [256, CBAM]]                                  # shortcut on (as C3)
      - [-1, 3, C3Att, [256, False, SE]]                             # head-style C3, no shortcut
      - [-1, 3, C3Att, [256, False, {attention: CBAM, reduction: 8}]]  # hyperparameters of the attention

  Its state-dict keys extend C3's (``cv1``, ``cv2``, ``cv3``, ``m.<k>.cv1``, ``m.<k>.cv2`` plus
  ``m.<k>.att.*``), so weights of a C3 in the same place of a pretrained model transfer into it
  (``TRANSFER_FROM``), and with its attention at identity it computes exactly what that C3 computed.

- :class:`ELANAtt`: YOLOv7's ELAN as one block with an attention module closing each of its stages
  (``[-1, 2, ELANAtt, [256, CBAM]]``), the same generic mechanism.

- :class:`ResidualBlend`: ``y = x + alpha * (f(x) - x)`` with a learnable per-channel ``alpha``
  starting at 0. It exists for one reason: gating modules such as SE or CBAM (``x * sigmoid(...)``)
  cannot be initialised to compute the identity exactly, so a model with one inserted cannot start
  from exactly what a pretrained model computed. Wrapped, they can. It changes the architecture (one
  extra parameter per channel, a learnt blend instead of the paper's plain gate), so it is never
  applied silently: it is written in the YAML (``[-1, 1, ResidualBlend, [CBAM]]``), chosen with
  ``--identity-blend`` (tools/insert.py, train.py) or ``{blend: true}`` in a C3Att row, and only
  used for modules that have no exact identity initialisation of their own.
"""

from __future__ import annotations

import torch
from torch import nn
from ultralytics.nn.modules import C3, Bottleneck

from models.registry.protocol import IdentityInit, init_identity
from models.registry import (LAYERS, ConfigError, RowContext, attention_arguments, attention_spec, bind_arguments,
                             is_int)


def attention_factory(name: str, args: list | tuple = (), kwargs: dict | None = None, blend: bool = False,
                      where: str = "attention"):
    """Return ``make(c) -> nn.Module`` for the registered attention ``name`` with the given hyperparameters.

    The arguments are bound as the parser binds an attention row's (:func:`models.registry.bind_arguments`, old
    hyperparameter names accepted); a wrong name or argument raises :class:`ConfigError` naming ``where``.
    """
    spec = attention_spec(name, where)
    args = list(args)
    kwargs = bind_arguments(spec.cls, [8, *args], dict(kwargs or {}), f"{where}: {name}", spec.renamed)
    if blend:
        return lambda c: ResidualBlend(c, name, args, kwargs)
    return lambda c: spec.cls(c, *args, **kwargs)


class ResidualBlend(IdentityInit, nn.Module):
    """``x + alpha * (f(x) - x)``: a blend of the input and an attention module's output, ``alpha`` per channel.

    ``alpha`` starts at 0 (the block is the identity) and is learnt; ``alpha = 1`` gives the plain module.
    At ``alpha = 0`` the wrapped module's own parameters receive no gradient in the first step; they start
    learning once ``alpha`` moves (the same dynamics as zero-initialised residual branches).
    """

    def __init__(self, c1: int, module: str, args: list | tuple = (), kwargs: dict | None = None, alpha: float = 0.0):
        super().__init__()
        self.name = module
        self.inner = attention_factory(module, args, kwargs)(c1)
        self.alpha = nn.Parameter(torch.full((1, c1, 1, 1), float(alpha)))

    @property
    def label(self) -> str:
        return f"ResidualBlend({self.name})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * (self.inner(x) - x)

    def init_identity(self) -> bool:
        with torch.no_grad():
            self.alpha.zero_()
        return True

    def extra_repr(self) -> str:
        return f"module={self.name}"


def _blend_args(args: list, row: RowContext) -> tuple[list, int]:
    """Parser rule for ``[from, n, ResidualBlend, [(channels,) Module, *hyperparameters, ({keywords})]]``."""
    c1 = row.c_from[0]
    args = list(args)
    nominal = [args.pop(0)] if args and is_int(args[0]) else []
    if not args or not isinstance(args[0], str):
        raise ConfigError(f"{row.where}: first argument must be the attention module's name, e.g. "
                          f"[-1, 1, ResidualBlend, [CBAM]]; got {[*nominal, *args]!r}")
    name = args.pop(0)
    spec = attention_spec(name, row.where)
    hyper, kwargs = attention_arguments(spec, [*nominal, *args], c1, f"{row.where}: {name}", row.width, row.max_channels)
    return [c1, name, hyper, kwargs], c1


LAYERS.add(ResidualBlend, kind="custom", make_args=_blend_args, shape_preserving=True)


class BottleneckAtt(Bottleneck):
    """YOLOv5 bottleneck with attention after its 3x3 conv: ``x + att(cv2(cv1(x)))`` (no ``x +`` without shortcut)."""

    def __init__(self, c1: int, c2: int, make_attention, shortcut: bool = True, g: int = 1, k=(3, 3), e: float = 0.5):
        super().__init__(c1, c2, shortcut, g, k, e)
        self.att = make_attention(c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.att(self.cv2(self.cv1(x)))
        return x + y if self.add else y


C3_OPTIONS = ("attention", "shortcut", "g", "e", "blend")


def parse_block_options(block: str, options: tuple, allowed: tuple = C3_OPTIONS) -> dict:
    """Read a block row's options: an attention name, a shortcut bool, and/or one dict of keywords.

    Dict keys in ``allowed`` (C3Att: ``attention``, ``shortcut``, ``g``, ``e``, ``blend``) configure the block;
    any other key is a keyword hyperparameter of the attention module.
    """
    out: dict = {"attention_kwargs": {}}
    for opt in options:
        if isinstance(opt, bool) and "shortcut" in allowed:
            key, val = "shortcut", opt
        elif isinstance(opt, nn.Module) and "act" in allowed:  # YOLOv7 rows name the activation, e.g. nn.LeakyReLU(0.1)
            key, val = "act", opt
        elif isinstance(opt, str):
            key, val = "attention", opt
        elif isinstance(opt, dict):
            for k, v in opt.items():
                if k in allowed:
                    if k in out:
                        raise ValueError(f"{block}: '{k}' given twice")
                    out[k] = v
                else:
                    out["attention_kwargs"][k] = v
            continue
        else:
            flag = ", a shortcut flag (True/False)" if "shortcut" in allowed else ""
            raise ValueError(f"{block}: option {opt!r} not understood; after the output channels give an attention "
                             f"name (CBAM){flag} and/or a dict with keys {', '.join(allowed)} "
                             "and the attention's hyperparameters")
        if key in out:
            raise ValueError(f"{block}: '{key}' given twice ({out[key]!r} and {val!r})")
        out[key] = val
    if "attention" not in out:
        raise ValueError(f"{block}: name the attention module, e.g. [256, CBAM] or [256, False, {{attention: SE}}]")
    return out


class C3Att(IdentityInit, C3):
    """C3 whose bottlenecks each carry an attention module chosen by name (see the module docstring)."""

    TRANSFER_FROM = ("C3",)  # a C3 in the same place of a pretrained model transfers its weights into this block

    def __init__(self, c1: int, c2: int, n: int = 1, *options):
        o = parse_block_options("C3Att", options)
        shortcut, g, e = o.get("shortcut", True), o.get("g", 1), o.get("e", 0.5)
        make = attention_factory(o["attention"], (), o["attention_kwargs"], blend=bool(o.get("blend", False)))
        super().__init__(c1, c2, 0, shortcut, g, e)  # n=0: the bottlenecks are built here
        c_ = int(c2 * e)
        self.attention = o["attention"]
        self.m = nn.Sequential(*(BottleneckAtt(c_, c_, make, shortcut, g, k=((1, 1), (3, 3)), e=1.0) for _ in range(n)))

    @property
    def label(self) -> str:
        return f"C3Att({self.attention})"

    def init_identity(self) -> bool:
        """Set every inner attention to the identity: the block then computes what a C3 with its weights does."""
        return all([init_identity(b.att) for b in self.m])  # list: call every one, even after a failure

    def extra_repr(self) -> str:
        return f"attention={self.attention}"


LAYERS.add(C3Att, kind="repeat")


ELAN_OPTIONS = ("attention", "e", "depth", "blend", "act")


class ELANAtt(IdentityInit, nn.Module):
    """YOLOv7's ELAN written as one block, with an attention module after each of its computational stages.

    YOLOv7's YAMLs spell an ELAN as rows (two 1x1 Conv branches ``a``, ``b``; ``n`` stages of ``depth`` 3x3
    convs on ``b``; Concat of every stage output with ``b`` and ``a``; a 1x1 Conv). Here it is one layer and
    each stage ends with the named attention, inside the aggregation::

        - [-1, 2, ELANAtt, [256, CBAM]]                      # yolov7 backbone ELAN: hidden c2/4, 2 convs per stage
        - [-1, 2, ELANAtt, [64, {attention: SE, e: 0.5, depth: 1}, nn.LeakyReLU(0.1)]]  # yolov7-tiny ELAN

    ``number`` (scaled by depth_multiple) is the stage count. The activation, when given, goes to every conv.
    Weights of ELAN rows do not transfer into the block (different layer granularity); with the attention at
    identity it computes what such an ELAN computes.
    """

    def __init__(self, c1: int, c2: int, n: int = 2, *options, act=True):
        super().__init__()
        from ultralytics.nn.modules import Conv

        o = parse_block_options("ELANAtt", options, allowed=ELAN_OPTIONS)
        act = o.get("act", act)
        e, depth = float(o.get("e", 0.25)), int(o.get("depth", 2))
        if not (0 < e <= 1) or depth < 1 or n < 1:
            raise ValueError(f"ELANAtt: need 0 < e <= 1, depth >= 1 and at least one stage; got e={e}, depth={depth}, n={n}")
        make = attention_factory(o["attention"], (), o["attention_kwargs"], blend=bool(o.get("blend", False)))
        c_ = max(int(c2 * e), 1)
        self.attention = o["attention"]
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c1, c_, 1, 1, act=act)
        self.stages = nn.ModuleList(
            nn.Sequential(*(Conv(c_, c_, 3, 1, act=act) for _ in range(depth)), make(c_)) for _ in range(n)
        )
        self.cv3 = Conv((2 + n) * c_, c2, 1, 1, act=act)

    @property
    def label(self) -> str:
        return f"ELANAtt({self.attention})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x), self.cv2(x)]
        for stage in self.stages:
            y.append(stage(y[-1]))
        return self.cv3(torch.cat(y[::-1], 1))  # YOLOv7's order: last stage first, branch a last

    def init_identity(self) -> bool:
        return all([init_identity(stage[-1]) for stage in self.stages])

    def extra_repr(self) -> str:
        return f"attention={self.attention}"


LAYERS.add(ELANAtt, kind="repeat")
