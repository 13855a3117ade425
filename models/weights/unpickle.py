"""Restricted unpickling: a checkpoint is read without running code from it.

A ``.pt`` file is a pickle, and unpickling calls whatever functions the file names. Here a global the file names is
looked up only if it belongs to what checkpoints of the supported formats contain (torch tensors and layers, numpy
arrays, a few builtins, ``argparse.Namespace``, ultralytics' layers and models, this project's layer classes, under
their current module paths or those of checkpoints written before the rooms). Anything else (``posix.system``,
``builtins.eval``, ``subprocess.Popen``, ...) stops the load with :class:`UnsafeCheckpointError`, naming the file and
the global, before it is called; state written onto a class or function is refused too. Classic YOLOv5 / YOLOv7
pickles name their own ``models.*`` modules, the name of this project's package: their classes are read as inert
stand-ins (:class:`PeerModule`: attributes and tensors, none of their code). ``trust=True`` (``--trust-weights``)
lifts the restriction for files a user wrote themselves: unsafe, the file's code runs.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import collections
import copyreg
import functools
import importlib
import importlib.util
import os
import pathlib
import pickle
import pickletools
import re
import types
import zipfile
from pathlib import Path

import torch
from torch import nn

from models.weights.moved import MOVED

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # this project's ``models`` package
# this project's classes in checkpoints written before the rooms: old module path -> where they live now
OLD_PATHS = {**MOVED, "models.heads": "models.heads.anchor"}
PEER_MODULES = frozenset({"models.yolo", "models.common", "models.experimental"})  # classic YOLOv5 / YOLOv7 modules
TRUST_HINT = ("If you made this file yourself and trust it, load it with --trust-weights "
              "(unsafe: whatever the file names then runs)")


class CheckpointError(ValueError):
    """A file this project cannot read as a checkpoint; the message names the file and what is wrong."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint names a global outside the allow-list; nothing it names was called."""

    def __init__(self, path, global_name: str, what: str = ""):
        self.path, self.global_name = str(path), global_name
        what = what or f"the file names '{global_name}'"
        super().__init__(
            f"{path}: refused to load: {what}, which checkpoints of the supported formats (this project, ultralytics, "
            f"YOLOv5, YOLOv7) never contain; unpickling it could run code. Nothing from the file was executed. "
            f"{TRUST_HINT}."
        )


# ----------------------------------------------------------------------------------------------------------------------
# Stand-ins for the classes of other projects' checkpoints


class PeerModule(nn.Module):
    """A module from another project's checkpoint (classic YOLOv5, YOLOv7): its pickled attributes, sub-modules and
    tensors, and none of its code. :func:`model_from_checkpoint` rebuilds it as this project's model."""

    peer_class = "?"

    def forward(self, *args, **kwargs):
        raise TypeError(f"{self.peer_class} is a stand-in read from a foreign checkpoint and has no code; "
                        "models.weights.checkpoint.load_model() rebuilds it as this project's model")


_STAND_INS: dict[str, type] = {}


def stand_in(module: str, name: str) -> type:
    """The stand-in class for ``module.name`` of a peer checkpoint (one class per name, made on first use)."""
    key = f"{module}.{name}"
    if key not in _STAND_INS:
        _STAND_INS[key] = type(name, (PeerModule,), {"peer_class": key, "__module__": __name__})
    return _STAND_INS[key]


def peer_class_name(m: nn.Module) -> str:
    """``Conv`` for a stand-in of ``models.common.Conv``; '' for any real class."""
    return type(m).peer_class.rpartition(".")[2] if isinstance(m, PeerModule) else ""


# ----------------------------------------------------------------------------------------------------------------------
# The allow-list

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
TORCH_FUNCTIONS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                   "_rebuild_parameter_with_state")
BOUND_METHODS = frozenset({"forward", "forward_fuse", "fuseforward"})  # fused layers pickle getattr(layer, name)


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (numpy arrays): latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not a bytes literal")
    return text.encode("latin1")


def _bound_method(path, obj, name):
    """``builtins.getattr`` restricted to the forward methods a fused layer stores on itself."""
    if isinstance(obj, PeerModule) and name in BOUND_METHODS:  # nothing to call: a stand-in has no code
        raise CheckpointError(
            f"{path}: holds a model after YOLOv5/YOLOv7's model.fuse() (its {obj.peer_class} runs {name}: BatchNorm "
            "and implicit layers already folded into the convs), which only that project's inference uses; no "
            "released file is fused. Pass the checkpoint its training wrote (last.pt/best.pt) or the released file")
    if isinstance(obj, nn.Module) and not isinstance(obj, PeerModule) and name in BOUND_METHODS:
        return getattr(obj, name)
    raise UnsafeCheckpointError(path, f"builtins.getattr({type(obj).__name__}, {name!r})")


