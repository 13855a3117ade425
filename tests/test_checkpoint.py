"""Checkpoints from this project, ultralytics, classic YOLOv5 (v3.0, v3.1, v5.0, v6.0, v7.0) and YOLOv7 (P5 and P6,
training, deploy) load as our model and predict what they predicted; a checkpoint that names anything else is refused
before it runs.

The YOLOv5 / YOLOv7 files are made here, without their code: the model is built with our parser (whose layers have
the same tensors as theirs), then written with the other project's object layout (module names ``models.yolo.Model``,
``models.common.Conv``, ..., their attributes: ``model.yaml``, ``stride``, ``names`` as a list, ``Detect.anchors``
and ``anchor_grid``, YOLOv7's ``RepConv`` branches) in fp16, in the checkpoint dicts their train.py and
strip_optimizer write. A reference model keeps the same weights, so the loaded model must predict exactly the same.
"""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import types
from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models.weights.checkpoint import CheckpointError, checkpoint_format, load_model, read_checkpoint
from models.weights.unpickle import PeerModule, UnsafeCheckpointError, stand_in
from models.parse.read import load_config
from models.heads.anchor import AnchorDetect, IDetect
from models.weights.transfer import transfer_weights
from models.yolo import AttentionDetectionModel, build_model

ROOT = Path(__file__).resolve().parents[1]
PEER_YAMLS = ROOT / "tests" / "fixtures" / "peer_yamls"
NC = 5
LEAKY = "nn.LeakyReLU(0.1)"
# what YOLOv5 v3.x's code ran and its YAMLs do not say (Conv's activation, BottleneckCSP's own)
RELEASE_ACTIVATIONS = {"v3.0": {"activation": LEAKY, "csp_activation": LEAKY},
                       "v3.1": {"activation": "nn.Hardswish()", "csp_activation": LEAKY}}
pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------------------------------
# Writing other projects' checkpoint formats


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Stand-in for trained weights (every tensor perturbed, BatchNorm statistics too); anchors are left alone."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point and not name.endswith("anchors"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g)) if name.endswith("running_var") else \
                    t.add_(0.05 * torch.randn(t.shape, generator=g))
    return model


def classic_yaml(cfg: str = "yolov5n-anchor.yaml", version: str = "v7.0") -> dict:
    """The model dict a classic YOLOv5 checkpoint keeps in ``model.yaml`` (depth/width multiples, no scales)."""
    d = load_config(cfg)
    if d.get("scales"):
        depth, width, _ = d["scales"][d["scale"]]
        d = {k: v for k, v in d.items() if k not in ("scales", "scale", "yaml_file")}
        d.update(depth_multiple=depth, width_multiple=width)
    else:
        d = {k: v for k, v in d.items() if k != "yaml_file"}
    d["nc"], d["ch"] = NC, 3
    if version == "v5.0":  # YOLOv5 v5.0 (April 2021): Focus stem, SPP before the last C3, 9 repeats in layer 4
        d["backbone"][0] = [-1, 1, "Focus", [64, 3]]
        d["backbone"][4] = [-1, 9, "C3", [256]]
        d["backbone"][8] = [-1, 1, "SPP", [1024, [5, 9, 13]]]
        d["backbone"][9] = [-1, 3, "C3", [1024, False]]
    return d


def fixture_yaml(name: str) -> dict:
    """A test YAML of tests/fixtures/peer_yamls/ as the peer stores it in ``model.yaml`` (YOLOv5 v3.x: no 'ch')."""
    d = {k: v for k, v in load_config(PEER_YAMLS / name).items() if k not in ("yaml_file", "scale")}
    d["nc"] = NC
    return d


def yolov7_yaml(cfg: str = "yolov7-tiny.yaml", deploy: bool = False) -> dict:
    d = {k: v for k, v in load_config(cfg).items() if k != "yaml_file"}
    d["nc"], d["ch"] = NC, 3
    if deploy:  # YOLOv7's cfg/deploy YAMLs: the same rows with a plain Detect head
        d["head"][-1] = [d["head"][-1][0], 1, "Detect", ["nc", "anchors"]]
    return d


REPCONV_ID_YAML = {  # RepConv with c1 == c2 at stride 1: YOLOv7's identity BatchNorm branch (rbr_identity)
    "nc": NC, "depth_multiple": 1.0, "width_multiple": 1.0, "ch": 3,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [32, 3, 2]],
                 [-1, 1, "RepConv", [32, 3, 1]], [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "RepConv", [64, 3, 1]],
                 [-1, 1, "Conv", [48, 3, 2]], [-1, 1, "RepConv", [64, 3, 1]]],  # the last one without identity
    "head": [[[3, 5, 7], 1, "IDetect", ["nc", "anchors"]]],
}

