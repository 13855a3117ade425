"""The detector: an ultralytics ``DetectionModel`` whose layers come from our parser.

Trainer, validator, predictor and exporter use it unchanged. A YAML's way: :mod:`models.parse.read` (file -> checked
dict), :mod:`models.parse.plan` (rows resolved), :mod:`models.parse.build` (modules), then this model.
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path

import torch
from torch import nn
from ultralytics.nn.modules import Detect
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import LOGGER
from ultralytics.utils.torch_utils import initialize_weights

from models.patches import flops_of
from models.parse.build import parse_model
from models.parse.read import load_config
from models.parse.probe import head_strides, input_channels
from models.registry import LAYERS, ConfigError
from models.registry.protocol import DetectionHead


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
        self.model, self.save = parse_model(deepcopy(self.yaml), ch=ch, verbose=verbose)
        self.names = {i: f"{i}" for i in range(self.yaml["nc"])}
        self.inplace = self.yaml.get("inplace", True)

        head = self.model[-1]
        if not any(s.cls is type(head) for s in LAYERS.specs("head")):
            raise ConfigError(f"{self.yaml.get('yaml_file', '<dict>')}: the last row must be a detection head "
                              f"(Detect, IDetect, ...), got {getattr(head, 'type', type(head).__name__)}; a detector "
                              "ends with e.g. [[17, 20, 23], 1, Detect, [nc]]")
        if isinstance(head, Detect):
            head.inplace = self.inplace
            head.stride = head_strides(self)
            self.stride = head.stride
            head.bias_init()
        else:  # anchor-based heads put their anchors in stride units too
            self.stride = head.setup_strides(head_strides(self))
        initialize_weights(self)
        if verbose:
            self.info()
            LOGGER.info("")

    def info(self, detailed: bool = False, verbose: bool = True, imgsz=640):
        """ultralytics' model summary with GFLOPs probed on an image of the model's real input channels.

        ultralytics' probe takes the channel count from the first weight, which is 12 for YOLOv5's Focus stem
        (it reads 4 x 3 channels after the space-to-depth), so its probe fails and it reports no GFLOPs.
        """
        if not verbose:
            return None
        with flops_of(self, model_flops):
            return super().info(detailed=detailed, verbose=verbose, imgsz=imgsz)

    def predict(self, x, *args, **kwargs):
        """ultralytics' forward pass; anything but a batch of images (B, C, H, W) is a clear error, not one from a layer."""
        if isinstance(x, torch.Tensor) and x.dim() != 4:
            c = self.yaml.get("channels", 3)
            hint = ": one image (C, H, W) becomes a batch of one with x[None] (or x.unsqueeze(0))" if x.dim() == 3 else ""
            raise ValueError(f"the model takes a batch of images, a tensor (batch, {c}, height, width); got one of shape "
                             f"{tuple(x.shape)}{hint}")
        return super().predict(x, *args, **kwargs)

    def init_criterion(self):
        """The head's own loss when it has one (anchor-based heads: YOLOv5's loss), else ultralytics' default."""
        head = self.model[-1]
        return head.make_criterion(self) if isinstance(head, DetectionHead) else super().init_criterion()

    def fuse(self, verbose: bool = True, imgsz: int = 640):
        """ultralytics' Conv+BN / RepConv fusion, plus the head's own (YOLOv7 IDetect folds its implicit layers)."""
        head = self.model[-1]
        if isinstance(head, DetectionHead):
            head.fuse()
        return super().fuse(verbose=verbose, imgsz=imgsz)


def model_flops(model: nn.Module, imgsz=640) -> float:
    """GFLOPs of ``model`` at ``imgsz`` (an int or (h, w)), probed with thop as ultralytics does, on a zero image with
    the model's real input channels (ultralytics probes ``torch.empty``: whatever the memory held, so a module that
    fails on NaN fails at random); 0.0 when thop is missing or the probe fails (as ultralytics')."""
    try:
        import thop
    except ImportError:
        return 0.0
    try:
        p = next(model.parameters())
        h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
        stride = max(int(model.stride.max()), 32) if hasattr(model, "stride") else 32
        im = torch.zeros((1, input_channels(model), h, w), device=p.device, dtype=p.dtype)
        return thop.profile(model, inputs=[im], stride=stride, verbose=False)[0] / 1e9 * 2
    except Exception:
        return 0.0


def build_model(cfg: str | Path | dict, nc: int | None = None, ch: int = 3, verbose: bool = False) -> AttentionDetectionModel:
    """Convenience: build a model from a config path, bare name or dict."""
    return AttentionDetectionModel(cfg, ch=ch, nc=nc, verbose=verbose)
