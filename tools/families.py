"""The detection YAMLs the installed ultralytics ships, built here and by ultralytics, and compared.

    python tools/families.py                  # every detection YAML x scale: params here / ultralytics, keys, outputs
    python tools/families.py yolo11 yolov10n  # only the files whose name starts so

The walk covers every folder of ``ultralytics/cfg/models``; a file is a detection YAML when its last row is a head in
:data:`DETECTION_HEADS`. Files of other tasks are told apart by their head (:data:`OTHER_HEADS`, with the reason each
is out of scope); a head in neither set is an error, so a new ultralytics family or head is seen, not skipped.
"""

from __future__ import annotations

import argparse
import sys
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import offline  # noqa: E402

offline.configure()

import torch  # noqa: E402
import ultralytics  # noqa: E402

from models.parse.read import read_yaml  # noqa: E402

CFG_MODELS = Path(ultralytics.__file__).parent / "cfg" / "models"
DETECTION_HEADS = ("Detect", "v10Detect")
# The heads of the other YAMLs ultralytics ships, and why they are not detection models built here.
OTHER_HEADS = {
    "Classify": "classification",
    "Segment": "instance segmentation", "Segment26": "instance segmentation",
    "Pose": "pose", "Pose26": "pose",
    "OBB": "oriented boxes", "OBB26": "oriented boxes",
    "SemanticSegment": "semantic segmentation", "Depth": "depth estimation",
    "WorldDetect": "open-vocabulary detection (YOLO-World: a text model's embeddings as input)",
    "YOLOEDetect": "open-vocabulary detection (YOLOE: text/visual prompt embeddings)",
    "YOLOESegment": "open-vocabulary segmentation (YOLOE)", "YOLOESegment26": "open-vocabulary segmentation (YOLOE)",
    "RTDETRDecoder": "RT-DETR (transformer decoder, its own trainer and loss)",
}


def installed_yamls() -> list[Path]:
    """Every model YAML of the installed ultralytics, by family folder and name."""
    return sorted(CFG_MODELS.glob("*/*.yaml"))


def head_of(path: Path) -> str:
    rows = (read_yaml(path) or {}).get("head") or []
    return rows[-1][2] if rows else ""


def detection_yamls() -> list[Path]:
    """The installed detection YAMLs (last row: a head in :data:`DETECTION_HEADS`)."""
    return [p for p in installed_yamls() if head_of(p) in DETECTION_HEADS]


def unclassified_yamls() -> list[tuple[Path, str]]:
    """Installed YAMLs whose head is neither a detection head nor a known head of another task (should be none)."""
    return [(p, h) for p in installed_yamls() if (h := head_of(p)) not in DETECTION_HEADS and h not in OTHER_HEADS]


def scales_of(path: Path) -> list[str]:
    """The scale letters a YAML defines (``['']`` for a file without ``scales:``, e.g. yolov9c.yaml)."""
    return list((read_yaml(path) or {}).get("scales") or {"": None})


def model_dict(path: Path, scale: str) -> dict:
    """The model dict both parsers get: the file's content with its scale letter, as ``yaml_model_load`` gives it."""
    d = read_yaml(path)
    d["scale"], d["yaml_file"] = scale, str(path)
    return d


def label(path: Path, scale: str) -> str:
    """``yolo11.yaml`` at scale ``s`` -> ``yolo11s``; ``yolov8-p2.yaml`` -> ``yolov8s-p2``; ``yolov9c.yaml`` -> ``yolov9c``."""
    from models.parse.read import scale_from_name

    stem = path.stem
    if not scale or scale_from_name(stem):  # yolov10n.yaml names its own (only) scale
        return stem
    base, _, tail = stem.partition("-")
    return f"{base}{scale}{'-' + tail if tail else ''}"


