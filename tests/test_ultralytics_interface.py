"""Fail loudly, with a clear message, if the ultralytics internals this project relies on change.

We pin ultralytics exactly (requirements.txt). If you upgrade it, this file tells you what broke.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

PINNED = "8.4.190"


def _pinned_in_requirements() -> str:
    for line in (Path(__file__).resolve().parents[1] / "requirements.txt").read_text().splitlines():
        if line.strip().startswith("ultralytics=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError("requirements.txt must pin ultralytics with ==")


def test_installed_version_is_the_pinned_one():
    import ultralytics

    assert _pinned_in_requirements() == PINNED, "update PINNED here together with requirements.txt"
    assert ultralytics.__version__ == PINNED, (
        f"ultralytics {ultralytics.__version__} is installed but this project is built and tested against {PINNED}: "
        f"pip install ultralytics=={PINNED}"
    )


@pytest.mark.parametrize(
    "path,attr",
    [
        ("ultralytics.nn.tasks", "DetectionModel"),
        ("ultralytics.nn.modules", "Detect"),
        ("ultralytics.nn.modules", "Conv"),
        ("ultralytics.nn.modules", "C3"),
        ("ultralytics.nn.modules", "SPPF"),
        ("ultralytics.nn.modules", "Concat"),
        ("ultralytics.models.yolo.detect", "DetectionTrainer"),
        ("ultralytics.utils.torch_utils", "initialize_weights"),
        ("ultralytics.utils.ops", "make_divisible"),
        ("ultralytics.utils.dist", "generate_ddp_file"),
        ("ultralytics.utils", "YAML"),
    ],
)
def test_symbols_we_import_exist(path, attr):
    import importlib

    mod = importlib.import_module(path)
    assert hasattr(mod, attr), f"ultralytics changed: {path}.{attr} is gone (models/ and tools/ import it)"


def test_trainer_hooks_we_override():
    from ultralytics.models.yolo.detect import DetectionTrainer

    sig = inspect.signature(DetectionTrainer.get_model)
    assert list(sig.parameters)[:4] == ["self", "cfg", "weights", "verbose"], f"get_model signature changed: {sig}"
    assert hasattr(DetectionTrainer, "set_model_names_for_load"), "DetectionTrainer.set_model_names_for_load is gone"
    src = inspect.getsource(DetectionTrainer.__mro__[1].save_model)
    assert "self.last" in src and "self.best" in src, "BaseTrainer.save_model no longer writes self.last/self.best"


def test_detect_head_contract():
    import torch
    from ultralytics.nn.modules import Detect

    assert hasattr(Detect, "legacy"), "Detect.legacy (v5u classification branch switch) is gone"
    sig = inspect.signature(Detect.__init__)
    assert list(sig.parameters)[1:5] == ["nc", "reg_max", "end2end", "ch"], f"Detect signature changed: {sig}"
    head = Detect(3, 16, None, (16, 32, 64))
    head.stride = torch.tensor([8.0, 16.0, 32.0])
    head.train()
    out = head([torch.zeros(1, c, s, s) for c, s in ((16, 8), (32, 4), (64, 2))])
    assert isinstance(out, dict) and "feats" in out, "Detect training output is no longer a dict with 'feats'"
