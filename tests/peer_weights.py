"""Deterministic weights by state-dict key, so a peer's own code and ours can be given the same weights.

The fixtures in tests/fixtures/peer_outputs.pt were made by filling a model built by the peer's code (YOLOv5 or
YOLOv7, in a scratch directory outside this project) with :func:`fill`, keyed by this project's state-dict names
(YOLOv7's RepConv keys renamed with :data:`YOLOV7_REPCONV_KEYS`), and recording its eval-mode outputs on
:func:`probe_image`. The tests fill our model the same way and compare. Storing outputs instead of weights
keeps the fixtures small.
"""

from __future__ import annotations

import zlib

import torch

# YOLOv7 RepConv state-dict names -> ours (ultralytics' RepConv layout): 3x3 branch, 1x1 branch, identity BatchNorm
YOLOV7_REPCONV_KEYS = {"rbr_dense.0.": "conv1.conv.", "rbr_dense.1.": "conv1.bn.", "rbr_1x1.0.": "conv2.conv.",
                       "rbr_1x1.1.": "conv2.bn.", "rbr_identity.": "bn."}
SKIP = ("num_batches_tracked", "anchors", "anchor_grid")


def our_key(peer_key: str) -> str:
    for old, new in YOLOV7_REPCONV_KEYS.items():
        peer_key = peer_key.replace(old, new)
    return peer_key


def value_for(key: str, shape: torch.Size) -> torch.Tensor:
    """The deterministic tensor of ``key``: seeded by the key's CRC32; scaled like trained weights."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith("running_var"):
        return torch.rand(shape, generator=g) * 0.5 + 0.5
    if key.endswith("implicit"):
        base = 1.0 if ".im." in f".{key}" else 0.0
        return base + torch.randn(shape, generator=g) * 0.1
    if len(shape) >= 2:  # conv / linear weights: unit-variance outputs
        fan_in = max(int(torch.tensor(shape[1:]).prod()), 1)
        return torch.randn(shape, generator=g) / fan_in**0.5
    if key.endswith("weight"):  # BatchNorm scale
        return torch.rand(shape, generator=g) * 0.5 + 0.75
    return torch.randn(shape, generator=g) * 0.1  # biases, BatchNorm shift and mean


@torch.no_grad()
def fill(model: torch.nn.Module, rename=our_key) -> list[str]:
    """Overwrite every parameter and buffer of ``model`` (but anchors and counters) by key; return the keys used."""
    used = []
    for key, t in model.state_dict().items():
        if key.split(".")[-1] in SKIP:
            continue
        name = rename(key)
        t.copy_(value_for(name, t.shape))
        used.append(name)
    return sorted(used)


def probe_image(size: int = 64) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1234))
