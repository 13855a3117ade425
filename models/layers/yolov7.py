"""YOLOv7 layers that ultralytics lacks: MP, SP, SPPCSPC, ReOrg, DownC, Shortcut, YOLOv7's RepConv and the
implicit-knowledge layers ImplicitA/ImplicitM.

YOLOv7: Trainable bag-of-freebies sets new state-of-the-art for real-time object detectors
(Wang, Bochkovskiy, Liao, 2022, arXiv:2207.02696).

What needs no class here:
- ELAN / E-ELAN blocks: YOLOv7's YAMLs spell them out as ``Conv`` rows joined by ``Concat`` rows (and, in
  yolov7-e6e, ``Shortcut`` rows adding two E-ELAN branches) with relative (-1, -3, -5, ...) and absolute
  ``from`` indices; the parser builds them row by row.
- ``Conv``: ultralytics' Conv. YOLOv7 rows write the activation where ultralytics has the dilation
  (``[c2, k, s, None, 1, nn.LeakyReLU(0.1)]``); the parser moves a positional activation to ``act``.
- ``RepConv``: in YOLOv7 YAMLs (no ``scales:`` table) :class:`RepConv` below, ultralytics' RepConv with
  YOLOv7's BatchNorm identity branch when c1 == c2 and stride 1 (ultralytics' ``bn=True``); in YAMLs with
  ``scales:``, ultralytics' RepConv as it is (no identity branch). YOLOv7's own configs map 128->256,
  256->512, 512->1024, so the identity branch never appears in them; both build the same there.
"""

from __future__ import annotations

import torch
from torch import nn
from ultralytics.nn.modules import Conv
from ultralytics.nn.modules import RepConv as _UltralyticsRepConv

from models.registry import LAYERS, ConfigError, RowContext


class MP(nn.Module):
    """Max pooling with stride equal to the kernel (YOLOv7's down-sampling branch): halves H and W for k=2."""

    def __init__(self, k: int = 2):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


class SP(nn.Module):
    """'Same'-size max pooling (YOLOv7-tiny writes its SPP as three SP rows with k = 5, 9, 13)."""

    def __init__(self, k: int = 3, s: int = 1):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=s, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


class SPPCSPC(nn.Module):
    """Spatial pyramid pooling inside a cross-stage-partial block (YOLOv7's P5 neck entry).

    One branch: 1x1 -> 3x3 -> 1x1, max pools k=(5, 9, 13) concatenated with their input, 1x1 -> 3x3.
    The other branch: a 1x1 shortcut. Both are joined and projected to ``c2``. Hidden width is
    ``int(2 * c2 * e)``. ``n``, ``shortcut`` and ``g`` are accepted for YOLOv7 YAML compatibility (its
    parser inserts the repeat count) and, as in YOLOv7, do not change the block.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5,
                 k: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        c_ = int(2 * c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(c_, c_, 3, 1)
        self.cv4 = Conv(c_, c_, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)
        self.cv5 = Conv(4 * c_, c_, 1, 1)
        self.cv6 = Conv(c_, c_, 3, 1)
        self.cv7 = Conv(2 * c_, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.cv4(self.cv3(self.cv1(x)))
        a = self.cv6(self.cv5(torch.cat([a, *(pool(a) for pool in self.m)], 1)))
        return self.cv7(torch.cat((a, self.cv2(x)), 1))


class ImplicitA(nn.Module):
    """Learned per-channel offset added to a feature map (YOLOv7 IDetect, 'implicit knowledge', init N(0, 0.02))."""

    def __init__(self, channels: int, mean: float = 0.0, std: float = 0.02):
        super().__init__()
        self.implicit = nn.Parameter(torch.empty(1, channels, 1, 1))
        nn.init.normal_(self.implicit, mean=mean, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit + x


class ImplicitM(nn.Module):
    """Learned per-channel scale multiplied onto a feature map (YOLOv7 IDetect, init N(1, 0.02))."""

    def __init__(self, channels: int, mean: float = 1.0, std: float = 0.02):
        super().__init__()
        self.implicit = nn.Parameter(torch.empty(1, channels, 1, 1))
        nn.init.normal_(self.implicit, mean=mean, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit * x


class ReOrg(nn.Module):
    """Space-to-depth by 2 (YOLOv7's P6 stem): (B, C, H, W) -> (B, 4C, H/2, W/2), the four pixel phases stacked in
    the order (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col), as Focus does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1)