REPCONV_YAML = {  # a small YOLOv7-style model with RepConv rows (YOLOv7's P3-P5 heads), for the branch renaming
    "nc": NC, "depth_multiple": 1.0, "width_multiple": 1.0, "ch": 3,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [32, 3, 2]],
                 [-1, 1, "MP", []], [-1, 1, "Conv", [64, 1, 1]], [-1, 1, "MP", []], [-1, 1, "Conv", [64, 1, 1]]],
    # c1 != c2, as in YOLOv7's configs: no identity branch (rbr_identity is None)
    "head": [[2, 1, "RepConv", [64, 3, 1]], [4, 1, "RepConv", [128, 3, 1]], [6, 1, "RepConv", [128, 3, 1]],
             [[7, 8, 9], 1, "IDetect", ["nc", "anchors"]]],
}

PEER_CLASS = {  # our class -> the module path the other project pickles it under
    "Conv": "models.common", "C3": "models.common", "Bottleneck": "models.common", "SPPF": "models.common",
    "SPP": "models.common", "Focus": "models.common", "Concat": "models.common", "MP": "models.common",
    "SP": "models.common", "SPPCSPC": "models.common", "RepConv": "models.common", "ImplicitA": "models.common",
    "ImplicitM": "models.common", "AnchorDetect": "models.yolo", "IDetect": "models.yolo",
    "BottleneckCSP": "models.common", "BottleneckCSPLeaky": "models.common", "ReOrg": "models.common",
    "DownC": "models.common", "Shortcut": "models.common", "IAuxDetect": "models.yolo",
}
PEER_NAME = {"AnchorDetect": "Detect", "BottleneckCSPLeaky": "BottleneckCSP"}  # ours -> theirs, where they differ
HEADS = ("AnchorDetect", "IDetect", "IAuxDetect")


def _module_dict() -> dict:
    return dict(vars(nn.Module()))  # nn.Module's own bookkeeping (parameters, buffers, hooks, ...)


def _peer(m: nn.Module, family: str) -> nn.Module:
    """A copy of our module ``m`` in the other project's class and attribute layout (children converted too)."""
    if type(m).__module__.startswith("torch.nn"):
        out = nn.Module.__new__(type(m))
        out.__dict__ = {**vars(m), "_modules": {k: _peer(c, family) for k, c in m._modules.items()}}
        return out
    name = type(m).__name__
    peer_name = PEER_NAME.get(name, name)
    cls = stand_in(PEER_CLASS[name], peer_name)
    out = cls.__new__(cls)
    state = {**vars(m), "_modules": {k: _peer(c, family) for k, c in m._modules.items()}}
    state["type"] = f"{PEER_CLASS[name]}.{peer_name}"
    if name in HEADS:  # buffers: anchors (+ anchor_grid up to v5.0 and in YOLOv7); stride: attribute
        anchors = m.anchors.detach().clone()
        buffers = {"anchors": anchors}
        grid = (anchors * m.stride.view(-1, 1, 1)).view(m.nl, 1, -1, 1, 1, 2)
        if family in ("v3.0", "v3.1", "v5.0", "yolov7"):
            buffers["anchor_grid"] = grid
        state.update(_buffers=buffers, _non_persistent_buffers_set=set(), stride=m.stride.clone(),
                     grid=[torch.zeros(1)] * m.nl)
        state.pop("anchors_from_data", None)
        if family in ("v6.0", "v7.0"):
            state.update(anchor_grid=[torch.zeros(1)] * m.nl, inplace=True)
    if name == "RepConv":  # YOLOv7's layout: rbr_dense (3x3 conv, BN), rbr_1x1 (1x1 conv, BN), identity BN or None
        kids = state["_modules"]
        seq = lambda c: nn.Sequential(c._modules["conv"], c._modules["bn"])  # noqa: E731
        state["_modules"] = {"act": kids["act"], "rbr_dense": seq(kids["conv1"]), "rbr_1x1": seq(kids["conv2"])}
        if kids.get("bn") is not None:
            state["_modules"]["rbr_identity"] = kids["bn"]
        else:
            state["rbr_identity"] = None
        state.update(deploy=False, groups=1, in_channels=m.conv1.conv.in_channels,
                     out_channels=m.conv1.conv.out_channels)
        for k in ("bn", "c1", "c2", "g"):
            state.pop(k, None)
    out.__dict__ = state
    return out


def peer_model(model: AttentionDetectionModel, family: str, yaml: dict) -> nn.Module:
    """Our built model as the other project's ``Model`` object (``family``: v5.0, v6.0, v7.0 or yolov7)."""
    root = "DetectionModel" if family == "v7.0" else "Model"
    cls = stand_in("models.yolo", root)
    out = cls.__new__(cls)
    state = _module_dict()
    state["_modules"] = {"model": _peer(model.model, family)}
    state.update(yaml=deepcopy(yaml), save=list(model.save), names=[f"class{i}" for i in range(NC)],
                 stride=model.stride.clone(), nc=NC, hyp={"lr0": 0.01, "box": 0.05, "obj": 1.0, "cls": 0.5},
                 class_weights=torch.ones(NC))
    if family in ("v3.0", "v3.1", "v5.0", "yolov7"):
        state["gr"] = 1.0
    if family == "yolov7":
        state.update(traced=False, yaml_file="yolov7-tiny.yaml")
    elif family in ("v3.0", "v3.1"):
        state["yaml_file"] = "yolov5s.yaml"
    else:
        state["inplace"] = True
    out.__dict__ = state
    return out


