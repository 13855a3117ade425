"""No silently different model: a row another project reads differently builds that project's module, says how it
differs, or is refused with the row to write (issue 21).

Parameter counts of the other projects' modules ("theirs") were taken by running each one's code in a scratch
directory outside this project (the golden fixtures' sidecars name the repository and commit of each port; the seed
articles' classes were run from the articles' text): at C = 512, a row's ``[1024]`` in a width-0.5 model.
"""

from __future__ import annotations

import logging

import pytest
import torch
from ultralytics.utils import LOGGER

from models.parse.build import parse_model
from models.registry import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

C, W = 512, 0.5


def model_dict(name, args, c=C, width=W, dialect=None):
    d = {"nc": 80, "depth_multiple": 1.0, "width_multiple": width, "yaml_file": "wild.yaml",
         "backbone": [[-1, 1, "Conv", [int(c / width), 3, 2]], [-1, 1, name, args]], "head": []}
    if dialect:
        d["dialect"] = dialect
    return d


def build(name, args, **kw) -> tuple[torch.nn.Module, list[str]]:
    """The row's layer (built on the meta device: counts only) and the warnings its build printed."""
    records: list[str] = []
    handler = logging.Handler()
    handler.setLevel(logging.WARNING)
    handler.emit = lambda r: records.append(r.getMessage().split("WARNING ⚠️ ", 1)[-1])  # ultralytics' prefix
    LOGGER.addHandler(handler)
    try:
        with torch.device("meta"):
            layers, _ = parse_model(model_dict(name, args, **kw), verbose=False)
    finally:
        LOGGER.removeHandler(handler)
    return layers[1], records


def count(m) -> int:
    return sum(p.numel() for p in m.parameters())


# -- item 0: the seed articles' classes by their names -----------------------------------------------------------------


@pytest.mark.parametrize("name, args, theirs, form", [
    ("SEAttention", [], 32_768, "eap"),  # SEAttention(512): bias-free Linear layers, 2C(C/16)
    ("SEAttention", [8], 65_536, "eap"),
    ("CBAMAttention", [1024], 32_867, "ods"),  # bias-free MLP, biased 7x7 conv on [max; mean], no BN
    ("CBAMAttention", [], 32_867, "ods"),
    ("ECAAttention", [3], 4, "eap"),  # Conv1d(1, 1, 3) with its bias
    ("CAAttention", [1024], 49_216, "bubbliiiing"),  # bias-free 1x1 convs, BN, ReLU, r = 16, mip exactly C // 16
])
def test_the_seed_articles_classes_build_the_articles_module(name, args, theirs, form):
    m, warnings = build(name, args)
    assert count(m) == theirs and m.form == form and warnings == []


def test_ccn_builds_the_articles_code_and_says_it_is_not_criss_cross_attention():
    m, warnings = build("CCN", [1024])
    assert type(m).__name__ == "ResidualConv" and count(m) == 2_360_320 and m.type == "CCN -> ResidualConv"
    assert len(warnings) == 1 and "residual convolution" in warnings[0] and "[-1, 1, CrissCross, []]" in warnings[0]


def test_one_argument_gamattention_says_what_the_articles_code_is():
    m, warnings = build("GAMAttention", [1024])
    assert count(m) == 1_739_264  # YOLOAir's GAMAttention (grouped, rate 4), the name's module in YOLO YAMLs
    assert len(warnings) == 1
    assert "seed article's one-argument GAMAttention(in_channels) is not GAM" in warnings[0]
    assert "263,680 parameters at C = 512" in warnings[0]
    _, warnings = build("GAMAttention", [1024], dialect="yoloair")  # the YAML says whose it is: the article's is not
    assert "seed article" not in " ".join(warnings)


# -- item 1: our own names, compared with the other projects' readings -------------------------------------------------


