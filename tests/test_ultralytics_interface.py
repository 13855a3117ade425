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
        ("ultralytics.engine.exporter", "export_formats"),  # tools/common.py: which files are exports
        ("ultralytics.models.yolo.detect", "DetectionPredictor"),  # models/engine/predictor.py
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


# -- every target models/patches.py swaps, pinned -----------------------------------------------------------

EXPECTED_PARAMETERS = {  # what our replacements are called with: the original's leading parameters
    "get_flops": ["model", "imgsz"],
    "load_checkpoint": ["weight", "device", "inplace", "fuse"],
    "check_file": ["file"],
    "check_amp": ["model"],
    "strip_optimizer": ["f", "s", "updates"],
    "torch_safe_load": ["weight", "safe_only"],
}


def _targets():
    from models.patches import TARGETS

    return TARGETS


@pytest.mark.parametrize("module,path,what", _targets(), ids=[f"{m}.{p}" for m, p, _ in _targets()])
def test_every_patched_target_exists_as_we_use_it(module, path, what):
    import importlib

    obj = importlib.import_module(module)
    for part in path.split("."):
        assert hasattr(obj, part), f"ultralytics changed: {module}.{path} is gone ({what}); models/patches.py"
        obj = getattr(obj, part)
    name = path.split(".")[-1]
    if name in EXPECTED_PARAMETERS:
        params = list(inspect.signature(obj).parameters)
        assert params[: len(EXPECTED_PARAMETERS[name])] == EXPECTED_PARAMETERS[name], f"{module}.{path}{params}: {what}"
    if name == "non_max_suppression":
        assert "max_time_img" in inspect.signature(obj).parameters, "NMS lost its max_time_img argument"
    if name == "YAML":
        assert list(inspect.signature(obj.save).parameters)[:3] == ["file", "data", "header"]
    if name == "default_act":
        import torch

        assert isinstance(obj, torch.nn.Module)
    if name == "legacy":
        assert isinstance(obj, bool)


@pytest.mark.parametrize("method,calls", [
    ("__init__", "YAML.save("),  # args.yaml, written through trainer_yaml
    ("_setup_train", "check_amp("),
    ("final_eval", "strip_optimizer("),
    ("check_resume", "check_file("),
    ("setup_model", "load_checkpoint("),
])
def test_the_trainer_calls_the_patched_names_where_we_swap_them(method, calls):
    """A swap only works while the engine looks the name up in ``ultralytics.engine.trainer`` from that method."""
    from ultralytics.engine.trainer import BaseTrainer

    assert calls in inspect.getsource(getattr(BaseTrainer, method)), f"BaseTrainer.{method} no longer calls {calls}"


def test_detection_validator_is_made_as_our_trainer_makes_it():
    """AttentionTrainer.get_validator builds ReproducibleValidator with DetectionTrainer's own arguments."""
    from ultralytics.models.yolo.detect import DetectionTrainer, DetectionValidator

    src = inspect.getsource(DetectionTrainer.get_validator)
    assert "DetectionValidator(" in src and "self.test_loader" in src and "_callbacks=self.callbacks" in src, src
    assert "postprocess" in vars(DetectionValidator), "DetectionValidator.postprocess (where NMS runs) moved"
    assert "nms.non_max_suppression(" in inspect.getsource(DetectionValidator.postprocess)


def test_every_checkpoint_ultralytics_reads_goes_through_torch_safe_load():
    """models/engine/patches.py restricts ``ultralytics.nn.tasks.torch_safe_load``: load_checkpoint (YOLO(), AutoBackend,
    the trainer) must look it up there, and ultralytics' model must reach it through load_checkpoint."""
    import ultralytics.engine.model as engine_model
    import ultralytics.nn.tasks as tasks

    assert "torch_safe_load(" in inspect.getsource(tasks.load_checkpoint), "load_checkpoint no longer calls torch_safe_load"
    assert engine_model.load_checkpoint is tasks.load_checkpoint, "ultralytics' Model reads checkpoints another way"


def test_export_metadata_and_video_writer_contracts():
    """tools/common.py reads an export's metadata without loading it; Mp4Predictor pre-fills the video writer that
    DetectionPredictor.save_predicted_images looks up by save path."""
    from ultralytics.engine.predictor import BasePredictor
    from ultralytics.nn.backends.base import BaseBackend

    assert list(inspect.signature(BaseBackend.read_metadata).parameters) == ["file"]
    src = inspect.getsource(BasePredictor.save_predicted_images)
    assert "if save_path not in self.vid_writer" in src and "self.vid_writer[save_path].write(" in src, src
