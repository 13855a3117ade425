"""Inserting modules into model YAMLs: positions, every kind of 'from' reference, comments, errors, and a
seeded property test over every shipped config (random modules at random valid positions)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import yaml

from models.parse.read import load_config
from models.surgery.graph import layer_strides
from models.surgery.insertion import build_yaml_text, insert, insert_layers
from models.surgery.spec import InsertError, Insertion, parse_insertion
from models.yolo import build_model
from tools.insert import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
# The newer families' configs (yolov8-se.yaml, yolo11-cbam.yaml, ...) differ from each other by the module after the
# backbone only, and the insertions drawn are random modules anyway: four per family by default, all in the slow sweep.
FAMILY_PREFIXES = ("yolov8-", "yolov10n-", "yolo11-", "yolo12-", "yolo26-")
DEFAULT_CONFIGS = [p for p in CONFIGS if not p.name.startswith(FAMILY_PREFIXES)
                   or p.stem.split("-", 1)[1] in ("cbam", "se", "ca", "crisscross")]

# A YOLOv7-style YAML: flow-style lists, relative froms (-2, lists of -1..-4), absolute routes, an anchor-based head.
YOLOV7_STYLE = """\
# hand-made YOLOv7-style model
nc: 3  # number of classes
depth_multiple: 1.0
width_multiple: 0.25
anchors:
  - [10,13, 16,30, 33,23]  # P3/8
  - [30,61, 62,45, 59,119]  # P4/16
  - [116,90, 156,198, 373,326]  # P5/32

backbone:
  # [from, number, module, args]
  [[-1, 1, Conv, [32, 3, 2]],  # 0-P1/2
   [-1, 1, Conv, [64, 3, 2]],  # 1-P2/4

   [-1, 1, Conv, [32, 1, 1]],  # 2 ELAN
   [-2, 1, Conv, [32, 1, 1]],
   [-1, 1, Conv, [32, 3, 1]],  # 4
   [-1, 1, Conv, [32, 3, 1]],
   [[-1, -2, -3, -4], 1, Concat, [1]],
   [-1, 1, Conv, [64, 1, 1]],  # 7

   [-1, 1, MP, []],  # 8-P3/8
   [-1, 1, Conv, [128, 3, 2]],  # 9-P4/16
   [-1, 1, Conv, [256, 3, 2]],  # 10-P5/32
  ]

head:
  [[-1, 1, Conv, [128, 1, 1]],  # 11
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [9, 1, Conv, [128, 1, 1]],  # route backbone P4
   [[-1, -2], 1, Concat, [1]],
   [-1, 1, Conv, [64, 3, 1]],  # 15

   [[8, 15, 10], 1, Detect, [nc, anchors]],  # 16 Detect(P3, P4, P5)
  ]
"""


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def v7_style(tmp_path) -> Path:
    p = tmp_path / "v7style.yaml"
    p.write_text(YOLOV7_STYLE)
    return p


def rows(d: dict) -> list:
    return list(d["backbone"]) + list(d["head"])


def producers(rs: list) -> list[list[int]]:
    """Absolute producer indices of every row (-1 for the image)."""
    out = []
    for i, (f, *_rest) in enumerate(rs):
        fs = f if isinstance(f, list) else [f]
        out.append([-1 if (i == 0 and x == -1) else (i + x if x < 0 else x) for x in fs])
    return out


def assert_same_producers(old: dict, result) -> None:
    """Every original row reads the same original layers as before (looking through inserted rows)."""
    new_rows, new_prod, old_prod = rows(result.cfg), producers(rows(result.cfg)), producers(rows(old))
    back = {n: o for o, n in result.index_map.items()}
    inserted = {r.index for r in result.inserted}

    def origin(j: int) -> int:
        while j in inserted:
            (j,) = new_prod[j]
        return -1 if j == -1 else back[j]

    for o, n in result.index_map.items():
        assert new_rows[n][1:] == rows(old)[o][1:], f"row {o} changed beyond its 'from'"
        assert [origin(j) for j in new_prod[n]] == old_prod[o], f"row {o} (now {n}) reads other layers"
    for r in result.inserted:
        assert new_prod[r.index] == [r.reads] and r.reads < r.index


# ----------------------------------------------------------------------------------------------------------------------
# Positions and references


# configs/yolov5.yaml with CBAM after SPPF, renumbered by hand: every absolute index >= 10 moves up by one.
YOLOV5_CBAM_HEAD = [
    [-1, 1, "Conv", [512, 1, 1]],  # 11
    [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],  # ultralytics YAML reads None as a string
    [[-1, 6], 1, "Concat", [1]],
    [-1, 3, "C3", [512, False]],  # 14
    [-1, 1, "Conv", [256, 1, 1]],  # 15
    [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],  # ultralytics YAML reads None as a string
    [[-1, 4], 1, "Concat", [1]],
    [-1, 3, "C3", [256, False]],  # 18 (P3/8)
    [-1, 1, "Conv", [256, 3, 2]],
    [[-1, 15], 1, "Concat", [1]],  # was [-1, 14]
    [-1, 3, "C3", [512, False]],  # 21 (P4/16)
    [-1, 1, "Conv", [512, 3, 2]],
    [[-1, 11], 1, "Concat", [1]],  # was [-1, 10]
    [-1, 3, "C3", [1024, False]],  # 24 (P5/32)
    [[18, 21, 24], 1, "Detect", ["nc"]],  # was [17, 20, 23]
]


def test_backbone_end_matches_the_hand_renumbered_yolov5():
    base = load_config("configs/yolov5.yaml")
    result = insert_layers(base, ["CBAM[1024]@backbone_end"])
    assert result.cfg["backbone"] == base["backbone"] + [[-1, 1, "CBAM", [1024]]]
    assert result.cfg["head"] == YOLOV5_CBAM_HEAD
    assert [(r.index, r.reads) for r in result.inserted] == [(10, 9)]
    assert_same_producers(base, result)
    assert rows(load_config("configs/yolov5-cbam.yaml")) == rows(result.cfg)  # the shipped config is that model


SMALL_SOURCE = """\
# a small model
nc: 2  # classes
depth_multiple: 1.0
width_multiple: 0.25

