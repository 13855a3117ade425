"""Reading checkpoints: the one place the project loads a ``.pt`` file.

Every path that reads weights (train.py ``--weights``/``--resume``, val.py, detect.py, heatmaps, ablations,
weight transfer, the run YAML of ``--attention``) goes through :func:`load_model` or :func:`read_checkpoint`.

Safety. A ``.pt`` file is a pickle, and unpickling calls whatever functions the file names. Checkpoints are
read here with a restricted unpickler: a global the file names is looked up only if it belongs to what
checkpoints of the supported formats contain (torch tensors and layers, numpy arrays, a few builtins,
``argparse.Namespace``, ultralytics' layers and models, this project's layer classes). Anything else
(``posix.system``, ``builtins.eval``, ``subprocess.Popen``, ...) stops the load with
:class:`UnsafeCheckpointError`, naming the file and the global, before it is called. ``trust=True``
(``--trust-weights``) lifts the restriction for files a user wrote themselves: unsafe, the file's code runs.

Formats, recognised by what the file contains, never by its name:

- this project's checkpoints (``models.yolo.AttentionDetectionModel``): the pickled model is used as it is;
- ultralytics checkpoints (``ultralytics.nn.tasks.DetectionModel``, e.g. yolov5su.pt);
- classic YOLOv5 (v3.0 to v7.0: ``models.yolo.Model``/``DetectionModel``, ``models.common.*``) and YOLOv7
  (P5 and P6 training files with ``IDetect`` / ``IAuxDetect``, deploy files with ``Detect``; ``RepConv`` with
  ``rbr_dense``/``rbr_1x1`` and, where c1 == c2 at stride 1, ``rbr_identity``).
  Those pickles name the other projects' ``models.*`` modules, the name of this project's package too: their
  classes are read as inert stand-ins (:class:`PeerModule`, attributes and tensors, none of their code).
  A model saved after their ``model.fuse()`` (layers whose forward is ``fuseforward``) is refused with a message:
  released files are not fused.

Foreign models (ultralytics, YOLOv5, YOLOv7) are rebuilt as this project's model from the model YAML stored in
the checkpoint (``model.yaml``), through the same parser as any YAML, and their tensors are mapped in layer by
layer: key names (YOLOv7's ``RepConv`` branches renamed to ultralytics' ``conv1``/``conv2``/``bn``; ``anchor_grid``
is not a tensor of ours: the anchors are taken from it, see :func:`_peer_anchors`), shapes and every torch layer's
settings (kernel, stride, padding, groups, activation) must agree, or loading fails naming the layer. What the
YAMLs of YOLOv5 before v6.1 do not say is read from the layers: the activation of every Conv (``activation:``,
v3.0 LeakyReLU(0.1), v3.1 Hardswish) and BottleneckCSP's own (``csp_activation:``, LeakyReLU(0.1) up to v6.0).
The rebuilt model computes what the original did.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import collections
import copy
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

from models import MOVED

TRUST_ENV = "YOLO_TRUST_WEIGHTS"  # "1": unrestricted unpickling (train.py --trust-weights; an env var reaches DDP workers)
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # this project's ``models`` package
# this project's classes in checkpoints written before the rooms: old module path -> where they live now
OLD_PATHS = {**MOVED, "models.heads": "models.heads.anchor"}
PEER_MODULES = frozenset({"models.yolo", "models.common", "models.experimental"})  # classic YOLOv5 / YOLOv7 modules
WHERE_TO_GET = (
    "Released weights are files you download yourself, then pass by path: classic YOLOv5 from "
    "https://github.com/ultralytics/yolov5/releases (e.g. v7.0/yolov5s.pt), YOLOv7 from "
    "https://github.com/WongKinYiu/yolov7/releases (yolov7-tiny.pt, yolov7_training.pt), ultralytics' "
    "from https://github.com/ultralytics/assets/releases (yolov5su.pt)"
)
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


def trust_enabled() -> bool:
    """Unrestricted loading requested through the environment (``YOLO_TRUST_WEIGHTS=1``, set by train.py --trust-weights)."""
    return os.environ.get(TRUST_ENV, "0").strip().lower() in ("1", "true", "yes", "on")


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


def _main_pickle(path: Path) -> bytes | None:
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


def _is_peer(data: bytes | None) -> bool:
    """Whether a pickle names classic YOLOv5 / YOLOv7 classes (``models.common.Conv``, ``models.yolo.Model``, ...)."""
    if data is None:
        return False
    for g in pickled_globals(data):
        module, _, name = g.rpartition(".")
        if module in PEER_MODULES and _own_class(module, name) is None:
            return True
    return False


def read_checkpoint(path: str | Path, trust: bool | None = None) -> dict:
    """The checkpoint dict stored in ``path``, read through the allow-list (see the module doc).

    ``trust=None`` follows ``YOLO_TRUST_WEIGHTS``. Raises FileNotFoundError, :class:`UnsafeCheckpointError` or
    :class:`CheckpointError`. A file holding a bare model is returned as ``{"model": model}``.
    """
    path = Path(path)
    trust = trust_enabled() if trust is None else trust
    if not path.is_file():
        raise FileNotFoundError(f"weights {path}: no such file; weights are never downloaded. {WHERE_TO_GET}")
    data = _main_pickle(path)
    resolver = _Resolver(path, peer=_is_peer(data), trust=trust)
    try:
        ckpt = torch.load(path, map_location="cpu", pickle_module=resolver.pickle_module(), weights_only=False)
    except CheckpointError:
        raise
    except RuntimeError as e:
        if "explicit pickle_module" not in str(e):
            raise CheckpointError(f"{path}: not a readable checkpoint (truncated, or not written by torch.save): "
                                  f"{e}") from e
        raise CheckpointError(f"{path}: TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, which forbids this project's restricted "
                              "loader (it never runs code from a file either); unset it") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (empty, truncated, or not written by torch.save): "
                              f"{type(e).__name__}: {e}") from e
    return ckpt if isinstance(ckpt, dict) else {"model": ckpt}


# ----------------------------------------------------------------------------------------------------------------------
# Models


def stored_model(ckpt: dict) -> nn.Module | None:
    """The model a checkpoint holds: ``ema`` when present, else ``model``."""
    for key in ("ema", "model"):
        if isinstance(ckpt.get(key), nn.Module):
            return ckpt[key]
    return None


def checkpoint_format(ckpt: dict) -> str:
    """'ours', 'ultralytics', 'YOLOv5' or 'YOLOv7' (from the stored model), '' when it holds no model."""
    from ultralytics.nn.tasks import DetectionModel

    from models.yolo import AttentionDetectionModel

    m = stored_model(ckpt)
    if isinstance(m, AttentionDetectionModel):
        return "ours"
    if isinstance(m, PeerModule):
        return _peer_family(m)
    if isinstance(m, DetectionModel):
        return "ultralytics"
    return ""


def model_from_checkpoint(ckpt: dict, path: str | Path = "checkpoint"):
    """This project's model from a :func:`read_checkpoint` dict: fp32, eval mode, ``args``/``pt_path``/``task`` set."""
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.tasks import DetectionModel

    from models.yolo import AttentionDetectionModel

    m = stored_model(ckpt)
    if isinstance(m, AttentionDetectionModel):
        model = m.float()
    elif isinstance(m, PeerModule):
        model = _rebuild(m, path, _peer_family(m))
    elif isinstance(m, DetectionModel):
        model = _rebuild(m, path, "ultralytics")
    else:
        found = type(m).__name__ if m is not None else f"keys {sorted(map(str, ckpt))[:8]}"
        raise CheckpointError(f"{path}: holds no YOLO detection model under 'ema' or 'model' (found {found})")
    train_args = ckpt.get("train_args") if isinstance(ckpt.get("train_args"), dict) else {}
    model.args = {**DEFAULT_CFG_DICT, **train_args}
    model.pt_path = str(path)
    model.task = "detect"
    return model.eval()


