"""Reading checkpoints: the one place the project loads a ``.pt`` file.

Every path that reads weights (train.py ``--weights``/``--resume``, val.py, detect.py, heatmaps,
ablations, weight transfer, the run YAML of ``--attention``) goes through :func:`load_model`.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn


def load_model(path: str | Path, device: str = "cpu") -> nn.Module:
    """The model stored in a checkpoint, fp32, in eval mode (the ``ema`` weights when present, else ``model``)."""
    from ultralytics.nn.tasks import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights {path}: file not found (weights are never downloaded)")
    model, _ = load_checkpoint(str(path), device=device, inplace=False, fuse=False)
    return model.float().eval()
