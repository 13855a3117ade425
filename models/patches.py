"""Every place where this project changes a global of the ultralytics engine, each for the span of one call but one.

Subclassing and callbacks do most of the adaptation (``models/engine/trainer.py``); what they cannot reach is
swapped here, inside a context manager that restores the original however the call ends. :data:`TARGETS` lists each
patched target with what we rely on; ``tests/test_ultralytics_interface.py`` pins every one, so an ultralytics
upgrade that renames or changes one fails a named test instead of a training run. This module imports only the
engine and the standard library, and sits at the bottom of the house: the parser, the model and the trainer all use it.

The one process-wide patch: :func:`restrict_checkpoint_loading`, installed when the ``models`` package is imported,
makes ultralytics' own checkpoint reading (``YOLO("best.pt")``, its trainer, validator and predictor) unpickle through
this project's allow-list, so that no file it reads runs code once the project is imported.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from functools import partial

# (module, attribute path, what we rely on). The test checks that each exists and keeps the named parameters.
TARGETS = (
    ("ultralytics.nn.modules", "Conv.default_act", "class attribute: the activation every Conv built next uses"),
    ("ultralytics.nn.modules", "Detect.legacy", "class attribute: v3/v5/v8 classification branch while building"),
    ("ultralytics.utils.torch_utils", "get_flops", "get_flops(model, imgsz): GFLOPs of the model summary"),
    ("ultralytics.engine.trainer", "load_checkpoint", "load_checkpoint(weight, device, inplace, fuse) -> (model, ckpt)"),
    ("ultralytics.engine.trainer", "check_file", "check_file(file, ...) -> str: resolves (downloads) a weights path"),
    ("ultralytics.engine.trainer", "YAML", "YAML.save(file, data, header): writes args.yaml"),
    ("ultralytics.engine.trainer", "check_amp", "check_amp(model) -> bool: the AMP check of _setup_train"),
    ("ultralytics.engine.trainer", "strip_optimizer", "strip_optimizer(f, s, updates) -> dict: final_eval's strip"),
    ("ultralytics.utils.nms", "non_max_suppression", "non_max_suppression(..., max_time_img=...): validator NMS"),
    ("ultralytics.nn.tasks", "torch_safe_load",
     "torch_safe_load(weight, safe_only) -> (ckpt, file): every load_checkpoint (YOLO(), AutoBackend) reads through it"),
)


def _owner(module: str, path: str):
    obj = importlib.import_module(module)
    *parents, name = path.split(".")
    for p in parents:
        obj = getattr(obj, p)
    return obj, name


@contextmanager
def swapped(module: str, path: str, value):
    """``module.path`` set to ``value`` inside the block (one of :data:`TARGETS`), restored on exit."""
    if not any(m == module and p == path for m, p, _ in TARGETS):
        raise KeyError(f"{module}.{path} is not a declared patch target (models/patches.py TARGETS)")
    owner, name = _owner(module, path)
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield saved
    finally:
        setattr(owner, name, saved)


def restrict_checkpoint_loading(read) -> bool:
    """For the rest of the process, ultralytics reads every checkpoint with ``read(weight) -> (ckpt, file)`` (ours:
    the restricted unpickler) instead of ``torch_safe_load``, which unpickles anything. Idempotent; returns whether
    it was installed now. The original stays reachable as ``ultralytics.nn.tasks.torch_safe_load.unrestricted``."""
    module, path = "ultralytics.nn.tasks", "torch_safe_load"
    if not any(m == module and p == path for m, p, _ in TARGETS):
        raise KeyError(f"{module}.{path} is not a declared patch target (models/engine/patches.py TARGETS)")
    owner, name = _owner(module, path)
    current = getattr(owner, name)
    if getattr(current, "unrestricted", None) is not None:
        return False

    def torch_safe_load(weight, safe_only=None):
        """ultralytics' ``torch_safe_load`` contract, read through this project's allow-list (models/engine/patches.py):
        a file naming anything checkpoints never contain is refused before it runs."""
        return read(weight)

    torch_safe_load.unrestricted = current
    setattr(owner, name, torch_safe_load)
    return True


@contextmanager
def default_activation(act):
    """ultralytics' ``Conv.default_act`` (process-wide) set to ``act`` while a model is built (None: unchanged)."""
    if act is None:
        yield
        return
    with swapped("ultralytics.nn.modules", "Conv.default_act", act):
        yield


@contextmanager
def head_legacy(cls, legacy: bool | None):
    """A head class's ``legacy`` flag (ultralytics Detect: the v5u classification branch) set while building one."""
    if legacy is None:
        yield
        return
    saved = cls.legacy
    cls.legacy = legacy
    try:
        yield
    finally:
        cls.legacy = saved


@contextmanager
def flops_of(model, flops):
    """ultralytics' summary computes ``model``'s GFLOPs with ``flops(model, imgsz)`` (other models as before)."""
    from ultralytics.utils import torch_utils

    original = torch_utils.get_flops
    with swapped("ultralytics.utils.torch_utils", "get_flops",
                 lambda m, imgsz=640: flops(m, imgsz) if m is model else original(m, imgsz)):
        yield


@contextmanager
def trainer_checkpoints(load_checkpoint, check_file):
    """The trainer's resume and pretrained paths read weights with ``load_checkpoint`` and resolve paths with
    ``check_file`` (ours: restricted unpickling, paths taken literally, nothing downloaded)."""
    with swapped("ultralytics.engine.trainer", "load_checkpoint", load_checkpoint), \
            swapped("ultralytics.engine.trainer", "check_file", check_file):
        yield


@contextmanager
def trainer_yaml(yaml_class):
    """The trainer writes args.yaml with ``yaml_class`` (ours replaces the file atomically)."""
    with swapped("ultralytics.engine.trainer", "YAML", yaml_class):
        yield


@contextmanager
def trainer_amp_check(check_amp):
    """The trainer's set-up runs ``check_amp(model)`` instead of ultralytics' (which loads a downloaded model)."""
    with swapped("ultralytics.engine.trainer", "check_amp", check_amp):
        yield


@contextmanager
def trainer_strip_optimizer(strip_optimizer):
    """The trainer's final step strips last.pt/best.pt with ``strip_optimizer`` (ours writes atomically)."""
    with swapped("ultralytics.engine.trainer", "strip_optimizer", strip_optimizer):
        yield


@contextmanager
def nms_without_time_limit():
    """The validator's NMS runs without its wall-clock limit (``max_time_img``), so scores depend on the weights only."""
    from ultralytics.utils import nms

    with swapped("ultralytics.utils.nms", "non_max_suppression",
                 partial(nms.non_max_suppression, max_time_img=float("inf"))):
        yield