_LAST_LOADED: list = []  # [(file identity, trust), model]: the last file load_model read, kept on the CPU


def load_model(path: str | Path, device="cpu", trust: bool | None = None):
    """The model stored in a checkpoint as this project's ``AttentionDetectionModel``: fp32, in eval mode, the ``ema``
    weights when present, else ``model``. Any supported format (see the module doc); restricted unpickling unless
    ``trust`` (``None``: ``YOLO_TRUST_WEIGHTS``).

    train.py reads its ``--weights`` file up to three times (checked before the run folder is made, its YAML for
    ``--attention``, the transfer): the last file read through the allow-list is kept, keyed by its path, size, inode
    and modification time, and each call gets its own copy, so such a file is unpickled and rebuilt once per process.
    A trusted load (``trust``) is never kept: it reads, and runs, the file every time, as asked.
    """
    trust = trust_enabled() if trust is None else trust
    p = Path(path)
    st = p.stat() if p.is_file() and not trust else None
    key = (str(p.resolve()), st.st_size, st.st_ino, st.st_mtime_ns) if st else None
    if key is None or not _LAST_LOADED or _LAST_LOADED[0] != key:
        model = model_from_checkpoint(read_checkpoint(path, trust), path).cpu()
        _LAST_LOADED[:] = [key, model] if key else []
    else:
        model = _LAST_LOADED[1]
    return copy.deepcopy(model).to(device)