backbone:
  # [from, number, module, args]
  - [-1, 1, Conv, [64, 3, 2]]  # 0-P1/2
  - [-1, 1, Conv, [128, 3, 2]]  # 1-P2/4
  - [-1, 1, C3, [128]]  # 2
  - [-1, 1, Conv, [256, 3, 1]]  # 3 stride 4

head:
  - [[-1, 2], 1, Concat, [1]]  # 4 reads 3 and 2
  - [[4], 1, Detect, [nc]]  # 5 Detect
"""

SMALL_EXPECTED = """\
# note
# a small model
nc: 2  # classes
depth_multiple: 1.0
width_multiple: 0.25

backbone:
  # [from, number, module, args]
  - [-1, 1, Conv, [64, 3, 2]] # 0-P1/2
  - [-1, 1, Conv, [128, 3, 2]] # 1-P2/4
  - [-1, 1, C3, [128]] # 2
  - [-1, 1, SE, [128]] # 3 SE inserted at 2
  - [-1, 1, Conv, [256, 3, 1]] # 4 stride 4

head:
  - [[-1, 3], 1, Concat, [1]] # 5 reads 3 and 2
  - [[5], 1, Detect, [nc]] # 6 Detect
"""


def test_text_output_equals_the_hand_written_yaml(tmp_path):
    """The written file, character for character: comments kept, layer numbers in comments renumbered, the row that
    read layer 2 by absolute index now reads the SE that refines it, the list-style head input follows its layer."""
    src = tmp_path / "small.yaml"
    src.write_text(SMALL_SOURCE)
    text, _ = build_yaml_text(str(src), ["SE[128]@2"], note=["# note"])
    assert text == SMALL_EXPECTED


def test_make_configs_writes_the_shipped_text_through_insertion():
    from models.registry import LAYERS
    from tools.make_configs import config_path, config_text

    spec = LAYERS.get("CBAM")
    assert config_text(spec) == config_path(spec).read_text()


def test_index_and_after_index_are_the_same_position():
    base = load_config("configs/yolov5.yaml")
    assert rows(insert_layers(base, ["SE@9"]).cfg) == rows(insert_layers(base, ["SE@after:9"]).cfg) \
        == rows(insert_layers(base, ["SE@backbone_end"]).cfg)


def test_yolov7_tiny_insert_matches_the_hand_written_cbam_config():
    base = load_config("configs/yolov7-tiny.yaml")
    result = insert_layers(base, ["CBAM[256]@37"])
    assert rows(result.cfg) == rows(load_config("configs/yolov7-tiny-cbam.yaml"))
    assert_same_producers(base, result)


def test_relative_lists_and_absolute_routes_keep_their_producers(v7_style):
    base = load_config(v7_style)
    result = insert_layers(base, ["CBAM@4"])  # inside the ELAN: read by row 5 (-1) and the Concat (-3)
    r = rows(result.cfg)
    assert r[5] == [-1, 1, "CBAM", []]
    assert r[6][0] == -1  # old 5 now reads CBAM
    assert r[7] == [[-1, -2, -4, -5], 1, "Concat", [1]]  # old [-1, -2, -3, -4]: 6, CBAM, 3, 2
    assert r[14][0] == 10  # 'route backbone P4' (absolute 9) follows its layer
    assert r[15][0] == [-1, -2]
    assert r[17][0] == [9, 16, 11]  # the head's inputs
    assert_same_producers(base, result)
    build_model(result.cfg)


def test_p_levels_are_the_backbone_outputs_the_neck_reads(v7_style):
    base = load_config("configs/yolov5.yaml")
    strides = layer_strides(base)
    picked = {p: insert_layers(base, [f"SE@{p}"], strides=strides).inserted[0].reads for p in ("p3", "p4", "p5")}
    assert picked == {"p3": 4, "p4": 6, "p5": 9}
    v7 = load_config(v7_style)
    assert insert_layers(v7, ["SE@p4"]).inserted[0].reads == 9


def test_p4_refines_the_feature_for_all_its_readers():
    base = load_config("configs/yolov5.yaml")
    result = insert_layers(base, ["ECA@p4"], strides=layer_strides(base))
    r = rows(result.cfg)
    assert r[7] == [-1, 1, "ECA", []]
    assert r[8][0] == -1 and r[8][2] == "Conv"  # the backbone continues from ECA
    assert r[13] == [[-1, 7], 1, "Concat", [1]]  # the neck's lateral input reads ECA too
    assert_same_producers(base, result)


def test_neck_outputs_sit_just_before_the_head_and_only_the_head_reads_them():
    base = load_config("configs/yolov5.yaml")
    result = insert_layers(base, ["SE@neck_outputs"])
    r = rows(result.cfg)
    assert r[:24] == rows(base)[:24]  # the neck is untouched, same indices
    assert r[24:27] == [[17, 1, "SE", []], [20, 1, "SE", []], [23, 1, "SE", []]]
    assert r[27][0] == [24, 25, 26] and r[27][2] == "Detect"
    assert_same_producers(base, result)


def test_after_type_inserts_after_every_layer_of_that_type(v7_style):
    base = load_config("configs/yolov5.yaml")
    result = insert_layers(base, ["SimAM@after:C3"])
    assert len(result.inserted) == sum(1 for x in rows(base) if x[2] == "C3") == 8
    assert all(rows(result.cfg)[r.index - 1][2] == "C3" for r in result.inserted)
    assert_same_producers(base, result)
    v7 = load_config(v7_style)
    res7 = insert_layers(v7, ["SimAM@after:Conv"])
    assert len(res7.inserted) == sum(1 for x in rows(v7) if x[2] == "Conv")
    assert_same_producers(v7, res7)
    build_model(res7.cfg)


def test_several_modules_at_one_place_chain_in_the_order_given():
    base = load_config("configs/yolov5.yaml")
    r = rows(insert_layers(base, ["CBAM@backbone_end", "SE@9"]).cfg)
    assert [x[2] for x in r[9:13]] == ["SPPF", "CBAM", "SE", "Conv"]
    r = rows(insert_layers(base, ["CBAM@neck_outputs", "SE@neck_outputs"]).cfg)
    assert r[-1][0] == [27, 28, 29] and [x[0] for x in r[27:30]] == [24, 25, 26]


def test_module_arguments_are_written_in_the_row():
    ins = parse_insertion("CBAM{reduction: 8, kernel_size: 3}@p5")
    assert (ins.module, ins.args, ins.position) == ("CBAM", [{"reduction": 8, "kernel_size": 3}], "p5")
    assert parse_insertion("CBAM[1024, 16]@9").args == [1024, 16]
    r = rows(insert_layers(load_config("configs/yolov5.yaml"), [ins]).cfg)
    assert r[10] == [-1, 1, "CBAM", [{"reduction": 8, "kernel_size": 3}]]


def test_input_dict_is_not_modified():
    base = load_config("configs/yolov5.yaml")
    before = yaml.safe_dump(base)
    insert_layers(base, ["SE@after:C3", "CBAM@neck_outputs"])
    assert yaml.safe_dump(base) == before


# ----------------------------------------------------------------------------------------------------------------------
# Text


def test_text_keeps_comments_and_renumbers_layer_numbers():
    text, result = build_yaml_text("configs/yolov5.yaml", ["CBAM@backbone_end", "SE@neck_outputs"])
    assert "# 13 cat backbone P4" in text  # was '# 12 cat backbone P4'
    assert "# 21 (P4/16-medium)" in text  # was '# 20 (P4/16-medium)'
    assert "  - [-1, 1, CBAM, []] # 10 CBAM inserted at backbone_end" in text
    assert "  - [18, 1, SE, []] # 25 SE inserted at neck_outputs" in text
    assert "# 28 Detect(P3, P4, P5)" in text
    assert "  # [from, number, module, args]" in text and "scales: # [depth_multiple" in text
    assert not text.startswith("# Built by")  # the library writes no provenance line unless asked (note=...)
    assert yaml.safe_load(text)["head"] == result.cfg["head"]


def test_text_of_yolov7_style_yaml_reads_back_and_builds(v7_style, tmp_path):
    text, result = build_yaml_text(str(v7_style), ["CBAM@4", "SE@neck_outputs"])
    assert "# 0-P1/2" in text and "# 9-P1" not in text
    assert "# 10-P4/16" in text and "# 11-P5/32" in text  # 9-P4/16 and 10-P5/32 moved by one
    assert "anchors:\n  - [10,13, 16,30, 33,23]  # P3/8" in text  # other keys kept verbatim
    out = tmp_path / "out.yaml"
    out.write_text(text)
    assert rows(load_config(out)) == rows(result.cfg)
    build_model(str(out))


def test_scale_of_the_source_name_is_written(tmp_path):
    text, _ = build_yaml_text("yolov5s.yaml", ["SE@backbone_end"])
    assert "\nscale: s\n" in text
    out = tmp_path / "my.yaml"
    out.write_text(text)
    assert build_model(str(out)).yaml["scale"] == "s"


# ----------------------------------------------------------------------------------------------------------------------
# Errors: clear, and nothing written


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("CBAM@p9", ["CBAM@p9", "stride 512", "p3 (layer 4)", "p5 (layer 9)"]),
        ("CBAM@backbone_middle", ["unknown position 'backbone_middle'", "backbone_end", "neck_outputs"]),
        ("CBAM@99", ["no layer 99", "0..24", "Detect", "0..23"]),
        ("CBAM@24", ["no layer 24", "detection head"]),
        ("CBAM@after:C2f", ["no layer of type 'C2f'", "C3", "SPPF"]),
        ("CBAMM@backbone_end", ["unknown layer 'CBAMM'", "Did you mean: CBAM"]),
        ("Conv[64]@backbone_end", ["'conv' layer", "shape-preserving", "CBAM"]),
        ("CBAM[512]@backbone_end", ["CBAM[512]@backbone_end", "layer 10 (CBAM)", "write 1024"]),
        ("CBAM", ["MODULE@POSITION"]),
    ],
)
def test_bad_requests_name_what_was_asked_and_what_exists(spec, expected):
    with pytest.raises(InsertError) as e:
        insert("configs/yolov5.yaml", [spec])
    for text in expected:
        assert text in str(e.value), (text, str(e.value))


def test_cli_writes_nothing_on_error(tmp_path, capsys):
    out = tmp_path / "my.yaml"
    assert main(["configs/yolov5.yaml", "CBAM@backbone_end", "SE@nowhere", "-o", str(out)]) == 2
    assert "SE@nowhere" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())
    out.write_text("keep me\n")
    assert main(["configs/yolov5.yaml", "CBAM[256]@backbone_end", "-o", str(out)]) == 2
    assert out.read_text() == "keep me\n"


def test_cli_writes_a_yaml_that_builds(tmp_path, capsys):
    out = tmp_path / "my.yaml"
    assert main(["yolov5n.yaml", "CBAM@backbone_end", "SE@neck_outputs", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "10 CBAM" in err and "wrote" in err
    m = build_model(str(out))
    assert [m.model[i].type for i in (10, 25, 26, 27)] == ["CBAM", "SE", "SE", "SE"]
    assert out.read_text().startswith("# Built by tools/insert.py from yolov5n.yaml: CBAM@backbone_end SE@neck_outputs\n")
    assert main(["configs/yolov5.yaml", "--positions"]) == 0
    listing = capsys.readouterr().out
    assert "p4            -> after layer 6 (C3)" in listing and "neck_outputs  -> on the head's inputs [17, 20, 23]" in listing


def test_identity_blend_wraps_only_modules_without_an_exact_identity():
    result = insert("configs/yolov5.yaml", ["SE@backbone_end", "GCBlock@p4"], identity_blend=True)
    r = rows(result.cfg)
    assert r[11] == [-1, 1, "ResidualBlend", ["SE"]]  # x * sigmoid(.) is never exactly x
    assert r[7] == [-1, 1, "GCBlock", []]  # x + transform(context), zero-initialised: identity on its own
    assert [x.blended for x in result.inserted] == [True, False]


# ----------------------------------------------------------------------------------------------------------------------
# Property test: every shipped config, random modules at random valid positions


def small(d: dict) -> dict:
    """The same structure, narrow and shallow (8-80 channels, repeats / 3): the properties tested do not depend on width."""
    scales = d.pop("scales", None)
    d["depth_multiple"] = 0.33
    d["width_multiple"] = d.get("width_multiple", 1.0) / 16 if not scales else 1 / 16
    if any(row[2] == "A2C2f" for row in d["backbone"] + d["head"]):
        d["width_multiple"] = 1 / 4  # YOLO12's area attention needs multiples of 32 channels (its scale n)
    return d


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Perturb every weight and BatchNorm statistic, so that outputs depend on every layer (a fresh head is constant)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            noise = torch.randn(t.shape, generator=g) * 0.05
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif "anchor" in name or name.endswith("stride"):
                continue
            else:
                t.add_(noise)


def outputs(model, x) -> list[torch.Tensor]:
    with torch.no_grad():
        y = model(x)
    flat, todo = [], [y]
    while todo:
        v = todo.pop()
        if isinstance(v, torch.Tensor):
            flat.append(v)
        elif isinstance(v, (list, tuple)):
            todo += list(v)
        elif isinstance(v, dict):
            todo += list(v.values())
    return flat


_NATIVE: dict[str, bool] = {}


def native_identity(name: str) -> bool:
    from models.registry.protocol import init_identity
    from models.registry import LAYERS

    if name not in _NATIVE:
        _NATIVE[name] = init_identity(LAYERS.get(name).cls(64))
    return _NATIVE[name]


def random_insertions(d: dict, rng: random.Random, k: int, names: list[str]) -> list[Insertion]:
    last = len(rows(d)) - 1
    out = []
    for _ in range(k):
        name = rng.choice(names)
        position = rng.choice([str(rng.randrange(last)), "backbone_end", "neck_outputs", "p3", "p4", "p5",
                               f"after:{rng.choice(rows(d)[:-1])[2]}"])
        # modules with an exact identity go in as they are; the others wrapped in ResidualBlend (identity_blend)
        out.append(Insertion(name, [], position) if native_identity(name) else Insertion("ResidualBlend", [name], position))
    return out


def check_insertion_keeps_outputs(cfg_path: Path, seed: int, k: int) -> None:
    from models.registry import attention_specs
    from models.weights.transfer import transfer_weights

    rng = random.Random(f"{cfg_path.name}-{seed}")
    names = [s.name for s in attention_specs() if not s.dense]  # dense N x N maps: P5 only (see catalogue)
    base_cfg = small(load_config(cfg_path))
    strides = layer_strides(base_cfg)
    levels_ok = [p for p in ("p3", "p4", "p5") if 2 ** int(p[1]) in strides[: len(base_cfg["backbone"])]]
    ins = [x for x in random_insertions(base_cfg, rng, k, names) if not x.position.startswith("p") or x.position in levels_ok]
    result = insert_layers(base_cfg, ins, strides=strides)
    assert_same_producers(base_cfg, result)
    torch.manual_seed(seed)
    base = build_model(base_cfg).eval()
    randomise(base, seed)
    new = build_model(result.cfg).eval()
    report = transfer_weights(new, base, identity_init=True, verbose=False)
    assert {i for i, _ in report.new_layers} == {r.index for r in result.inserted}, (str(report), [x.text for x in ins])
    assert not report.not_identity, report.details()
    assert report.transferred == len(base.state_dict()), report.details()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    for a, b in zip(outputs(base, x), outputs(new, x)):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5, msg=lambda m: f"{cfg_path.name} {[x.text for x in ins]}: {m}")


@pytest.mark.parametrize("cfg_path", DEFAULT_CONFIGS, ids=lambda p: p.stem)
def test_random_insertions_build_and_start_from_the_base_models_outputs(cfg_path):
    check_insertion_keeps_outputs(cfg_path, seed=0, k=2)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 6))
@pytest.mark.parametrize("cfg_path", CONFIGS, ids=lambda p: p.stem)
def test_random_insertions_sweep(cfg_path, seed):
    check_insertion_keeps_outputs(cfg_path, seed=seed, k=3)