def layer_problems(path: Path, scale: str) -> list[str]:
    """Differences between the layers our parser and ultralytics' build (on the meta device: no weights): state-dict
    keys and shapes in order, each layer's type, ``from`` and the saved outputs. Empty when they are the same."""
    from ultralytics.nn.tasks import parse_model as theirs

    from models.parse.build import parse_model as ours

    d = model_dict(path, scale)
    with torch.device("meta"):
        a, save_a = theirs(deepcopy(d), 3, verbose=False)
        b, save_b = ours(deepcopy(d), 3, verbose=False)
    out = []
    ka = [(k, tuple(v.shape)) for k, v in a.state_dict().items()]
    kb = [(k, tuple(v.shape)) for k, v in b.state_dict().items()]
    if ka != kb:
        first = next((x, y) for x, y in zip(ka + [None] * len(kb), kb + [None] * len(ka)) if x != y)
        out.append(f"state dict: {len(kb)} tensors here, {len(ka)} in ultralytics; first difference {first}")
    for m, n in zip(a, b):
        if type(m) is not type(n) or m.f != n.f:
            out.append(f"layer {m.i}: {type(n).__name__} from {n.f} here, {type(m).__name__} from {m.f} in ultralytics")
    if len(a) != len(b) or set(save_a) != set(save_b):
        out.append(f"{len(b)} layers saving {sorted(set(save_b))} here, {len(a)} saving {sorted(set(save_a))} there")
    return out


def tensors(o) -> list[torch.Tensor]:
    """Every tensor of a model output (tuples, lists, dicts by sorted key), in order."""
    if isinstance(o, torch.Tensor):
        return [o]
    if isinstance(o, dict):
        return [t for k in sorted(o) for t in tensors(o[k])]
    if isinstance(o, (list, tuple)):
        return [t for x in o for t in tensors(x)]
    return []


def same_outputs(a, b) -> bool:
    ta, tb = tensors(a), tensors(b)
    return len(ta) == len(tb) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(ta, tb))


@dataclass
class Comparison:
    """One YAML at one scale, built here and by ultralytics (same seed), ours loaded with ultralytics' weights."""

    name: str
    params: int
    params_ultralytics: int
    keys: bool  # state-dict keys and shapes equal, in order
    eval: bool  # outputs bit-equal in eval mode
    train: bool  # outputs bit-equal in train mode (batch statistics)
    end2end: bool  # the head has a one-to-one (NMS-free) branch

    @property
    def exact(self) -> bool:
        return self.params == self.params_ultralytics and self.keys and self.eval and self.train


def build_pair(path: Path, scale: str, seed: int = 0):
    """(ultralytics' DetectionModel, ours) of one YAML at one scale, each built after ``torch.manual_seed(seed)``."""
    from ultralytics.nn.tasks import DetectionModel

    from models.yolo import AttentionDetectionModel

    d = model_dict(path, scale)
    torch.manual_seed(seed)
    theirs = DetectionModel(deepcopy(d), verbose=False)
    torch.manual_seed(seed)
    ours = AttentionDetectionModel(deepcopy(d), verbose=False)
    return theirs, ours


def compare(path: Path, scale: str, size: tuple[int, int] = (64, 128)) -> Comparison:
    """Build both, load ultralytics' weights into ours, and compare outputs on one random non-square batch of two
    (``size`` a multiple of the largest stride, 64 for the P6 files) in eval and in train mode."""
    theirs, ours = build_pair(path, scale)
    keys = [(k, v.shape) for k, v in theirs.state_dict().items()] == [(k, v.shape) for k, v in ours.state_dict().items()]
    if keys:
        ours.load_state_dict(theirs.state_dict())
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    equal = {}
    for mode in ("eval", "train"):
        theirs.train(mode == "train")
        ours.train(mode == "train")
        with torch.no_grad():
            equal[mode] = keys and same_outputs(theirs(x), ours(x))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return Comparison(label(path, scale), count(ours), count(theirs), keys, equal["eval"], equal["train"],
                      getattr(ours.model[-1], "one2one_cv2", None) is not None)