def test_a_shared_name_builds_ours_and_one_warning_names_every_other_module():
    m, warnings = build("CBAM", [1024])
    assert count(m) == 33_412 and len(warnings) == 1
    w = warnings[0]
    assert w.startswith("wild.yaml: layer 1 (CBAM): CBAM [1024] built this project's CBAM (form 'paper'), "
                        "33,412 parameters")
    for theirs, edit in (("33,411", "[-1, 1, CBAM, [{form: yoloair}]] or `dialect: yoloair`"),
                         ("32,866", "[-1, 1, CBAM, [{form: bubbliiiing}]] or `dialect: forks`"),
                         ("262,754", "[-1, 1, CBAM, [{form: ultralytics}]] or `dialect: ultralytics`")):
        assert f"{theirs} parameters, {edit}" in w
    assert "`dialect: native`" in w


@pytest.mark.parametrize("name, args, theirs", [
    ("SE", [1024], "32,768 parameters, [-1, 1, SE, [{form: eap}]]"),
    ("ECA", [1024], "3 parameters, [-1, 1, ECA, [{kernel_size: 3}]]"),
    ("SimAM", [1024], "0 parameters, [-1, 1, SimAM, [{e_lambda: 512}]]"),
    ("ACmix", [1024], "829,934 parameters, [-1, 1, ACmix, [{form: official}]]"),
    ("BiLevelRoutingAttention", [], "9,216 parameters fewer than here"),
])
def test_other_readings_of_our_names_are_stated(name, args, theirs):
    _, warnings = build(name, args)
    assert len(warnings) == 1 and theirs in warnings[0]


def test_the_row_says_which_module_and_no_warning_is_printed():
    for args, dialect in (([1024, {"form": "paper"}], None), ([1024], "native"), ([1024], "forks")):
        m, warnings = build("CBAM", args, dialect=dialect)
        assert warnings == [] and count(m) == (32_866 if dialect == "forks" else 33_412)


def test_warnings_are_printed_without_the_layer_table():
    _, warnings = build("SE", [1024])  # built with verbose=False
    assert len(warnings) == 1


def test_a_value_another_project_reads_as_another_hyperparameter_is_refused():
    with pytest.raises(ConfigError) as e:
        build("CBAM", [1024, 3])
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("wild.yaml: layer 1 (CBAM): CBAM [1024, 3] means different modules")
    assert "this project reads reduction=3 (174,862 parameters, [-1, 1, CBAM, [{reduction: 3}]])" in msg
    assert "262,674 parameters, [-1, 1, CBAM, [{kernel_size: 3, form: ultralytics}]] or `dialect: ultralytics`" in msg
    assert "here that block is ConvCBAM" in msg
    m, _ = build("CBAM", [1024, {"reduction": 3}])  # by name: no doubt left
    assert count(m) == 174_862
    m, _ = build("ConvCBAM", [1024, 3])  # ktwu77's conv + CBAM block: 2.39 M at C = 512
    assert count(m) == 2_393_186


def test_a_width_passed_as_a_hyperparameter_by_one_generation_is_refused():
    """YOLOAir reads SEAttention [128] as reduction 16; yoloair2 builds SEAttention(c1, c2): reduction 128."""
    with pytest.raises(ConfigError) as e:
        build("SEAttention", [128], c=128, width=1.0)
    msg = str(e.value)
    assert "2,048 parameters, [-1, 1, SE, [{form: eap}]] or `dialect: yoloair`" in msg
    assert "256 parameters, [-1, 1, SE, [{reduction: 128, form: eap}]] or `dialect: yoloair2`" in msg
    assert count(build("SEAttention", [128], c=128, width=1.0, dialect="yoloair2")[0]) == 256
    assert count(build("SOCA", [1024], dialect="yoloair2")[0]) == 1_537  # SOCA(c1, c2): hidden 1


