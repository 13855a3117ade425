"""Attention in ultralytics' newer families: names with the scale letter, insertion positions on their graphs
(YOLO11's C2PSA tail, YOLO12's A2C2f, YOLOv9-E's CBLinear/CBFuse branches, P2/P6), channels checked, and an exact
identity start after a transfer from the base model."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path

import pytest
import torch

from models.parse.plan import plan_rows
from models.parse.read import PACKAGED_DIR, load_config, resolve_config, rows_of, scale_from_name
from models.registry import ConfigError
from models.surgery.insertion import insert, insert_layers
from models.weights.transfer import transfer_weights
from models.yolo import build_model
from tools.families import detection_yamls, model_dict, positions, scales_of, tensors

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
YAMLS = {p.stem: p for p in detection_yamls()}


@pytest.mark.parametrize("name, scale", [
    ("yolov5s-cbam.yaml", "s"), ("my_yolov5s_cbam.yaml", "s"), ("yolov8s_ca.yaml", "s"), ("yolo11s-cbam.yaml", "s"),
    ("yolo12n-se.yaml", "n"), ("yolo26x-p6.yaml", "x"), ("yoloe-11l.yaml", "l"), ("yolov10m.yaml", "m"),
    ("yolov9c.yaml", ""), ("yolov7-tiny.yaml", ""), ("model.yaml", ""), ("yolov5-cbam.yaml", ""),
])
def test_scale_letter_by_ultralytics_rule(name, scale):
    assert scale_from_name(name) == scale


def test_names_resolve_to_configs_then_to_ultralytics_files(tmp_path):
    assert resolve_config("yolov9c.yaml") == ((PACKAGED_DIR / "v9" / "yolov9c.yaml").resolve(), "")
    assert resolve_config("yolov8m-p2") == ((PACKAGED_DIR / "v8" / "yolov8-p2.yaml").resolve(), "m")
    assert resolve_config("yolov5s6.yaml") == ((PACKAGED_DIR / "v5" / "yolov5-p6.yaml").resolve(), "s")
    own = tmp_path / "my_yolov5_cbam.yaml"  # a user's file: the name without the letter defines the scales
    own.write_text((ROOT / "configs" / "yolov5-cbam.yaml").read_text())
    path, scale = resolve_config(tmp_path / "my_yolov5s_cbam.yaml")
    assert (path, scale) == (own.resolve(), "s")
    assert load_config(tmp_path / "my_yolov5s_cbam.yaml")["scale"] == "s"
    with pytest.raises(FileNotFoundError, match="among the YAMLs ultralytics ships"):
        resolve_config("yolov99s-nothing.yaml")


def test_insert_keeps_the_scale_letter_in_the_file_it_writes(tmp_path):
    from tools.insert import main

    out = tmp_path / "mine.yaml"
    assert main(["yolo11s.yaml", "CBAM@backbone_end", "-o", str(out)]) == 0
    assert "\nscale: s\n" in out.read_text()
    assert load_config(out)["scale"] == "s" and build_model(out).model[11].type == "CBAM"


# Where each position lands, per family (first scale; base-model layer indices the inserted module reads).
POSITIONS = {
    "yolov3-tiny": {"backbone_end": [12], "p3": [6], "p4": [8], "p5": [12], "neck_outputs": [19, 15]},
    "yolov5": {"backbone_end": [9], "p3": [4], "p4": [6], "p5": [9], "neck_outputs": [17, 20, 23]},
    "yolov6": {"backbone_end": [9], "p3": [4], "p4": [6], "p5": [9], "neck_outputs": [19, 23, 27]},
    "yolov8": {"backbone_end": [9], "p3": [4], "p4": [6], "p5": [9], "neck_outputs": [15, 18, 21],
               "after:C2f": [2, 4, 6, 8, 12, 15, 18, 21]},
    "yolov8-p2": {"backbone_end": [9], "p2": [2], "p5": [9], "neck_outputs": [18, 21, 24, 27]},
    "yolov8-ghost-p6": {"backbone_end": [11], "p5": [8], "p6": [11], "neck_outputs": [20, 23, 26, 29]},
    "yolov9t": {"backbone_end": [9], "p3": [4], "p4": [6], "p5": [9], "neck_outputs": [15, 18, 21]},
    "yolov9e": {"backbone_end": [29], "p3": [22], "p4": [25], "p5": [29], "neck_outputs": [35, 38, 41]},
    "yolov10n": {"backbone_end": [10], "p3": [4], "p4": [6], "p5": [10], "neck_outputs": [16, 19, 22]},
    "yolo11": {"backbone_end": [10], "p3": [4], "p4": [6], "p5": [10], "neck_outputs": [16, 19, 22],
               "after:C3k2": [2, 4, 6, 8, 13, 16, 19, 22]},
    "yolo12": {"backbone_end": [8], "p3": [4], "p4": [6], "p5": [8], "neck_outputs": [14, 17, 20],
               "after:C3k2": [2, 4, 20], "after:A2C2f": [6, 8, 11, 14, 17]},
    "yolo26": {"backbone_end": [10], "p3": [4], "p4": [6], "p5": [10], "neck_outputs": [16, 19, 22]},
    "yolo26-p2": {"backbone_end": [10], "p2": [2], "p5": [10], "neck_outputs": [19, 22, 25, 28]},
    "yolo26-p6": {"backbone_end": [12], "p5": [8], "p6": [12], "neck_outputs": [21, 24, 27, 30]},
}


@pytest.mark.parametrize("stem", sorted(POSITIONS))
def test_positions_land_where_the_family_has_them(stem):
    path = YAMLS[stem]
    found = positions(path, scales_of(path)[0])
    assert {k: [j for j, _ in found[k]] for k in POSITIONS[stem]} == POSITIONS[stem]


def _inputs(d: dict) -> list[list[int]]:
    """Absolute input indices of every row."""
    out = []
    for i, (f, *_rest) in enumerate(rows_of(d)):
        out.append([i + x if x < 0 else x for x in (f if isinstance(f, list) else [f])])
    return out


def test_cbfuse_lists_are_remapped_on_yolov9e():
    """Inserted after layer 22 (p3): every later row, CBFuse's five-way lists included, reads the same producers."""
    d = model_dict(YAMLS["yolov9e"], "")
    result = insert_layers(d, ["CBAM@p3"])
    (new_index,) = [r.index for r in result.inserted]
    before, after = _inputs(d), _inputs(result.cfg)
    old_of = {new: old for old, new in result.index_map.items()}
    for old, new in result.index_map.items():
        if old == 0:
            continue
        mapped = [old_of.get(j, "att") for j in after[new]]
        assert mapped == ["att" if j == 22 else j for j in before[old]], (old, new)
    assert after[new_index] == [result.index_map[22]]
    plan = plan_rows(result.cfg, rows_of(result.cfg), 3, 1.0, 1.0, float("inf"))  # channels checked, nothing built
    assert plan[new_index].c2 == plan[new_index - 1].c2 == 512