class PeerPickler(pickle._Pickler):
    """Writes stand-in classes under the other project's names (``models.common.Conv``), as their files name them."""

    def save_global(self, obj, name=None):
        if isinstance(obj, type) and issubclass(obj, PeerModule) and obj is not PeerModule:
            module, _, qualname = obj.peer_class.rpartition(".")
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)


def peer_pickle_module() -> types.ModuleType:
    mod = types.ModuleType("peer_pickle")
    mod.Pickler = PeerPickler
    return mod


def release_dict(family: str, model: nn.Module, ema: nn.Module | None = None, stripped: bool = True) -> dict:
    """The checkpoint dict of the other project's train.py (``stripped=False``) or strip_optimizer (``True``)."""
    half = deepcopy(model).half()
    if stripped:
        for p in half.parameters():
            p.requires_grad = False
    ckpt = {"epoch": -1 if stripped else 2, "best_fitness": None if stripped else np.array([0.25]), "model": half,
            "ema": None if stripped else deepcopy(ema if ema is not None else model).half(),
            "updates": None if stripped else 30, "optimizer": None if stripped else {"state": {}, "param_groups": []}}
    if family in ("v3.0", "v3.1"):  # train.py saved the fp32 EMA as 'model' (no 'ema' key); strip_optimizer halved it
        return {"epoch": ckpt["epoch"], "best_fitness": np.array([0.25]),
                "training_results": None if stripped else "0/2 ...\n",
                "model": half if stripped else deepcopy(ema if ema is not None else model),
                "optimizer": ckpt["optimizer"]}
    if family in ("v5.0", "yolov7"):
        ckpt.update(training_results=None if stripped else "0/2 ...\n", wandb_id=None)
    elif family == "v6.0":
        ckpt["wandb_id"] = None
    if family == "v5.0" and stripped:
        ckpt["best_fitness"] = np.array([0.25])  # v5.0's strip_optimizer keeps it
    if family == "v7.0":
        ckpt.update(opt={"weights": "yolov5s.pt", "imgsz": 640, "hyp": {"lr0": 0.01}},
                    git={"remote": "https://github.com/ultralytics/yolov5", "branch": "master", "commit": "0" * 7},
                    date="2022-11-22T14:00:00")
    return ckpt


def save_peer(path: Path, family: str, model: AttentionDetectionModel, yaml: dict, **kw) -> Path:
    """Write ``model`` as a ``family`` checkpoint (v3.0, v3.1, v5.0, v6.0, v7.0, yolov7) with the peer's module names."""
    peer = peer_model(model, family, yaml)
    ema = peer_model(kw.pop("ema"), family, yaml) if "ema" in kw else None
    torch.save(release_dict(family, peer, ema, **kw), path, pickle_module=peer_pickle_module())
    return path


def save_ours(path: Path, model: nn.Module) -> Path:
    torch.save({"epoch": -1, "model": deepcopy(model).half(), "ema": None, "train_args": {"imgsz": 64}}, path)
    return path


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        y = model(x)
    return y[0] if isinstance(y, (tuple, list)) else y


def reference(cfg, seed: int = 0) -> AttentionDetectionModel:
    """Our model with random weights, rounded to fp16 as a checkpoint stores them."""
    return randomise(build_model(cfg, nc=NC), seed).half().float()


X = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(3))
X6 = torch.rand(1, 3, 128, 192, generator=torch.Generator().manual_seed(3))  # P6 models: sides divisible by 64


# ----------------------------------------------------------------------------------------------------------------------
# Formats


