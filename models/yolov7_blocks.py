"""YOLOv7 layers that ultralytics lacks: MP, SP, SPPCSPC and the implicit-knowledge layers ImplicitA/ImplicitM.

YOLOv7: Trainable bag-of-freebies sets new state-of-the-art for real-time object detectors
(Wang, Bochkovskiy, Liao, 2022, arXiv:2207.02696).

What needs no class here:
- ELAN / E-ELAN blocks: YOLOv7's YAMLs spell them out as ``Conv`` rows joined by ``Concat`` rows with
  relative (-1, -3, -5, ...) and absolute ``from`` indices; the parser builds them row by row.
- ``Conv``: ultralytics' Conv. YOLOv7 rows write the activation where ultralytics has the dilation
  (``[c2, k, s, None, 1, nn.LeakyReLU(0.1)]``); the parser moves a positional activation to ``act``.
- ``RepConv``: ultralytics' RepConv (3x3 + 1x1 branches, fused by ``model.fuse()``). YOLOv7's version
  adds a BatchNorm identity branch when c1 == c2 and stride 1; none of the v7 / v7x / tiny configs have
  such a RepConv (theirs map 128->256, 256->512, 512->1024), so parameter counts match YOLOv7's.
"""

from __future__ import annotations

import torch
from torch import nn
from ultralytics.nn.modules import Conv

from models.registry import LAYERS


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


LAYERS.add(MP, kind="passthrough")
LAYERS.add(SP, kind="passthrough")
LAYERS.add(SPPCSPC, kind="repeat")  # YOLOv7's parser inserts the repeat count as the third argument, as for C3