# ----------------------------------------------------------------------------------------------------------------------
# Rebuilding foreign models as ours

# Module names in a peer's model YAML that this project registers under another name (peer name -> registered
# name). Empty: every supported peer layer is found under its own name. The names ultralytics uses for other layers
# (Bottleneck, BottleneckCSP, RepConv) pick the peer's layer by the YAML rule (no ``scales:`` table: YOLOv5's /
# YOLOv7's, models/layers/yolov5.py), and ``csp_activation:`` picks BottleneckCSP's activation.
ROW_NAMES: dict[str, str] = {}
# YOLOv7's RepConv branches -> ultralytics' RepConv (3x3 conv+BN, 1x1 conv+BN, identity BN; fused conv)
RENAMED = {"RepConv": {"rbr_dense.0": "conv1.conv", "rbr_dense.1": "conv1.bn", "rbr_1x1.0": "conv2.conv",
                       "rbr_1x1.1": "conv2.bn", "rbr_identity": "bn", "rbr_reparam": "conv"}}
# anchor_grid (anchors in pixels, a buffer up to YOLOv5 v5.0 and in YOLOv7) is not a tensor of ours: the anchors are
# taken from it (_peer_anchors)
DROPPED = {"Detect": ("anchor_grid",), "IDetect": ("anchor_grid",), "IAuxDetect": ("anchor_grid",)}
YOLOV7_ONLY = frozenset({"IDetect", "MP", "SP", "SPPCSPC", "RepConv", "ImplicitA", "ImplicitM", "IAuxDetect", "ReOrg",
                         "DownC", "Shortcut", "IBin", "IKeypoint"})
# not compared: settings that do not change what a layer computes at inference (BatchNorm eps/momentum are copied),
# that old pickles may lack, and the parsers' per-layer tags (index, 'from', type name, parameter count)
NOT_COMPARED = frozenset({"training", "inplace", "eps", "momentum", "recompute_scale_factor", "name", "i", "f", "type",
                          "np"})
PLAIN = (bool, int, float, str, tuple, type(None))


def _peer_family(root: nn.Module) -> str:
    names = {peer_class_name(m) for m in root.modules()}
    return "YOLOv7" if names & YOLOV7_ONLY else "YOLOv5"


