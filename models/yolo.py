"""The detector: an ultralytics ``DetectionModel`` whose layers come from our parser.

Trainer, validator, predictor and exporter use it unchanged. The layer contract is in
:mod:`models.registry`, YAML handling in :mod:`models.config`, the parser in :mod:`models.parser`.
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path

from torch import nn
from ultralytics.nn.modules import Detect
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import LOGGER
from ultralytics.utils.torch_utils import initialize_weights

from models.config import load_config
from models.parser import parse_model
from models.probe import head_strides
from models.registry import LAYERS, ConfigError


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
