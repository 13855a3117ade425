"""Checkpoints written before models/ was split into rooms still load, and compute what they computed then.

The fixtures (tests/fixtures/checkpoints_v1/, made at 7689ef4) pickle classes under their old flat module paths.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints_v1"
NAMES = ("attention_all", "yolov7_blocks", "yolov5_legacy")


def _output(model) -> torch.Tensor:
    x = torch.rand(1, 3, 128, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model.float().eval()(x)
    return y[0] if isinstance(y, (tuple, list)) else y


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURES / "reference_outputs.pt", weights_only=True)


@pytest.mark.parametrize("name", NAMES)
def test_our_loader_reads_a_checkpoint_written_before_the_rooms(name, reference):
    from models.weights.checkpoint import load_model

    assert torch.equal(_output(load_model(FIXTURES / f"{name}.pt")), reference[name]["output"])


@pytest.mark.parametrize("name", NAMES)
def test_a_plain_torch_load_reads_it_too(name, reference):
    """What ultralytics' own loader does (``YOLO('best.pt')``): the old module paths import as the new ones."""
    ckpt = torch.load(FIXTURES / f"{name}.pt", map_location="cpu", weights_only=False)
    assert torch.equal(_output(ckpt["model"]), reference[name]["output"])


def test_an_old_path_import_leaves_the_new_module_as_it_was():
    """Importing ``models.yolov7_blocks`` (what an old pickle names) must not change ``models.layers.yolov7``: the
    restricted loader checks where a class's module comes from, and a replaced ``__spec__`` made it refuse ours."""
    import importlib

    new = importlib.import_module("models.layers.yolov7")
    spec = new.__spec__
    old = importlib.import_module("models.yolov7_blocks")
    assert old.MP is new.MP and new.__spec__ is spec and spec.origin and spec.name == "models.layers.yolov7"
    from models.weights.unpickle import _own_class

    assert _own_class("models.layers.yolov7", "MP") is new.MP