def _fixed_globals() -> dict[str, object]:
    import numpy as np

    scalar = np.float64(0).__reduce__()[0]  # numpy's scalar constructor (numpy.core or numpy._core)
    reconstruct = np.ndarray((0,)).__reduce__()[0]
    pure = pathlib.PurePosixPath if os.name == "nt" else pathlib.PureWindowsPath  # the other OS's paths, as data
    out = {
        "collections.OrderedDict": collections.OrderedDict,
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "builtins.slice": slice,
        "builtins.complex": complex,
        "builtins.bytearray": bytearray,
        "builtins.range": range,
        "_codecs.encode": _latin1_encode,
        "copyreg._reconstructor": copyreg._reconstructor,
        "argparse.Namespace": argparse.Namespace,
        "types.SimpleNamespace": types.SimpleNamespace,
        "torch.Size": torch.Size,
        "torch.device": torch.device,
        "torch.Tensor": torch.Tensor,
        "torch._tensor.Tensor": torch.Tensor,
        "torch.nn.parameter.Parameter": nn.Parameter,
        "torch._tensor._rebuild_from_type_v2": torch._tensor._rebuild_from_type_v2,
        "numpy.ndarray": np.ndarray,
        "numpy.dtype": np.dtype,
    }
    out.update({f"torch._utils.{f}": getattr(torch._utils, f) for f in TORCH_FUNCTIONS if hasattr(torch._utils, f)})
    for core in ("numpy.core", "numpy._core"):
        out[f"{core}.multiarray._reconstruct"] = reconstruct
        out[f"{core}.multiarray.scalar"] = scalar
    for mod in ("pathlib", "pathlib._local"):
        local = pathlib.Path().__class__
        out[f"{mod}.{local.__name__}"] = local
        out[f"{mod}.{'WindowsPath' if os.name != 'nt' else 'PosixPath'}"] = pure
    return out


_FIXED: dict[str, object] | None = None


def _own_class(module: str, name: str):
    """The class ``module.name`` when it is an ``nn.Module`` defined in this project's ``models`` package, else None."""
    if module != "models" and not module.startswith("models."):
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not Path(spec.origin).resolve().is_relative_to(PACKAGE_DIR):
        return None
    obj = getattr(importlib.import_module(module), name, None)
    if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == module and module != __name__:
        return obj
    return None


def _library_class(module: str, name: str):
    """torch.nn and ultralytics layer/model classes (and ultralytics' argument namespace)."""
    from ultralytics.utils import IterableSimpleNamespace

    if f"{module}.{name}" in ("ultralytics.utils.IterableSimpleNamespace", "ultralytics.yolo.utils.IterableSimpleNamespace"):
        return IterableSimpleNamespace
    if module.startswith("torch.nn.modules.") or module in ("ultralytics.nn.tasks", "ultralytics.nn.modules") \
            or module.startswith("ultralytics.nn.modules."):
        try:
            obj = getattr(importlib.import_module(module), name, None)
        except ImportError:
            return None
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            return obj
    if module == "torch":  # dtypes, layouts, memory formats pickled by name (torch.float16)
        obj = getattr(torch, name, None)
        if isinstance(obj, (torch.dtype, torch.layout, torch.memory_format)):
            return obj
    if module == "numpy.dtypes":
        import numpy as np

        obj = getattr(importlib.import_module(module), name, None)
        if isinstance(obj, type) and issubclass(obj, np.dtype):
            return obj
    return None