def _map_key(root: nn.Module, key: str) -> str | None:
    """A peer state-dict key in this project's naming (None: dropped), walking the peer's module tree."""
    parts, out, m, i = key.split("."), [], root, 0
    while i < len(parts) - 1:
        table = RENAMED.get(peer_class_name(m), {})
        two = ".".join(parts[i:i + 2])
        if i + 2 < len(parts) and two in table:
            out.append(table[two])
            m, i = m.get_submodule(two), i + 2
        else:
            out.append(table.get(parts[i], parts[i]))
            m, i = getattr(m, parts[i]), i + 1
    if parts[-1] in DROPPED.get(peer_class_name(m), ()):
        return None
    return ".".join(out + parts[-1:])


def _map_path(root: nn.Module, name: str) -> str:
    return _map_key(root, f"{name}.x")[:-2] if name else ""


def _torch_layers(layer: nn.Module, mapped: bool) -> dict[str, tuple]:
    """Every torch.nn sub-module of a layer: path (in our naming) -> (class, constructor settings)."""
    out = {}
    for name, m in layer.named_modules(remove_duplicate=False):
        if type(m).__module__.startswith("torch.nn") and not isinstance(m, (nn.Sequential, nn.ModuleList, nn.Identity)):
            settings = {k: v for k, v in vars(m).items()
                        if not k.startswith("_") and k not in NOT_COMPARED and isinstance(v, PLAIN)}
            out[_map_path(layer, name) if mapped else name] = (type(m).__name__, settings)
    return out


def _check_settings(theirs: nn.Module, ours: nn.Module, where: str) -> None:
    a, b = _torch_layers(theirs, True), _torch_layers(ours, False)
    if a.keys() != b.keys():
        only = sorted(set(a) - set(b))[:4], sorted(set(b) - set(a))[:4]
        raise CheckpointError(f"{where}: its layers differ from this project's: only in the checkpoint {only[0]}, "
                              f"only here {only[1]}")
    for k, (cls, settings) in a.items():
        cls2, settings2 = b[k]
        common = settings.keys() & settings2.keys()
        diff = {s: (settings[s], settings2[s]) for s in sorted(common) if settings[s] != settings2[s]}
        if cls != cls2 or diff:
            what = f"{cls} vs {cls2}" if cls != cls2 else ", ".join(f"{s} {x!r} vs {y!r}" for s, (x, y) in diff.items())
            raise CheckpointError(f"{where}: {k or 'the layer'} computes something else here (checkpoint vs this "
                                  f"project: {what})")


