"""Checkpoints of ultralytics' families, written by ultralytics' own code (``YOLO("yolo11n.yaml").save(...)``, made
here, nothing downloaded): read by the restricted loader, ultralytics' outputs, and every base tensor transferred
into the same model with an attention module inserted (tools/families.py check_transfer)."""

from __future__ import annotations

import pytest

from tools.families import CHECKPOINTS, check_transfer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("family, name", list(CHECKPOINTS.items()), ids=list(CHECKPOINTS))
def test_ultralytics_checkpoint_loads_and_transfers_every_tensor(family, name, tmp_path):
    t = check_transfer(name, tmp_path)
    assert t.loaded, f"{t.checkpoint}: outputs differ from ultralytics' own loading of the file"
    assert t.transferred == t.base_tensors and t.total == t.base_tensors + 10, t  # CBAM: 10 tensors


def test_the_restricted_loader_refuses_a_payload_in_an_ultralytics_checkpoint(tmp_path):
    """The family checkpoints go through the same allow-list: a checkpoint that names an unknown callable is refused."""
    import pickle

    import torch

    from models.weights.checkpoint import load_model

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    ckpt = tmp_path / "yolo11n-base.pt"
    from tools.families import ultralytics_checkpoint

    ultralytics_checkpoint("yolo11n", ckpt)
    data = torch.load(ckpt, weights_only=False)
    data["payload"] = Payload()
    torch.save(data, ckpt, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    from models.weights.unpickle import UnsafeCheckpointError

    with pytest.raises(UnsafeCheckpointError, match="refused to load: the file names 'builtins.print'"):
        load_model(ckpt)