POSITIONS = ("backbone_end", "p2", "p3", "p4", "p5", "p6", "neck_outputs", "after:C3k2", "after:C2f", "after:A2C2f")


def positions(path: Path, scale: str, names=POSITIONS) -> dict[str, list[tuple[int, str]]]:
    """Where each insertion position lands in a YAML: ``{position: [(layer the module reads, its type), ...]}``
    (positions the model lacks are left out), as ``tools/insert.py`` and ``train.py --attention`` resolve them."""
    from models.surgery.graph import graph_of, layer_strides
    from models.surgery.insertion import insert_layers
    from models.surgery.spec import InsertError

    d = model_dict(path, scale)
    nodes = graph_of(d, path.name)
    strides = layer_strides(d)
    out = {}
    for pos in names:
        try:
            result = insert_layers(d, [f"CBAM@{pos}"], strides=strides)
        except InsertError:
            continue
        old_of = {new: old for old, new in result.index_map.items()}
        out[pos] = [(old_of[r.reads], nodes[old_of[r.reads]].module) for r in result.inserted]
    return out


# One checkpoint per family for the weights checks: ultralytics' model name and where configs/ has its module configs.
CHECKPOINTS = {"v3": "yolov3-tiny", "v5": "yolov5n", "v6": "yolov6n", "v8": "yolov8n", "v9": "yolov9t",
               "v10": "yolov10n", "11": "yolo11n", "12": "yolo12n", "26": "yolo26n"}


def ultralytics_checkpoint(name: str, path: Path, seed: int = 0) -> Path:
    """A checkpoint written by ultralytics' own code, ``YOLO("<name>.yaml").save(path)`` (random weights)."""
    from ultralytics import YOLO

    torch.manual_seed(seed)
    YOLO(f"{name}.yaml").save(str(path))
    return path


@dataclass
class Transfer:
    """An ultralytics checkpoint read here and transferred into the same model with an attention module inserted."""

    checkpoint: str
    loaded: bool  # read with the restricted loader, outputs bit-equal to ultralytics' own loading of the file
    base_tensors: int
    transferred: int
    total: int  # tensors of the model with the module
    inserted: str


def check_transfer(name: str, folder: Path, insertion: str = "CBAM@backbone_end") -> Transfer:
    """Write ``<name>.pt`` with ultralytics, load it here, compare outputs, and transfer it into ``name`` + module."""
    from ultralytics import YOLO

    from models.surgery.insertion import insert
    from models.weights.checkpoint import load_model
    from models.weights.transfer import transfer_weights
    from models.yolo import build_model

    # not <name>.pt: ultralytics' loader reads yolov5n.pt / yolov3-tiny.pt as the 'u' release files and downloads them
    path = ultralytics_checkpoint(name, folder / f"{name}-base.pt")
    ours, theirs = load_model(path).float().eval(), YOLO(str(path)).model.float().eval()
    x = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        loaded = same_outputs(ours(x), theirs(x))
    model = build_model(insert(f"{name}.yaml", [insertion]).cfg)
    report = transfer_weights(model, path, verbose=False)
    return Transfer(path.name, loaded, len(theirs.state_dict()), report.transferred, report.total, insertion)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="only YAML files whose name starts with one of these")
    args = ap.parse_args(argv)
    bad = 0
    for p, head in unclassified_yamls():
        print(f"{p.relative_to(CFG_MODELS)}: head {head} is neither a detection head nor a known other head")
        bad += 1
    print(f"{'model':<18}{'params here':>14}{'ultralytics':>14}  keys  eval  train  end2end")
    for p in detection_yamls():
        if args.names and not any(p.name.startswith(n) for n in args.names):
            continue
        for s in scales_of(p):
            c = compare(p, s)
            bad += not c.exact
            print(f"{c.name:<18}{c.params:>14,}{c.params_ultralytics:>14,}  {c.keys!s:<5} {c.eval!s:<5} "
                  f"{c.train!s:<6} {c.end2end}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