FORMATS = {  # name -> (family, model dict)
    "yolov5-v3.0": ("v3.0", lambda: fixture_yaml("yolov5-csp-focus.yaml")),
    "yolov5-v3.1": ("v3.1", lambda: fixture_yaml("yolov5-csp-focus.yaml")),
    "yolov5-v5.0": ("v5.0", lambda: classic_yaml(version="v5.0")),
    "yolov5-v6.0": ("v6.0", lambda: classic_yaml(version="v6.0")),
    "yolov5-v7.0": ("v7.0", lambda: classic_yaml(version="v7.0")),
    "yolov7-tiny-training": ("yolov7", lambda: yolov7_yaml()),
    "yolov7-tiny-deploy": ("yolov7", lambda: yolov7_yaml(deploy=True)),
    "yolov7-repconv": ("yolov7", lambda: deepcopy(REPCONV_YAML)),
    "yolov7-repconv-identity": ("yolov7", lambda: deepcopy(REPCONV_ID_YAML)),
    "yolov7-p6-training": ("yolov7", lambda: fixture_yaml("yolov7-p6-aux.yaml")),
    "yolov7-p6-deploy": ("yolov7", lambda: fixture_yaml("yolov7-p6-deploy.yaml")),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_peer_checkpoint_loads_as_our_model_and_predicts_the_same(fmt, tmp_path):
    family, make_yaml = FORMATS[fmt]
    d = make_yaml()
    ran = RELEASE_ACTIVATIONS.get(family, {})
    ref = reference({**d, **ran})  # the layers that release's code built; its YAML (d) does not name them
    path = save_peer(tmp_path / f"{fmt}.pt", family, ref, d)
    model = load_model(path)
    assert type(model) is AttentionDetectionModel and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert type(model.model[-1]) is type(ref.model[-1])
    read = {k: model.yaml.get(k) for k in ("activation", "csp_activation")}
    assert read == {"activation": None, "csp_activation": None, **ran}  # read from the file's layers
    assert model.names == {i: f"class{i}" for i in range(NC)}
    assert torch.equal(model.stride, ref.stride)
    assert len(model.state_dict()) == len(ref.state_dict())
    x = X6 if int(ref.stride.max()) == 64 else X
    assert torch.equal(predict(model, x), predict(ref, x))
    assert checkpoint_format(read_checkpoint(path)) == ("YOLOv7" if family == "yolov7" else "YOLOv5")


def test_training_checkpoint_loads_the_ema_weights(tmp_path):
    d = classic_yaml()
    model, ema = reference(d, seed=1), reference(d, seed=2)
    path = save_peer(tmp_path / "last.pt", "v7.0", model, d, ema=ema, stripped=False)
    ckpt = read_checkpoint(path)
    assert ckpt["epoch"] == 2 and ckpt["updates"] == 30 and float(ckpt["best_fitness"][0]) == 0.25
    assert torch.equal(predict(load_model(path), X), predict(ema, X))


def test_ultralytics_and_our_checkpoints_load(tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    theirs = randomise(DetectionModel("yolov5n.yaml", nc=NC, verbose=False)).half().float()
    torch.save({"model": deepcopy(theirs).half(), "train_args": {"imgsz": 64}, "epoch": -1}, tmp_path / "yolov5nu.pt")
    loaded = load_model(tmp_path / "yolov5nu.pt")
    assert type(loaded) is AttentionDetectionModel and loaded.args["imgsz"] == 64
    assert torch.equal(predict(loaded, X), predict(theirs, X))
    for cfg in ("yolov5n-cbam.yaml", "yolov5n-anchor.yaml", "yolov7-tiny.yaml"):
        ours = reference(cfg)
        loaded = load_model(save_ours(tmp_path / "best.pt", ours))
        assert torch.equal(predict(loaded, X), predict(ours, X)), cfg
    # a file holding a bare model (torch.save(model)) is read as {"model": model}
    torch.save(ours.half(), tmp_path / "bare.pt")
    assert type(load_model(tmp_path / "bare.pt").model[-1]) is IDetect


def test_yaml_without_anchor_values_gets_the_checkpoints_anchors(tmp_path):
    """'anchors: 3' (YOLOv5 with hyp anchors): the learned anchors live in Detect.anchors; they are kept and written."""
    d = classic_yaml()
    ref = reference(d)
    with torch.no_grad():
        ref.model[-1].anchors.copy_((ref.model[-1].anchors * 1.3).half())  # other anchors than the YAML's
    stored = {**d, "anchors": 3}
    model = load_model(save_peer(tmp_path / "a.pt", "v6.0", ref, stored))
    head = model.model[-1]
    assert torch.equal(head.anchors, ref.model[-1].anchors) and head.anchors_from_data is False
    assert isinstance(model.yaml["anchors"], list) and len(model.yaml["anchors"]) == 3
    assert torch.equal(predict(model, X), predict(ref, X))


def test_activation_of_older_yolov5_is_read_from_its_layers(tmp_path):
    """YOLOv5 before v4.0 had LeakyReLU(0.1) in every Conv and no 'activation' in its YAML."""
    d = classic_yaml()
    ref = reference({**d, "activation": "nn.LeakyReLU(0.1)"})
    model = load_model(save_peer(tmp_path / "v3.pt", "v6.0", ref, d))
    assert model.yaml["activation"] == "nn.LeakyReLU(0.1)"
    assert torch.equal(predict(model, X), predict(ref, X))


def test_yolov5_v3_anchors_come_from_anchor_grid(tmp_path):
    """YOLOv5 v3.x's yolov5-panet.yaml lists anchors P5 first: that release saved its 'anchors' buffer flipped with the
    wrong strides (P3's anchors / 32, P5's / 8) and a correct anchor_grid, which its forward used."""
    d = fixture_yaml("yolov5-csp-focus.yaml")
    d["anchors"] = d["anchors"][::-1]  # P5/32 first, as yolov5-panet.yaml of v3.0/v3.1
    ref = reference({**d, **RELEASE_ACTIVATIONS["v3.1"]})
    peer = peer_model(ref, "v3.1", d)
    head = peer.model[-1]
    grid = head._buffers["anchor_grid"].view(head.nl, -1, 2)
    head._buffers["anchors"] = grid / head.stride.flip(0).view(-1, 1, 1)  # what v3.x saved
    assert not torch.allclose(head._buffers["anchors"], ref.model[-1].anchors)
    torch.save(release_dict("v3.1", peer), tmp_path / "yolov5-panet.pt", pickle_module=peer_pickle_module())
    model = load_model(tmp_path / "yolov5-panet.pt")
    assert torch.equal(model.model[-1].anchors, ref.model[-1].anchors)
    assert torch.equal(predict(model, X), predict(ref, X))
    rebuilt = build_model(model.yaml)  # the stored YAML (anchors P5 first) rebuilds the same anchors
    assert torch.allclose(rebuilt.model[-1].anchors, ref.model[-1].anchors)


def test_yolov5_v4_to_v6_bottleneck_csp_activation_is_read_apart_from_conv(tmp_path):
    """YOLOv5 v4.0-v6.0: SiLU in every Conv, LeakyReLU(0.1) after BottleneckCSP's BatchNorm: only csp_activation."""
    d = fixture_yaml("yolov5-csp-focus.yaml")
    ref = reference({**d, "csp_activation": LEAKY})
    model = load_model(save_peer(tmp_path / "v4.pt", "v5.0", ref, d))
    assert model.yaml["csp_activation"] == LEAKY and "activation" not in model.yaml
    assert torch.equal(predict(model, X), predict(ref, X))


def test_layers_that_differ_fail_naming_the_layer(tmp_path):
    d = classic_yaml()
    ref = reference(d)
    wrong = deepcopy(d)
    wrong["backbone"][1] = [-1, 1, "Conv", [128, 3, 1]]  # stride 1 where the weights were trained with stride 2
    with pytest.raises(CheckpointError, match=r"layer 1 \(Conv\).*stride"):
        load_model(save_peer(tmp_path / "s.pt", "v6.0", ref, wrong))
    wrong = deepcopy(d)
    wrong["backbone"][2] = [-1, 1, "C3", [256]]  # other widths
    with pytest.raises(CheckpointError, match=r"layer 2 \(C3\): its tensors do not fit"):
        load_model(save_peer(tmp_path / "w.pt", "v6.0", ref, wrong))
    wrong = deepcopy(d)
    wrong["head"][-1] = [[17, 20, 23], 1, "Segment", ["nc", "anchors", 32, 256]]  # a head this project lacks
    with pytest.raises(CheckpointError, match="cannot be rebuilt here.*Segment"):
        load_model(save_peer(tmp_path / "seg.pt", "v6.0", ref, wrong))


def test_unreadable_files_fail_clearly(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    for name in ("empty.pt", "text.pt"):
        with pytest.raises(CheckpointError, match=f"{name}: not a readable checkpoint"):
            load_model(tmp_path / name)
    torch.jit.save(torch.jit.script(nn.Conv2d(3, 4, 1)), tmp_path / "script.pt")
    with pytest.raises(CheckpointError, match="TorchScript"):
        load_model(tmp_path / "script.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "dict.pt")
    with pytest.raises(CheckpointError, match="holds no YOLO detection model"):
        load_model(tmp_path / "dict.pt")
    with pytest.raises(FileNotFoundError, match="never downloaded.*yolov5/releases"):
        load_model(tmp_path / "yolov5s.pt")


class BoundForward:
    """Pickles as ``getattr(layer, name)``: a layer whose forward YOLOv5/YOLOv7's ``model.fuse()`` replaced."""

    def __init__(self, layer, name):
        self.layer, self.name = layer, name

    def __reduce__(self):
        return getattr, (self.layer, self.name)


def test_a_fused_peer_model_is_refused_with_what_to_pass_instead(tmp_path):
    d = deepcopy(REPCONV_ID_YAML)
    ckpt = release_dict("yolov7", peer_model(reference(d), "yolov7", d))
    conv = ckpt["model"].model[0]
    conv.__dict__["forward"] = BoundForward(conv, "fuseforward")
    torch.save(ckpt, tmp_path / "fused.pt", pickle_module=peer_pickle_module())
    with pytest.raises(CheckpointError, match=r"fused.pt: holds a model after YOLOv5/YOLOv7's model.fuse\(\).*"
                                              r"models.common.Conv runs fuseforward.*Pass the checkpoint") as e:
        load_model(tmp_path / "fused.pt")
    assert not isinstance(e.value, UnsafeCheckpointError)


# ----------------------------------------------------------------------------------------------------------------------
# Transfer into attention variants


def test_released_weights_transfer_fully_into_attention_variants(tmp_path):
    from models.surgery.insertion import insert

    d = classic_yaml()
    base = save_peer(tmp_path / "yolov5s.pt", "v7.0", reference(d), d)
    n_base = len(load_model(base).state_dict())
    report = transfer_weights(build_model("yolov5n-cbam-anchor.yaml", nc=NC), base, verbose=False)
    assert str(report) == f"transferred {n_base}/{n_base + 10} tensors from yolov5s.pt; new layers: 10 CBAM; skipped: none"
    report = transfer_weights(build_model(insert(load_model(base).yaml, ["CBAM@backbone_end"]).cfg), base, verbose=False)
    assert (report.transferred, report.total, report.new_layers) == (n_base, n_base + 10, [(10, "CBAM")])

    d7 = yolov7_yaml()
    training = save_peer(tmp_path / "yolov7-tiny_training.pt", "yolov7", reference(d7), d7)
    n7 = len(load_model(training).state_dict())
    report = transfer_weights(build_model("yolov7-tiny-cbam.yaml", nc=NC), training, verbose=False)
    assert (report.transferred, report.total) == (n7, n7 + 10) and "skipped: none" in str(report)


@pytest.mark.parametrize("fmt", ["yolov5-v3.1", "yolov7-p6-training", "yolov7-p6-deploy"])
def test_older_and_p6_weights_transfer_fully_into_attention_variants(fmt, tmp_path):
    """CBAM after the backbone of the checkpoint's own model YAML: every tensor of the file is transferred, and with
    the new layer cut out of the graph the model still predicts what the file did."""
    from models.surgery.insertion import insert

    family, make_yaml = FORMATS[fmt]
    d = make_yaml()
    ref = reference({**d, **RELEASE_ACTIVATIONS.get(family, {})})
    path = save_peer(tmp_path / f"{fmt}.pt", family, ref, d, ema=ref, stripped=False)
    loaded = load_model(path)
    n_base = len(loaded.state_dict())
    variant = build_model(insert(loaded.yaml, ["CBAM@backbone_end"]).cfg)
    report = transfer_weights(variant, path, verbose=False)
    (i, name), = report.new_layers
    assert name == "CBAM" and report.skipped_tensors == [] and "skipped: none" in str(report)
    assert (report.transferred, report.total) == (n_base, n_base + len(variant.model[i].state_dict()))
    assert variant.yaml.get("activation") == loaded.yaml.get("activation")
    assert variant.yaml.get("csp_activation") == loaded.yaml.get("csp_activation")
    variant.model[i].forward = lambda x: x  # the inserted layer alone differs from the file's model
    x = X6 if int(ref.stride.max()) == 64 else X
    assert torch.equal(predict(variant, x), predict(ref, x))


def test_deploy_detect_transfers_into_idetect_with_identity_implicit_layers(tmp_path):
    """A YOLOv7 deploy file (implicit layers folded into the head convs) into a training config with IDetect:
    the implicit layers start as the identity, so with an identity-start insertion the model predicts what the
    deploy model did."""
    from models.surgery.insertion import insert

    d = yolov7_yaml(deploy=True)
    ref = reference(d)
    path = save_peer(tmp_path / "yolov7-tiny.pt", "yolov7", ref, d)
    cfg = insert(yolov7_yaml(), ["GCBlock@37"]).cfg  # IDetect head, GCBlock (identity start) inserted after layer 37
    new = build_model(cfg)
    report = transfer_weights(new, path, verbose=False)
    n_base = len(ref.state_dict())
    (i, _), = report.new_layers
    assert report.new_layers == [(38, "GCBlock")] and report.identity == [(38, "GCBlock")]
    assert report.transferred == n_base and report.total == n_base + 6 + len(new.model[i].state_dict())
    assert type(new.model[-1]) is IDetect and any("implicit layers start as the identity" in n for n in report.notes)
    assert torch.equal(predict(new, X), predict(ref, X))

    # and back: a training IDetect into a deploy Detect config folds the implicit layers into the convs
    d7 = yolov7_yaml()
    trained = reference(d7)
    path = save_peer(tmp_path / "yolov7-tiny_training.pt", "yolov7", trained, d7)
    deploy = build_model(yolov7_yaml(deploy=True))
    report = transfer_weights(deploy, path, verbose=False)
    assert type(deploy.model[-1]) is AnchorDetect and report.transferred == report.total
    assert torch.allclose(predict(deploy, X), predict(trained, X), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------------------------------
# Safety


MARKER = "payload-ran"


class Payload:
    """Unpickling this calls ``func(*args)``: what a malicious checkpoint does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker: Path) -> dict[str, Payload]:
    return {
        "posix.system": Payload(os.system, f"touch {marker}"),
        "builtins.eval": Payload(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "builtins.exec": Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.check_call": Payload(subprocess.check_call, ["touch", str(marker)]),
    }


def plant(path: Path, payload: Payload, base: Path, where: str = "key") -> Path:
    """``base`` (a working checkpoint) with ``payload`` in it: as an extra key, or inside the model object."""
    ckpt = torch.load(base, map_location="cpu", weights_only=False)
    if where == "key":
        ckpt["notes"] = payload
    else:
        (ckpt.get("ema") or ckpt["model"]).model[0].note = payload
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def working(tmp_path_factory) -> Path:
    """One of our checkpoints, as the payload carrier."""
    return save_ours(tmp_path_factory.mktemp("ckpt") / "best.pt", reference("yolov5n.yaml"))


@pytest.mark.parametrize("name", ["posix.system", "builtins.eval", "builtins.exec", "subprocess.check_call"])
@pytest.mark.parametrize("where", ["key", "model"])
def test_payload_is_refused_and_never_runs(name, where, working, tmp_path):
    marker = tmp_path / MARKER
    path = plant(tmp_path / "evil.pt", payloads(marker)[name], working, where)
    with pytest.raises(UnsafeCheckpointError) as e:
        load_model(path)
    assert e.value.global_name == name and str(path) in str(e.value) and "--trust-weights" in str(e.value)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        transfer_weights(build_model("yolov5n-cbam.yaml"), path, verbose=False)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: an ordinary unpickling runs it
    assert marker.exists()


def test_payload_in_a_peer_checkpoint_and_protocol_4_pickles_are_refused(tmp_path):
    marker = tmp_path / MARKER
    d = classic_yaml()
    assert isinstance(read_checkpoint(save_peer(tmp_path / "yolov5s.pt", "v7.0", reference(d), d))["model"], PeerModule)
    evil = release_dict("v7.0", peer_model(reference(d), "v7.0", d))
    evil["opt"] = {"weights": Payload(os.system, f"touch {marker}")}
    torch.save(evil, tmp_path / "evil.pt", pickle_module=peer_pickle_module())
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        load_model(tmp_path / "evil.pt")
    torch.save({"model": Payload(os.system, f"touch {marker}")}, tmp_path / "p4.pt", pickle_protocol=4)
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        load_model(tmp_path / "p4.pt")
    assert not marker.exists()


@pytest.mark.parametrize("func", ["ultralytics.utils.checks.check_requirements", "models.weights.checkpoint.load_model",
                                  "torch.load", "numpy.load", "builtins.getattr"])
def test_functions_of_allowed_packages_are_refused(func, tmp_path):
    """Only classes (and a few named tensor-rebuild functions) are looked up, never other functions of the allowed
    packages; a pickled getattr may only fetch a layer's own forward method."""
    import importlib

    module, _, attr = func.rpartition(".")
    if func == "builtins.getattr":
        payload = Payload(getattr, nn.Conv2d(1, 1, 1), "register_forward_hook")
    else:
        payload = Payload(getattr(importlib.import_module(module), attr), str(tmp_path / "x"))
    torch.save({"model": payload}, tmp_path / "x.pt")
    with pytest.raises(UnsafeCheckpointError) as e:
        read_checkpoint(tmp_path / "x.pt")
    assert e.value.global_name.startswith("builtins.getattr(Conv2d") if func == "builtins.getattr" \
        else e.value.global_name.endswith(f".{attr}")


def test_state_written_onto_a_class_is_refused(tmp_path):
    """A pickle may set attributes on an allowed class (BUILD on the class itself), changing what later code runs."""
    import argparse
    import zipfile

    data = b"\x80\x02cargparse\nNamespace\nN}X\x06\x00\x00\x00marked\x88s\x86b."  # Namespace.marked = True
    torch.save({}, tmp_path / "base.pt")
    with zipfile.ZipFile(tmp_path / "base.pt") as zin, zipfile.ZipFile(tmp_path / "x.pt", "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, data if info.filename.endswith("data.pkl") else zin.read(info))
    with pytest.raises(UnsafeCheckpointError, match="writes attributes onto 'Namespace'"):
        read_checkpoint(tmp_path / "x.pt")
    assert not hasattr(argparse.Namespace, "marked")


def test_trust_loads_what_the_restricted_loader_refuses(working, tmp_path, monkeypatch):
    marker = tmp_path / MARKER
    path = plant(tmp_path / "mine.pt", payloads(marker)["posix.system"], working)
    assert type(load_model(path, trust=True)) is AttentionDetectionModel and marker.exists()
    marker.unlink()
    with pytest.raises(UnsafeCheckpointError):  # the default, whatever the environment says
        load_model(path)
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------------------------------
# Every path that reads weights, in this process (the CLIs: tests/test_checkpoint_cli.py)


@pytest.fixture
def evil(working, tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / MARKER
    return plant(tmp_path / "evil.pt", payloads(marker)["posix.system"], working), marker


def test_train_paths_refuse_a_payload(evil, tiny_data, tmp_path):
    import train

    path, marker = evil
    project = tmp_path / "runs"
    runs = {
        "--weights": ["--weights", str(path)],
        "--weights --cfg": ["--cfg", "yolov5n.yaml", "--weights", str(path)],
        "--weights --attention": ["--weights", str(path), "--attention", "CBAM@backbone_end"],
        "--resume FILE": ["--resume", str(path)],
    }
    for what, args in runs.items():
        opt = train.parse_opt([*args, "--data", tiny_data, "--project", str(project)])
        with pytest.raises(SystemExit, match="refused to load.*posix.system") as e:
            train.build_overrides(opt)
        assert str(path) in str(e.value), what
    (project / "exp" / "weights").mkdir(parents=True)
    (project / "exp" / "weights" / "last.pt").write_bytes(path.read_bytes())  # planted where bare --resume looks
    with pytest.raises(SystemExit, match="refused to load.*posix.system"):
        train.build_overrides(train.parse_opt(["--resume", "--project", str(project)]))
    assert not marker.exists() and not (project / "exp2").exists()


def test_trainer_resume_and_pretrained_paths_refuse_a_payload(evil, tiny_data, tmp_path):
    """AttentionTrainer's own loads (what DDP workers and direct users of the trainer reach)."""
    from models.engine.trainer import AttentionTrainer

    path, marker = evil
    with pytest.raises(FileNotFoundError) as e:  # ultralytics' check_resume reports any failure as 'not found'...
        AttentionTrainer(overrides={"model": str(path), "resume": str(path), "data": tiny_data})
    assert isinstance(e.value.__cause__, UnsafeCheckpointError)  # ...caused by the refusal
    trainer = AttentionTrainer(overrides={"model": "yolov5n.yaml", "pretrained": str(path), "data": tiny_data,
                                          "project": str(tmp_path), "name": "t", "epochs": 1, "imgsz": 64})
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        trainer.setup_model()
    trainer.args.pretrained, trainer.model = False, str(path)  # train from the file itself (--weights without --cfg)
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        trainer.setup_model()
    assert not marker.exists()


def test_a_trainer_configured_to_trust_reads_the_file_it_was_told_to_trust(evil, tiny_data, tmp_path):
    """train.py --trust-weights: the setting travels with the trainer class (and so into DDP workers), not through the
    environment."""
    from models.engine.trainer import AttentionTrainer

    path, marker = evil
    trusting = AttentionTrainer.configured(trust_weights=True)
    assert trusting.__name__ == "AttentionTrainer" and AttentionTrainer.trust_weights is False
    trainer = trusting(overrides={"model": str(path), "data": tiny_data, "project": str(tmp_path), "name": "t",
                                  "epochs": 1, "imgsz": 64})
    trainer.setup_model()
    assert marker.exists()


def test_val_detect_heatmap_refuse_a_payload(evil, tiny_data, tmp_path):
    import detect
    import val
    from tools import heatmap

    path, marker = evil
    for module, args in ((val, ["--data", tiny_data]), (detect, []), (heatmap, [])):
        opt = module.parse_opt(["--weights", str(path), "--project", str(tmp_path / "out"), *args])
        with pytest.raises((SystemExit, UnsafeCheckpointError), match="refused to load.*posix.system"):
            module.main(opt)
    assert not marker.exists()


def test_resume_refuses_a_foreign_checkpoint(tmp_path):
    import train

    d = classic_yaml()
    path = save_peer(tmp_path / "last.pt", "v7.0", reference(d), d, stripped=False)
    with pytest.raises(SystemExit, match="a YOLOv5 checkpoint, not a run of this project; --resume continues one.*--weights"):
        train.build_overrides(train.parse_opt(["--resume", str(path)]))


# ----------------------------------------------------------------------------------------------------------------------
# No filename magic


@pytest.fixture
def no_ultralytics_loading(monkeypatch):
    """Fail if any of ultralytics' own weight loaders, renamers or downloaders is reached."""
    import ultralytics.nn.tasks as tasks
    import ultralytics.utils.checks as checks
    import ultralytics.utils.downloads as downloads

    def forbidden(*a, **k):
        raise AssertionError(f"ultralytics' loader/downloader reached with {a}")

    for mod, name in ((tasks, "torch_safe_load"), (downloads, "attempt_download_asset"), (downloads, "safe_download")):
        monkeypatch.setattr(mod, name, forbidden)
    rename = checks.check_yolov5u_filename

    def no_rename(file, *a, **k):  # ultralytics checks every file name it is given (dataset YAMLs too): none may change
        assert rename(file, *a, **k) == file, f"ultralytics would read {rename(file, verbose=False)} for {file}"
        return file

    monkeypatch.setattr(checks, "check_yolov5u_filename", no_rename)


def test_yolov5s_pt_is_that_file_never_yolov5su(tmp_path, monkeypatch, tiny_data, no_ultralytics_loading):
    """A path whose text has no 'u': ultralytics would read yolov5su.pt instead (or download it)."""
    import tools.common as common
    import train
    from models.engine.trainer import AttentionTrainer

    d = classic_yaml()
    ref = reference(d)
    monkeypatch.chdir(tmp_path)
    save_peer(Path("yolov5s.pt"), "v7.0", ref, d)
    save_ours(Path("yolov5su.pt"), build_model("yolov5n.yaml", nc=NC))  # the impostor: an anchor-free yolov5n
    assert type(load_model("yolov5s.pt").model[-1]) is AnchorDetect
    yolo = common.yolo("yolov5s.pt")
    assert type(yolo.model.model[-1]) is AnchorDetect and torch.equal(predict(yolo.model, X), predict(ref, X))
    overrides = train.build_overrides(train.parse_opt(["--weights", "yolov5s.pt", "--data", tiny_data, "--epochs", "1",
                                                       "--img", "64", "--project", str(tmp_path / "runs")]))
    assert overrides["model"] == "yolov5s.pt"
    trainer = AttentionTrainer(overrides=overrides)
    trainer.setup_model()
    assert type(trainer.model.model[-1]) is AnchorDetect
    assert trainer.transfer_report.transferred == trainer.transfer_report.total  # same classes (NC), nothing lost


def test_a_bare_name_that_is_not_a_file_says_where_to_get_weights(tmp_path, monkeypatch):
    import val

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="yolov7-tiny.pt: file not found.*never downloaded.*WongKinYiu/yolov7/releases"):
        val.main(val.parse_opt(["--weights", "yolov7-tiny.pt"]))