class _Resolver:
    """``find_class`` of one load: the allow-list, this project's classes, or stand-ins for a peer's."""

    def __init__(self, path, peer: bool, trust: bool):
        global _FIXED
        if _FIXED is None:
            _FIXED = _fixed_globals()
        self.path, self.peer, self.trust = path, peer, trust

    def __call__(self, module: str, name: str, fallback):
        if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol-2 pickles use Python 2 names (__builtin__.set)
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if not self.peer:
            module = OLD_PATHS.get(module, module)
        key = f"{module}.{name}"
        if not (isinstance(module, str) and isinstance(name, str) and NAME_RE.match(key)):
            raise UnsafeCheckpointError(self.path, repr((module, name)))
        if key == "builtins.getattr":
            return functools.partial(_bound_method, self.path)
        if key in _FIXED:
            return _FIXED[key]
        obj = _library_class(module, name)
        if obj is not None:
            return obj
        if module == "models" or module.startswith("models."):
            if self.peer and module in PEER_MODULES:
                return stand_in(module, name)
            obj = _own_class(module, name)
            if obj is not None:
                return obj
            if module in PEER_MODULES:
                return stand_in(module, name)
        if self.trust:
            return fallback(module, name)
        raise UnsafeCheckpointError(self.path, key)

    def pickle_module(self) -> types.ModuleType:
        """A ``pickle``-like module for ``torch.load(pickle_module=...)`` whose Unpickler resolves through us.

        Python's own unpickler class, with BUILD (setting an object's state) limited to objects: state written onto
        a class or function would change code other objects run.
        """
        resolver = self

        class Unpickler(pickle._Unpickler):
            dispatch = dict(pickle._Unpickler.dispatch)

            def find_class(self, module, name):
                return resolver(module, name, super().find_class)

            def load_build(self):
                target = self.stack[-2]  # under the state BUILD is about to apply
                if isinstance(target, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                                       functools.partial, types.ModuleType)) and not resolver.trust:
                    name = getattr(target, "__qualname__", type(target).__name__)
                    raise UnsafeCheckpointError(resolver.path, name, f"the file writes attributes onto '{name}'")
                super().load_build()

            dispatch[pickle.BUILD[0]] = load_build

        mod = types.ModuleType(f"{__name__}.restricted_pickle")
        mod.Unpickler = Unpickler
        mod.load = lambda f, **kw: Unpickler(f, **kw).load()
        mod.__dict__.update({k: getattr(pickle, k) for k in ("UnpicklingError", "HIGHEST_PROTOCOL")})
        return mod


def pickled_globals(data: bytes) -> set[str]:
    """``module.name`` of the globals a pickle names, read statically (nothing is unpickled).

    Used only to tell a foreign checkpoint from ours before reading it; safety never depends on it.
    """
    found, memo, pushed = set(), {}, []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                found.add(arg.replace(" ", ".", 1))
            elif op.name == "STACK_GLOBAL":
                if len(pushed) >= 2 and all(isinstance(x, str) for x in pushed[-2:]):
                    found.add(f"{pushed[-2]}.{pushed[-1]}")
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = pushed[-1] if pushed else None
            elif op.name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                pushed.append(memo.get(arg))
            elif op.stack_after:
                pushed.append(arg if isinstance(arg, str) else None)
    except Exception:  # a damaged or unusual stream: what was found so far; torch.load reports the damage
        pass
    return found


def main_pickle(path: Path) -> bytes | None:
    """The object pickle of a torch.save zip archive (None for the legacy format)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in z.namelist()):
                raise CheckpointError(f"{path}: a TorchScript archive (exported code), not a checkpoint; "
                                      "pass the .pt file that training wrote")
            return z.read(min(names, key=len)) if names else None
    except zipfile.BadZipFile:
        return None


def is_peer_pickle(data: bytes | None) -> bool:
    """Whether a pickle names classic YOLOv5 / YOLOv7 classes (``models.common.Conv``, ``models.yolo.Model``, ...)."""
    if data is None:
        return False
    for g in pickled_globals(data):
        module, _, name = g.rpartition(".")
        if module in PEER_MODULES and _own_class(module, name) is None:
            return True
    return False




# ----------------------------------------------------------------------------------------------------------------------
# Our checkpoints in ultralytics' restricted loading


def own_classes() -> list[type]:
    """Every ``nn.Module`` class of this project's ``models`` package (registered layers, their parts, the model)."""
    import sys

    from models.registry import LAYERS

    len(LAYERS)  # imports every registering module
    import models.yolo  # noqa: F401  (its class is one of ours)
    out = []
    for name, mod in list(sys.modules.items()):
        if (name == "models" or name.startswith("models.")) and name != __name__ and getattr(mod, "__file__", None) \
                and Path(mod.__file__).resolve().is_relative_to(PACKAGE_DIR):
            out += [c for c in vars(mod).values()
                    if isinstance(c, type) and issubclass(c, nn.Module) and c.__module__ == name]
    return out


def register_safe_globals() -> int:
    """Let ``torch.load(weights_only=True)``, and so ultralytics' ``ULTRALYTICS_SAFE_LOAD=1``, read this project's
    checkpoints: adds this project's layer classes to torch's allow-list (process-wide). Returns how many."""
    classes = own_classes()
    torch.serialization.add_safe_globals(classes)
    return len(classes)


def restricted_pickle_module(path, peer: bool, trust: bool = False) -> types.ModuleType:
    """The ``pickle_module`` for ``torch.load`` of ``path``: globals resolved through the allow-list (stand-ins for a
    peer's classes when ``peer``), everything allowed when ``trust``."""
    return _Resolver(path, peer=peer, trust=trust).pickle_module()