def _load_layer(theirs: nn.Module, ours: nn.Module, where: str) -> int:
    """Copy one layer's tensors (and BatchNorm eps/momentum); returns the number of tensors loaded."""
    from ultralytics.nn.modules import RepConv

    sd = {}
    for k, v in theirs.state_dict().items():
        k2 = _map_key(theirs, k)
        if k2 is not None:
            sd[k2] = v
    for name, m in ours.named_modules():  # reparameterised YOLOv7 RepConv (rbr_reparam): fuse ours the same way
        if isinstance(m, RepConv) and f"{name + '.' if name else ''}conv.weight" in sd and hasattr(m, "conv1"):
            m.fuse_convs()
            m.forward = m.forward_fuse
    own = ours.state_dict()
    missing, extra = sorted(own.keys() - sd.keys()), sorted(sd.keys() - own.keys())
    shapes = [f"{k} {list(sd[k].shape)} vs {list(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or extra or shapes:
        parts = [f"missing {missing[:4]}" if missing else "", f"unexpected {extra[:4]}" if extra else "",
                 f"shapes differ (checkpoint vs here): {shapes[:3]}" if shapes else ""]
        raise CheckpointError(f"{where}: its tensors do not fit this project's {type(ours).__name__}: "
                              + "; ".join(p for p in parts if p))
    _check_settings(theirs, ours, where)
    ours.load_state_dict(sd)
    bns = dict(theirs.named_modules(remove_duplicate=False))
    for name, m in ours.named_modules():
        src = next((b for n, b in bns.items() if _map_path(theirs, n) == name), None) if isinstance(m, nn.BatchNorm2d) else None
        if isinstance(src, nn.BatchNorm2d):
            m.eps, m.momentum = src.eps, src.momentum
    return len(sd)


def _activation_row(act: nn.Module) -> str | None:
    """``nn.LeakyReLU(0.1)`` for an activation module, as a model YAML's ``activation:`` writes it."""
    from models.parse.read import ACTIVATIONS

    name = type(act).__name__
    if ACTIVATIONS.get(name) is not type(act):
        return None
    if isinstance(act, nn.LeakyReLU):
        return f"nn.LeakyReLU({act.negative_slope})"
    return f"nn.{name}()"


def _shared_activation(acts: list[nn.Module]) -> nn.Module | None:
    """The one activation all of ``acts`` are (same class and LeakyReLU slope), else None."""
    kinds = {(type(a), getattr(a, "negative_slope", None)) for a in acts}
    return acts[0] if len(kinds) == 1 else None


def _peer_activations(d: dict, layers: list[nn.Module]) -> None:
    """The activations a classic YOLOv5 release ran without its YAML saying so, written as model keys.

    - ``activation:``: every Conv's (v3.0: LeakyReLU(0.1), v3.1: Hardswish), when all Convs share one other than
      SiLU and no row names an activation (YOLOv7 rows do: their Convs differ by design);
    - ``csp_activation:``: BottleneckCSP's own, after the BatchNorm of its concatenated branches (LeakyReLU(0.1) up to
      v6.0), when it is not SiLU.
    A key the YAML already has is kept; an activation this project cannot write stops the load at the settings check.
    """
    modules = [m for layer in layers for m in layer.modules()]
    rows_name_one = any("nn." in str(r[-1]) for r in [*d.get("backbone", []), *d.get("head", [])])
    if not d.get("activation") and not rows_name_one:
        act = _shared_activation([m.act for m in modules if peer_class_name(m) == "Conv"
                                  and isinstance(getattr(m, "act", None), nn.Module)
                                  and not isinstance(m.act, nn.Identity)])  # Conv(act=False) is Identity anywhere
        if act is not None and not isinstance(act, nn.SiLU) and _activation_row(act):
            d["activation"] = _activation_row(act)
    if not d.get("csp_activation"):
        act = _shared_activation([m.act for m in modules if peer_class_name(m) == "BottleneckCSP"
                                  and isinstance(getattr(m, "act", None), nn.Module)])
        if act is not None and not isinstance(act, nn.SiLU) and _activation_row(act):
            d["csp_activation"] = _activation_row(act)


def _peer_anchors(head, peer_head: nn.Module, path) -> None:
    """Anchors from the peer head's ``anchor_grid`` (pixels, what its forward multiplies by) when it has one.

    YOLOv5 v3.0/v3.1 put anchors in stride units before checking their order, so a YAML listing them P5 first
    (yolov5-panet.yaml) saved an ``anchors`` buffer flipped with the wrong strides (P3's anchors / 32, P5's / 8) and
    a correct ``anchor_grid``; its forward read ``anchor_grid``, as do YOLOv5 up to v5.0 and YOLOv7.
    """
    from ultralytics.utils import LOGGER

    grid = peer_head.__dict__.get("_buffers", {}).get("anchor_grid")
    if not isinstance(grid, torch.Tensor) or grid.numel() != head.anchors.numel():
        return
    anchors = grid.float().view_as(head.anchors) / head.stride.view(-1, 1, 1)
    if not torch.allclose(anchors, head.anchors, rtol=1e-3):
        LOGGER.info(f"{Path(str(path)).name}: its 'anchors' buffer is not anchor_grid / stride (YOLOv5 v3.x saved it "
                    "mis-scaled for YAMLs listing P5 first); using anchor_grid, which its forward used")
    head.anchors.copy_(anchors)


def _names(src: nn.Module, nc: int) -> dict[int, str]:
    names = getattr(src, "names", None)
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or len(names) != nc:
        return {i: str(i) for i in range(nc)}
    return {int(k): str(v) for k, v in names.items()}


def _rebuild(src: nn.Module, path, family: str):
    """``src`` (a peer stand-in tree or an ultralytics model) rebuilt as this project's model, tensors mapped in."""
    from ultralytics.utils import LOGGER

    from models.heads.anchor import AnchorHead
    from models.registry import ConfigError
    from models.yolo import AttentionDetectionModel

    name = Path(str(path)).name
    d = getattr(src, "yaml", None)
    layers = getattr(src, "model", None)
    if not isinstance(d, dict) or not isinstance(layers, nn.Sequential):
        raise CheckpointError(f"{path}: its {family} model stores no model YAML (model.yaml) and layer list to rebuild "
                              "it from")
    d = copy.deepcopy(d)
    d["yaml_file"] = f"{name} ({family} model YAML)"
    if family != "ultralytics":
        _peer_activations(d, list(layers))
        for key in ("backbone", "head"):
            d[key] = [[*r[:2], ROW_NAMES.get(r[2], r[2]), *r[3:]] if isinstance(r, list) and len(r) == 4 and
                      isinstance(r[2], str) else r for r in d.get(key) or []]
    try:
        model = AttentionDetectionModel(d, ch=int(d.get("channels", d.get("ch", 3))), verbose=False)
    except ConfigError as e:
        raise CheckpointError(f"{path}: its {family} model cannot be rebuilt here: {e}") from None
    if len(model.model) != len(layers):
        raise CheckpointError(f"{path}: {len(layers)} layers in the checkpoint, {len(model.model)} rebuilt from its YAML")
    n = 0
    with torch.no_grad():
        for i, (theirs, ours) in enumerate(zip(layers, model.model)):
            where = f"{path}: layer {i} ({ours.type})"
            if getattr(theirs, "f", ours.f) != ours.f:
                raise CheckpointError(f"{where}: reads {theirs.f} in the checkpoint, {ours.f} as rebuilt")
            n += _load_layer(theirs, ours, where)
    head = model.model[-1]
    stride = getattr(src, "stride", None)
    if isinstance(stride, torch.Tensor) and not torch.allclose(stride.float().cpu(), model.stride.float().cpu()):
        raise CheckpointError(f"{path}: strides {stride.tolist()} in the checkpoint, {model.stride.tolist()} rebuilt")
    if isinstance(head, AnchorHead):
        head.anchors_from_data = False  # the checkpoint's anchors, not placeholders for AutoAnchor
        with torch.no_grad():
            _peer_anchors(head, layers[-1], path)
        if not isinstance(model.yaml.get("anchors"), list):  # 'anchors: 3' in the YAML: write the learned ones
            model.yaml["anchors"] = (head.anchors * head.stride.view(-1, 1, 1)).flatten(1).tolist()
    model.names = _names(src, head.nc if hasattr(head, "nc") else model.yaml["nc"])
    total = len(model.state_dict())
    LOGGER.info(f"{name}: {family} checkpoint ({type(src).peer_class if isinstance(src, PeerModule) else type(src).__name__}), "
                f"rebuilt from its model YAML as this project's model: {n}/{total} tensors")
    return model


# ----------------------------------------------------------------------------------------------------------------------
# Our checkpoints in ultralytics' restricted loading


def own_classes() -> list[type]:
    """Every ``nn.Module`` class of this project's ``models`` package (registered layers, their parts, the model)."""
    import sys

    from models.registry import LAYERS

    len(LAYERS)  # imports every registering module
    importlib.import_module("models.yolo")
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