def test_attention_after_a_cblinear_is_refused_with_the_reason():
    d = model_dict(YAMLS["yolov9e"], "")
    result = insert_layers(d, ["CBAM@12"])
    with pytest.raises(ConfigError, match=r"layer 12 outputs several maps .*CBLinear.*only a CBFuse row reads"):
        plan_rows(result.cfg, rows_of(result.cfg), 3, 1.0, 1.0, float("inf"))


def test_channels_are_inferred_and_checked_on_yolo11():
    """Each inserted module is built on the width its input really has (recorded in a forward pass), including
    after C2PSA (the tail) and on every C3k2; a wrong nominal width is an error naming the fix."""
    d = model_dict(YAMLS["yolo11"], "s")
    cfg = insert(d, ["CBAM[1024]@backbone_end", "SE@neck_outputs", "ECA@after:C3k2"]).cfg
    m = build_model(cfg)
    plan = plan_rows(cfg, rows_of(cfg), 3, 0.5, 0.5, 1024, "s")
    att = [i for i, layer in enumerate(m.model) if layer.type in ("CBAM", "SE", "ECA")]
    assert len(att) == 1 + 3 + 8
    seen = {}

    def record(i):
        def hook(module, inputs):
            seen[i] = inputs[0].shape[1]  # returns None: the input is not replaced
        return hook

    hooks = [m.model[i].register_forward_pre_hook(record(i)) for i in att]
    with torch.no_grad():
        m.eval()(torch.rand(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    cbam = next(i for i in att if m.model[i].type == "CBAM")
    assert seen == {i: plan[i].args[0] for i in att} and seen[cbam] == 512  # after C2PSA [1024] at width 0.5
    with pytest.raises(ConfigError, match=r"CBAM was given 512 channels, which width_multiple 0.5 scales to 256, but "
                                          r"its input \(the 'from' layer\) has 512 channels \(write 1024"):
        insert(d, ["CBAM[512]@backbone_end"])


IDENTITY = ["NonLocal@backbone_end", "GCBlock@p3", "LSKA@neck_outputs"]


@pytest.mark.parametrize("stem, extra", [("yolo11", ["GCBlock@after:C3k2"]), ("yolo12", ["GCBlock@after:A2C2f"]),
                                         ("yolov10n", []), ("yolo26-p2", ["NonLocal@p2"]), ("yolov9t", []),
                                         ("yolov8-ghost-p6", ["GCBlock@p6"])])
def test_inserted_modules_start_as_the_identity_after_a_transfer(stem, extra):
    """With the base model's weights transferred, modules that can start as the identity do: the new model computes
    exactly what the base did (end-to-end heads included)."""
    path = YAMLS[stem]
    d = model_dict(path, scales_of(path)[0])
    torch.manual_seed(0)
    base = build_model(deepcopy(d))
    new = build_model(insert(d, IDENTITY + extra).cfg)
    report = transfer_weights(new, base, verbose=False)
    assert report.transferred == len(base.state_dict()) and not report.not_identity, report.details()
    x = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(2))
    base.eval(), new.eval()
    with torch.no_grad():
        a, b = tensors(base(x)), tensors(new(x))
    assert len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))
