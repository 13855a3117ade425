"""Reading checkpoints: the one place the project loads a ``.pt`` file.

Every path that reads weights (train.py ``--weights``/``--resume``, val.py, detect.py, heatmaps, ablations, weight
transfer, the run YAML of ``--attention``) goes through :func:`load_model` or :func:`read_checkpoint`, which unpickle
through :mod:`models.weights.unpickle` (nothing the file names runs). Formats are recognised by what the file
contains, never by its name: this project's checkpoints (the pickled model is used as it is), ultralytics'
(``DetectionModel``, e.g. yolov5su.pt), classic YOLOv5 (v3.0 to v7.0) and YOLOv7 (P5/P6 training files, deploy
files); the foreign ones are rebuilt as this project's model by :mod:`models.weights.peers`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from models.weights.peers import peer_family, rebuild
from models.weights.unpickle import CheckpointError, PeerModule, is_peer_pickle, main_pickle, restricted_pickle_module

WHERE_TO_GET = (
    "Released weights are files you download yourself, then pass by path: classic YOLOv5 from "
    "https://github.com/ultralytics/yolov5/releases (e.g. v7.0/yolov5s.pt), YOLOv7 from "
    "https://github.com/WongKinYiu/yolov7/releases (yolov7-tiny.pt, yolov7_training.pt), ultralytics' "
    "from https://github.com/ultralytics/assets/releases (yolov5su.pt)"
)


def read_checkpoint(path: str | Path, trust: bool = False) -> dict:
    """The checkpoint dict stored in ``path``, read through the allow-list (see the module doc).

    ``trust``: unrestricted unpickling (a file one made oneself; it runs whatever the file names). Raises
    FileNotFoundError, :class:`~models.weights.unpickle.UnsafeCheckpointError` or
    :class:`CheckpointError`. A file holding a bare model is returned as ``{"model": model}``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights {path}: no such file; weights are never downloaded. {WHERE_TO_GET}")
    pickle_module = restricted_pickle_module(path, peer=is_peer_pickle(main_pickle(path)), trust=trust)
    try:
        ckpt = torch.load(path, map_location="cpu", pickle_module=pickle_module, weights_only=False)
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
        return peer_family(m)
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
        model = rebuild(m, path, peer_family(m))
    elif isinstance(m, DetectionModel):
        model = rebuild(m, path, "ultralytics")
    else:
        found = type(m).__name__ if m is not None else f"keys {sorted(map(str, ckpt))[:8]}"
        raise CheckpointError(f"{path}: holds no YOLO detection model under 'ema' or 'model' (found {found})")
    train_args = ckpt.get("train_args") if isinstance(ckpt.get("train_args"), dict) else {}
    model.args = {**DEFAULT_CFG_DICT, **train_args}
    model.pt_path = str(path)
    model.task = "detect"
    return model.eval()


def read_for_ultralytics(weight) -> tuple[dict, str]:
    """ultralytics' ``torch_safe_load`` contract, ``(checkpoint dict, file)``, read through the allow-list
    (:func:`read_checkpoint`): installed in its place when the ``models`` package is imported
    (:func:`models.engine.patches.restrict_checkpoint_loading`), so ``ultralytics.YOLO("x.pt")`` refuses a file
    that would run code. The path is resolved as ultralytics does; a classic YOLOv5/YOLOv7 model is rebuilt as this
    project's (ultralytics cannot run those files)."""
    from ultralytics.utils.checks import check_suffix
    from ultralytics.utils.downloads import attempt_download_asset

    check_suffix(file=weight, suffix=".pt")
    file = attempt_download_asset(weight)
    ckpt = read_checkpoint(file)
    if isinstance(stored_model(ckpt), PeerModule):
        ckpt = {**ckpt, "model": model_from_checkpoint(ckpt, file), "ema": None}
    return ckpt, str(file)


_LAST_LOADED: list = []  # [(file identity, trust), model]: the last file load_model read, kept on the CPU


def load_model(path: str | Path, device="cpu", trust: bool = False):
    """The model stored in a checkpoint as this project's ``AttentionDetectionModel``: fp32, in eval mode, the ``ema``
    weights when present, else ``model``. Any supported format (see the module doc); restricted unpickling unless
    ``trust``.

    train.py reads its ``--weights`` file up to three times (checked before the run folder is made, its YAML for
    ``--attention``, the transfer): the last file read through the allow-list is kept, keyed by its path, size, inode
    and modification time, and each call gets its own copy, so such a file is unpickled and rebuilt once per process.
    A trusted load (``trust``) is never kept: it reads, and runs, the file every time, as asked.
    """
    p = Path(path)
    st = p.stat() if p.is_file() and not trust else None
    key = (str(p.resolve()), st.st_size, st.st_ino, st.st_mtime_ns) if st else None
    if key is None or not _LAST_LOADED or _LAST_LOADED[0] != key:
        model = model_from_checkpoint(read_checkpoint(path, trust), path).cpu()
        _LAST_LOADED[:] = [key, model] if key else []
    else:
        model = _LAST_LOADED[1]
    return copy.deepcopy(model).to(device)