# -- item 3: dialects ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, args, dialect, theirs", [
    ("CBAM", [7], "ultralytics", 262_754),  # ultralytics' CBAM(c1, kernel_size)
    ("CBAM", [1024], "ultralytics", 262_754),  # a leading width dropped (the forks inject c1)
    ("SE", [16], "ultralytics", 32_768),
    ("GAM", [4], "ultralytics", 6_556_160),
    ("CA", [32], "ultralytics", 25_648),
    ("CBAM", [1024, 8], "forks", 65_634),  # bubbliiiing's CBAM(c1, c2, ratio=8)
    ("ECA", [1024, 5], "forks", 5),
    ("SKAttention", [512], "yoloair2", 22_110_240),  # passed unscaled there
    ("SEAttention", [1024], "yoloair2", 1_024),
])
def test_dialects_read_rows_as_their_project(name, args, dialect, theirs):
    m, warnings = build(name, args, dialect=dialect)
    assert count(m) == theirs and warnings == []


def test_a_row_our_reading_cannot_build_says_how_the_others_read_it():
    with pytest.raises(ConfigError) as e:
        build("CBAM", [7])
    msg = str(e.value)
    assert "CBAM was given 7 channels" in msg and "\n" not in msg
    assert "262,754 parameters, [-1, 1, CBAM, [{form: ultralytics}]] or `dialect: ultralytics`" in msg


def test_an_unknown_dialect_lists_the_known_ones():
    with pytest.raises(ConfigError) as e:
        build("CBAM", [1024], dialect="yolov8")
    msg = str(e.value)
    for d in ("yoloair", "yoloair2", "ods", "eap", "ultralytics", "forks", "native"):
        assert f"{d}: " in msg


# -- item 4: names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, args, expected", [
    ("C3CBAM", [256], "write [from, n, C3Att, [256, CBAM]]"),
    ("ECAC3", [256, False], "write [from, n, C3Att, [256, False, ECA]]"),
    ("C3_SE", [256], "[from, n, C3Att, [256, SE]]"),
    ("ELAN_CBAM", [256], "[from, n, ELANAtt, [256, CBAM]]"),
    ("C2f_EMA", [128, True], "C2f with EMAttention fused in"),
    ("C3k2_CA", [128], "C3k2 with CoordAtt fused in"),
    ("SELayerV1", [], "[-1, 1, SE, [{form: eap}]]"),
    ("ChannelAtt", [], "[-1, 1, SE, [{form: eap}]]"),
    ("GlobalAttentionModule", [], "[-1, 1, GAM, []]"),
    ("MultiHeadSelfAttention", [], "BoTMHSA"),
])
def test_fused_blocks_and_common_spellings_answer_with_the_row_to_write(name, args, expected):
    with pytest.raises(ConfigError) as e:
        build(name, args)
    assert expected in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name, args, theirs, target", [
    ("se_block", [1024], 32_768, "SE"),  # bubbliiiing's, bias-free
    ("cbam_block", [], 65_634, "CBAM"),  # bubbliiiing's default ratio is 8
    ("Conv_CBAM", [1024, 3, 1], 2_393_186, "ConvCBAM"),
])
def test_common_names_of_the_ports_resolve(name, args, theirs, target):
    m, _ = build(name, args)
    assert count(m) == theirs and m.type == f"{name} -> {target}"


def test_a_constructors_error_on_a_width_names_the_value_and_the_row():
    with pytest.raises(ConfigError) as e:
        build("ACmix", [1024, 1024])
    msg = str(e.value)
    assert msg.startswith("wild.yaml: layer 1 (ACmix): ACmix [1024, 1024]: kernel_att=1024")
    assert "did you mean the output width?" in msg and "write [-1, 1, ACmix, []] (kernel_att 7)" in msg


def test_every_unknown_name_is_one_line_with_the_layers_that_use_it():
    d = model_dict("C2f_CBAM", [128, True])
    d["backbone"] += [[-1, 1, "C2f_CBAM", [128, True]], [-1, 1, "C3k2_DCNv4", [128]]]
    with pytest.raises(ConfigError) as e:
        parse_model(d, verbose=False)
    lines = str(e.value).splitlines()
    assert lines[0] == "wild.yaml: 3 layer names are not provided here:" and len(lines) == 3
    assert lines[1].startswith("  layers 1, 2 (C2f_CBAM): ")
