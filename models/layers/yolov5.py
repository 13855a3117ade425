"""Classic YOLOv5 layers where ultralytics' block of the same name differs, and the YOLOv5 layers it lacks.

YOLOv5 (ultralytics/yolov5, releases v3.0 to v7.0) and ultralytics 8 share most block names, and most
blocks are the same: ``Conv``, ``DWConv``, ``Focus``, ``SPP``, ``SPPF``, ``C3``, ``C3x``, ``C3TR``,
``C3Ghost``, ``GhostConv``, ``GhostBottleneck`` build YOLOv5's exact layers from ultralytics' classes.
Two names mean different layers:

- ``Bottleneck``: YOLOv5's is 1x1 then 3x3; ultralytics' is 3x3 then 3x3 (its ``C3`` passes YOLOv5's
  kernels explicitly, which is why ``C3`` matches). yolov3.yaml built with ultralytics' ``Bottleneck``
  has 56 % more parameters than YOLOv5's yolov3.
- ``BottleneckCSP``: ultralytics' inherits its own ``Bottleneck``; YOLOv5's uses the 1x1-3x3 one.
  Its activation after the concatenation's BatchNorm was LeakyReLU(0.1) up to YOLOv5 v6.0 and SiLU
  from v6.1 on.

The rule (see docs/peers.md): a model YAML **without** an ultralytics ``scales:`` table (one that
writes ``depth_multiple``/``width_multiple``, as every YOLOv5 and YOLOv7 file does) is a YOLOv5/YOLOv7
YAML and gets YOLOv5's ``Bottleneck``/``BottleneckCSP``; a YAML with ``scales:`` gets ultralytics'.
Either family can be named explicitly in any YAML: ``yolov5.Bottleneck``, ``yolov5.BottleneckCSP``.

Model-level keys for weights from older releases (the YAML files of those releases do not say which
code ran them): ``activation: nn.LeakyReLU(0.1)`` (v3.0) or ``activation: nn.Hardswish()`` (v3.1) for
every Conv, as YOLOv5 v7.0 reads ``activation:``; and ``csp_activation: nn.LeakyReLU(0.1)`` for the
``BottleneckCSP`` of releases up to v6.0 (the default, ``nn.SiLU()``, is v6.1 and later).

Also here, for YOLOv5 YAMLs that name them: ``CrossConv``, ``C3SPP``, ``MixConv2d``, ``Contract`` and
``Expand``.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from ultralytics.nn import modules as um

from models.registry import LAYERS, ConfigError, RowContext


def classic_yaml(model: dict) -> bool:
    """True for a YOLOv5/YOLOv7-style model dict (no ultralytics ``scales:`` table)."""
    return not model.get("scales")


class Bottleneck(um.Bottleneck):
    """YOLOv5's residual bottleneck: 1x1 conv to ``c2 * e`` channels, 3x3 conv to ``c2``, added to the input when
    ``shortcut`` and ``c1 == c2`` (ultralytics' ``Bottleneck`` with kernels (1, 3))."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, shortcut, g, k=(1, 3), e=e)


class BottleneckCSP(um.BottleneckCSP):
    """YOLOv5's CSP bottleneck: ultralytics' layout (cv1..cv4, bn, act, m) with YOLOv5's ``Bottleneck`` inside.

    ``act`` is the activation after the BatchNorm of the concatenated branches (SiLU from YOLOv5 v6.1 on,
    LeakyReLU(0.1) before).
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5,
                 act: nn.Module | None = None):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))
        if act is not None:
            self.act = act


class BottleneckCSPLeaky(BottleneckCSP):
    """YOLOv5's ``BottleneckCSP`` as releases v3.0 to v6.0 built it (LeakyReLU(0.1) after the BatchNorm)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e, act=nn.LeakyReLU(0.1, inplace=True))


class CrossConv(nn.Module):
    """A k x k convolution factorised into 1 x k (stride (1, s)) then k x 1 (stride (s, 1)), with an optional
    residual; hidden width ``c2 * e``."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, g: int = 1, e: float = 1.0, shortcut: bool = False):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = um.Conv(c1, hidden, (1, k), (1, s))
        self.cv2 = um.Conv(hidden, c2, (k, 1), (s, 1), g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3SPP(um.C3):
    """C3 whose inner branch is an SPP block (YOLOv5 v6+). Its YAML arguments are ``[c2, k, shortcut, g, e]``;
    YOLOv5's parser inserts no repeat count for it, so neither does ours (``kind='conv'``)."""

    def __init__(self, c1: int, c2: int, k: tuple[int, ...] = (5, 9, 13), shortcut: bool = True, g: int = 1,
                 e: float = 0.5):
        super().__init__(c1, c2, 1, shortcut, g, e)
        hidden = int(c2 * e)
        self.m = um.SPP(hidden, hidden, k)


class MixConv2d(nn.Module):
    """Mixed depth-wise convolution (Tan and Le, arXiv:1907.09595), YOLOv5's experimental layer.

    The output channels are split over the kernel sizes ``k``: equally (``equal_ch``) or so that each kernel
    size gets about the same number of weights; each group is a grouped conv, then BatchNorm and SiLU.
    """

    def __init__(self, c1: int, c2: int, k: tuple[int, ...] = (1, 3), s: int = 1, equal_ch: bool = True):
        super().__init__()
        k = tuple(k) if isinstance(k, (list, tuple)) else (k,)
        n = len(k)
        if equal_ch:  # channel j goes to kernel floor(j * (n - 1e-6) / (c2 - 1)), as a linspace of group indices
            group = torch.linspace(0, n - 1e-6, c2).floor()
            widths = [int((group == i).sum()) for i in range(n)]
        else:  # solve for equal weight counts per kernel size: sum(widths) = c2, widths[i] * k[i]^2 all equal
            import numpy as np

            a = np.eye(n + 1, n, k=-1)
            a -= np.roll(a, 1, axis=1)
            a *= np.array(k) ** 2
            a[0] = 1
            widths = [int(w) for w in np.linalg.lstsq(a, [c2] + [0] * n, rcond=None)[0].round()]
        self.m = nn.ModuleList(nn.Conv2d(c1, w, kk, s, kk // 2, groups=math.gcd(c1, w), bias=False)
                               for kk, w in zip(k, widths))
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(torch.cat([m(x) for m in self.m], 1)))


class Contract(nn.Module):
    """Space-to-depth by ``gain``: (B, C, H, W) -> (B, C * gain^2, H / gain, W / gain), YOLOv5's channel order."""

    def __init__(self, gain: int = 2):
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4)  # (b, sy, sx, c, h/s, w/s)
        return x.reshape(b, c * s * s, h // s, w // s)


class Expand(nn.Module):
    """Depth-to-space by ``gain``, the inverse of :class:`Contract`: (B, C, H, W) -> (B, C / gain^2, H * gain, W * gain)."""

    def __init__(self, gain: int = 2):
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, s, s, c // s**2, h, w).permute(0, 3, 4, 1, 5, 2)  # (b, c/s^2, h, sy, w, sx)
        return x.reshape(b, c // s**2, h * s, w * s)


# ----------------------------------------------------------------------------------------------------------------------
# Registration and the name rule

_CSP_ACTS = {"leakyrelu(0.1)": "yolov5.BottleneckCSP.leaky", "silu()": "yolov5.BottleneckCSP"}


def _csp_name(model: dict) -> str:
    """``csp_activation:`` (model key) -> the registered BottleneckCSP variant."""
    text = model.get("csp_activation")
    if text is None:
        return "yolov5.BottleneckCSP"
    key = re.sub(r"\s+|^(torch\.)?nn\.", "", str(text)).lower()
    key = key.replace("inplace=true", "").replace(",)", ")")
    if key not in _CSP_ACTS:
        raise ConfigError(f"csp_activation: {text!r} is not an activation YOLOv5's "
                          "BottleneckCSP has used; write nn.LeakyReLU(0.1) (releases v3.0-v6.0) or nn.SiLU() (v6.1+)")
    return _CSP_ACTS[key]


def bottleneck_name(args: list, model: dict) -> str:
    """``Bottleneck``: YOLOv5's in YOLOv5/YOLOv7 YAMLs, ultralytics' in YAMLs with ``scales:``."""
    return "yolov5.Bottleneck" if classic_yaml(model) else "Bottleneck"


def bottleneck_csp_name(args: list, model: dict) -> str:
    """``BottleneckCSP``: YOLOv5's (with the ``csp_activation:`` variant) in YOLOv5/YOLOv7 YAMLs, else ultralytics'."""
    return _csp_name(model) if classic_yaml(model) else "BottleneckCSP"


def _contract_args(args: list, row: RowContext) -> tuple[list, int]:
    gain = args[0] if args else 2
    return [gain], row.c_from[0] * gain**2


def _expand_args(args: list, row: RowContext) -> tuple[list, int]:
    gain = args[0] if args else 2
    if row.c_from[0] % gain**2:
        raise ConfigError(f"{row.where}: Expand({gain}) needs input channels divisible by {gain**2}, got {row.c_from[0]}")
    return [gain], row.c_from[0] // gain**2


LAYERS.add(Bottleneck, kind="conv", name="yolov5.Bottleneck")
LAYERS.add(BottleneckCSP, kind="repeat", name="yolov5.BottleneckCSP")
LAYERS.add(BottleneckCSPLeaky, kind="repeat", name="yolov5.BottleneckCSP.leaky")
LAYERS.add(CrossConv, kind="conv")
LAYERS.add(C3SPP, kind="conv")
LAYERS.add(MixConv2d, kind="conv")
LAYERS.add(Contract, kind="custom", make_args=_contract_args)
LAYERS.add(Expand, kind="custom", make_args=_expand_args)