class DownC(nn.Module):
    """YOLOv7's P6 down-sampling block: half the output from 1x1 -> 3x3 stride k convs, half from a k x k max pool
    followed by a 1x1 conv, concatenated. ``n`` is the repeat count YOLOv7's parser inserts; it builds one block."""

    def __init__(self, c1: int, c2: int, n: int = 1, k: int = 2):
        super().__init__()
        self.cv1 = Conv(c1, c1, 1, 1)
        self.cv2 = Conv(c1, c2 // 2, 3, k)
        self.cv3 = Conv(c1, c2 // 2, 1, 1)
        self.mp = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.cv2(self.cv1(x)), self.cv3(self.mp(x))), 1)


class Shortcut(nn.Module):
    """Sum of two inputs of equal shape (yolov7-e6e joins its two E-ELAN branches with it). ``dimension`` is
    accepted for YOLOv7 YAML compatibility and unused, as in YOLOv7."""

    def __init__(self, dimension: int = 0):
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return x[0] + x[1]


class RepConv(_UltralyticsRepConv):
    """YOLOv7's RepConv: 3x3 + 1x1 conv branches (each with BatchNorm) and, when ``c1 == c2`` at stride 1, a
    BatchNorm identity branch; all summed, then SiLU. ultralytics' RepConv with ``bn=True``; ``fuse_convs`` (called
    by ``model.fuse()``) merges the branches into one 3x3 conv. YOLOv7's argument order: (c1, c2, k, s, p, g, act)."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, p: int | None = None, g: int = 1, act=True):
        if k != 3 or p not in (None, 1):
            raise ValueError(f"RepConv needs a 3x3 kernel with padding 1 (as YOLOv7's), got k={k}, p={p}")
        super().__init__(c1, c2, 3, s, 1, g, 1, act, bn=True)


def _repconv_name(args: list, model: dict) -> str:
    """``RepConv``: YOLOv7's (identity branch) in YOLOv7 YAMLs without ``scales:``, ultralytics' otherwise."""
    return "yolov7.RepConv" if not model.get("scales") else "RepConv"


def _reorg_args(args: list, row: RowContext) -> tuple[list, int]:
    if args:
        raise ConfigError(f"{row.where}: ReOrg takes no arguments, got {args!r}")
    return [], 4 * row.c_from[0]


def _shortcut_args(args: list, row: RowContext) -> tuple[list, int]:
    if len(row.c_from) != 2 or row.c_from[0] != row.c_from[1]:
        raise ConfigError(f"{row.where}: Shortcut adds two inputs of equal width; its 'from' layers give "
                          f"{len(row.c_from)} input(s) with channels {row.c_from}")
    return list(args[:1]), row.c_from[0]


LAYERS.add(MP, kind="passthrough")
LAYERS.add(SP, kind="passthrough")
LAYERS.add(SPPCSPC, kind="repeat")  # YOLOv7's parser inserts the repeat count as the third argument, as for C3
LAYERS.add(DownC, kind="repeat")  # likewise
LAYERS.add(ReOrg, kind="custom", make_args=_reorg_args)
LAYERS.add(Shortcut, kind="custom", make_args=_shortcut_args)
LAYERS.add(_UltralyticsRepConv, kind="conv", name="RepConv", dispatch=_repconv_name)
LAYERS.add(RepConv, kind="conv", name="yolov7.RepConv")
