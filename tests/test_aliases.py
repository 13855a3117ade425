"""Other projects' names (YOLOAir, EAP, ODS): a row builds what its home project builds, or fails saying what to write.

Parameter counts of the source modules ("theirs") were taken by running each project's own module code in a scratch
directory outside this project, on the argument rule of its own parser (YOLOAir's ``parse_model``), at the commits

- iscyy/yoloair 29a8465385eafed8ecaacfb4318a372fe67a55eb (models/Models/Attention/*, research.py CA, CBAM,
  EffectiveSELayer, common.py ACmix),
- xmu-xiaoma666/External-Attention-pytorch d75848e40233ed56fa503c888472bab8b17c568c (EAP, model/attention/*),
- z1069614715/objectdetection_script cb1b6213eb9e8a4f2238bcbf36e831ffb84c3733 (ODS, cv-attention/*),
- DeLightCMU/PSA 20e307ad708ae6a39239aa50ffa32e0c36c92894 (semantic-segmentation/network/PSA.py: PSA_s, PSA_p),
- timm 1.x ``timm.layers.GlobalContext`` / ``EffectiveSEModule`` (ODS's GC.py and EffectiveSE.py are these), and a
  blog copy of GCNet's block named GlobalContextBlock (inplanes, ratio, pooling_type, fusion_types).

Where ours differs the difference is a named structural one (biases, norms, branch layout), never a misread argument:
the figures pin both, so a translation that reads an argument wrongly changes our count and fails.
"""

from __future__ import annotations

import logging

import pytest
import torch

from models.parse.build import parse_model
from models.dialects.names import FOREIGN, NoEquivalent
from models.dialects.resolve import closest, resolves
from models.registry import LAYERS, ConfigError, attention_specs
from models.yolo import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # many small builds: one thread, no spin-waiting on a busy CPU

C, W = 512, 0.5  # yolov5s at P5: 1024 nominal channels x width_multiple 0.5


def model_dict(name, args, c=C, width=W, dialect=None, head=()):
    d = {"nc": 80, "depth_multiple": 1.0, "width_multiple": width, "yaml_file": "air.yaml",
         "backbone": [[-1, 1, "Conv", [int(c / width), 3, 2]], [-1, 1, name, args]], "head": list(head)}
    if dialect:
        d["dialect"] = dialect
    return d


def built(name, args, meta=False, **kw):
    with torch.device("meta" if meta else "cpu"):
        layers, _ = parse_model(model_dict(name, args, **kw), verbose=False)
    return layers[1]


def count(m) -> int:
    return sum(p.numel() for p in m.parameters())


# (row name, row args, dialect, input channels, width, theirs, ours, why ours differs)
FIGURES = [
    # YOLOAir rows as its configs/attention YAMLs write them (yolov5s, P5); the ports' modules are forms here
    ("SEAttention", [1024], "yoloair", C, W, 32_768, 32_768, ""),  # SE form 'eap'
    ("SEAttention", [1024, 8], None, C, W, 65_536, 65_536, ""),  # YOLOAir and the YOLOv8 forks agree: reduction 8
    ("SEAttention", [1024], "yoloair2", C, W, 1_024, 1_024, ""),  # yoloair2 builds SEAttention(c1, c2): r = C
    ("CA", [1024], None, C, W, 25_648, 25_648, ""),
    ("CA", [1024, 16], None, C, W, 50_272, 50_272, ""),
    ("CrissCrossAttention", [1024], None, C, W, 328_321, 328_321, ""),
    ("EffectiveSELayer", [1024], None, C, W, 262_656, 262_656, ""),
    ("GAMAttention", [1024, 1024], None, C, W, 1_739_264, 1_739_264, ""),  # 1024 is YOLOAir's group flag: grouped
    ("GAMAttention", [1024], None, C, W, 1_739_264, 1_739_264, ""),  # YOLOAir's default group=True
    ("GAMAttention", [1024, False], None, C, W, 6_556_160, 6_556_160, ""),
    ("GAMAttention", [1024, True, 8], None, C, W, 469_248, 469_248, ""),
    ("NAMAttention", [1024], None, C, W, 1_024, 1_024, ""),
    ("SKAttention", [1024], None, C, W, 22_110_240, 22_110_240, ""),  # SK form 'eap': EAP's 4 dense branches
    ("SKAttention", [512], None, C, W, 22_110_240, 22_110_240, ""),  # yoloair2 passes the real width
    # YOLOAir's YOLOv7 configs: [-3, 1, CA, [128]] at width 1
    ("CA", [128], None, 128, 1.0, 3_352, 3_352, ""),
    ("SEAttention", [128], "yoloair", 128, 1.0, 2_048, 2_048, ""),
    ("SEAttention", [128], "yoloair2", 128, 1.0, 256, 256, ""),
    ("GAMAttention", [128], None, 128, 1.0, 109_184, 109_184, ""),
    ("NAMAttention", [128], None, 128, 1.0, 256, 256, ""),
    ("CrissCrossAttention", [128], None, 128, 1.0, 20_641, 20_641, ""),
    # names YOLOAir's YAMLs use without shipping the module: the code of the signature they follow
    ("GlobalContextBlock", [512, 0.25, "att", ["channel_add"]], None, C, W, 132_481, 132_481, ""),
    ("GlobalContextBlock", [512, 0.0625, "att", ["channel_add", "channel_mul"]], None, C, W, 67_265, 67_265, ""),
    ("SpatialGroupEnhance", [8], None, C, W, 16, 16, ""),
    ("PSA_s", [512, 512, False], None, C, W, 443_584, 525_824, "official PSA_s bottlenecks its channel branch"),
    ("PSA_p", [512, 512], None, C, W, 524_800, 525_824, "the paper's LayerNorm in the channel branch: + 2C"),
    # EAP / ODS names and the seed articles' classes, rows without a channel count
    ("SEAttention", [], None, C, W, 32_768, 32_768, ""),
    ("SKAttention", [], None, C, W, 22_110_240, 22_110_240, ""),
    ("CrissCrossAttention", [], None, C, W, 328_321, 328_321, ""),
    ("SpatialGroupEnhance", [], None, C, W, 16, 16, ""),
    ("EMA", [], None, C, W, 41_216, 41_216, ""),
    ("EMA", [32], None, C, W, 2_624, 2_624, ""),
    ("GAM_Attention", [], None, C, W, 6_556_160, 6_556_160, ""),
    ("EffectiveSEModule", [], None, C, W, 262_656, 262_656, ""),
    ("GlobalContext", [], None, C, W, 66_753, 66_753, ""),
    ("LSKblock", [], None, C, W, 433_350, 433_350, ""),
    ("EfficientChannelAttention", [], None, C, W, 5, 5, ""),
    ("ECAAttention", [3], None, C, W, 4, 4, ""),  # ECA form 'eap': the Conv1d's bias
    ("CBAMBlock", [16, 7], "ods", C, W, 32_867, 32_867, ""),  # CBAM form 'ods'
    ("CBAMBlock", [], "eap", C, W, 37_571, 37_571, ""),  # CBAM form 'eap': k = 49, x + CBAM(x)
    ("CBAMAttention", [1024], None, C, W, 32_867, 32_867, ""),  # the seed article's (= ODS's CBAMBlock)
    ("CAAttention", [1024], None, C, W, 49_216, 49_216, ""),  # the seed article's (= bubbliiiing's CA_Block)
    ("BAMBlock", [], None, C, W, 80_065, 77_761, "the ports' 3 hidden FC layers vs BAM's 1"),
    ("SequentialPolarizedSelfAttention", [], None, C, W, 527_105, 525_824, "EAP's conv biases: - (2.5 C + 1)"),
    ("ParallelPolarizedSelfAttention", [], None, C, W, 527_105, 525_824, "EAP's conv biases: - (2.5 C + 1)"),
    ("BiLevelRoutingAttention_nchw", [], None, C, W, 1_055_744, 1_056_768, "pre-norm LayerNorm: + 2C"),
    # our own names read as YOLOAir / ODS / the forks read them (`dialect:`)
    ("SOCA", [1024], "yoloair", C, W, 66_112, 66_112, ""),
    ("SOCA", [1024], "yoloair2", C, W, 1_537, 1_537, ""),
    ("ShuffleAttention", [1024], "yoloair", C, W, 192, 192, ""),
    ("CBAM", [1024], "yoloair", C, W, 33_411, 33_411, ""),  # CBAM form 'yoloair'
    ("CBAM", [1024], "forks", C, W, 32_866, 32_866, ""),  # CBAM form 'bubbliiiing'
    ("CBAM", [7], "ultralytics", C, W, 262_754, 262_754, ""),  # CBAM form 'ultralytics': CBAM(c1, kernel_size)
    ("SE", [1024], "forks", C, W, 32_768, 32_768, ""),
    ("ECA", [1024], "forks", C, W, 3, 3, ""),
    ("ACmix", [1024], "yoloair", C, W, 829_934, 829_934, ""),  # YOLOAir's is the official code: form official
    ("DoubleAttention", [512, 128, 128, 8], "yoloair", C, W, 263_040, 263_040, ""),
    ("ParNetAttention", [512], "yoloair", C, W, 2_887_168, 2_886_656, "EAP's conv biases (3C) vs one more BN (2C)"),
    ("ShuffleAttention", [], "ods", C, W, 192, 192, ""),
    ("DoubleAttention", [], "ods", C, W, 263_040, 263_040, ""),
    ("LSKA", [], "ods", C, W, 270_848, 270_848, ""),
    ("LSKA", [11], "ods", C, W, 272_896, 272_896, ""),
    ("CPCA", [], "ods", C, W, 450_688, 450_688, ""),
    ("TripletAttention", [], "ods", C, W, 300, 300, ""),
]


@pytest.mark.parametrize("name, args, dialect, c, width, theirs, ours, why", FIGURES,
                         ids=[f"{r[0]}{r[1]}{'-' + r[2] if r[2] else ''}@{r[3]}" for r in FIGURES])
def test_alias_builds_the_source_modules_parameter_count(name, args, dialect, c, width, theirs, ours, why):
    m = built(name, args, meta=True, c=c, width=width, dialect=dialect)
    assert count(m) == ours
    assert (ours == theirs) == (not why), f"{name}{args}: theirs {theirs:,}, ours {ours:,} ({why or 'no reason given'})"


def test_misread_arguments_of_the_issue_are_read_as_yoloair_means_them():
    gam = built("GAMAttention", [1024, 1024])  # (c2, group): grouped convs, rate 4 -- not reduction=1024
    assert count(gam) == 1_739_264 and gam.spatial[0].groups == 4
    gcb = built("GlobalContextBlock", [512, 0.25, "att", ["channel_add"]])  # ratio 1/4 -> reduction 4, no expansion
    assert count(gcb) == 132_481  # hidden 128; read as a 4x expansion (reduction 0.25) it would be 2048 wide
    assert built("SpatialGroupEnhance", [8]).groups == 8
    assert built("CA", [1024]).type == "CA -> CoordAtt"


def test_built_alias_is_named_in_the_layer_table_with_its_translation():
    from ultralytics.utils import LOGGER

    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    LOGGER.addHandler(handler)
    try:
        parse_model(model_dict("SEAttention", [1024, 8]), verbose=True)
        parse_model(model_dict("BAMBlock", []), verbose=False)
    finally:
        LOGGER.removeHandler(handler)
    text = "\n".join(records)
    assert "SEAttention -> SE" in text
    assert "[-1, 1, SE, [{reduction: 8, form: eap}]]" in text
    # a structural difference left is a warning, printed with or without the table
    assert "air.yaml: layer 1 (BAMBlock): BAMBlock [] is built as EAP/ODS's ([-1, 1, BAM, [{dilation: 2, " \
           "num_dilated: 3, min_channels: 1}]]); it differs from EAP/ODS's: the ports' channel branch" in text


# -- the channel count: nominal where YOLOAir scales it, real where YOLOAir passes it as written -----------------------


def test_yoloair_nominal_channel_count_must_scale_to_the_input_width():
    """[-1, 1, GAMAttention, [512]] after a 512-channel layer at width 0.5: YOLOAir scales 512 to 256 and records 256
    output channels for a 512-channel output (its next layer is then built for 256): an error here, never a
    hyperparameter of 512."""
    with pytest.raises(ConfigError) as e:
        built("GAMAttention", [512])
    msg = str(e.value)
    assert "layer 1 (GAMAttention)" in msg and "512 channels, which width_multiple 0.5 scales to 256" in msg
    assert "write 1024" in msg and "[-1, 1, GAM, []]" in msg
    assert count(built("GAMAttention", [512], width=1.0)) == 1_739_264  # at width 1 nominal and real agree


def test_yoloair_real_channel_count_must_equal_the_input_width():
    with pytest.raises(ConfigError, match=r"passes the first argument 1024 to the module as written.*has 512 channels "
                                          r"\(write 512; 1024 is its width before width_multiple 0.5\)"):
        built("GlobalContextBlock", [1024, 0.25, "att", ["channel_add"]])
    with pytest.raises(ConfigError, match=r"write 512"):
        built("PSA_s", [1024, 1024])


# -- rows that cannot be read unambiguously ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, args, expected", [
    # GCNet's ContextBlock defaults to channel_add, blog copies of GlobalContextBlock to channel_mul
    ("GlobalContextBlock", [512, 0.25], [
        "means different modules", "132,481 parameters, [-1, 1, GCBlock, [{reduction: 4, min_channels: 1}]];",
        "[-1, 1, GCBlock, [{reduction: 4, fusion: mul, min_channels: 1}]]. Write the row you mean"]),
    # EAP's CBAMBlock has a 49x49 spatial kernel and adds its input back, ODS's a 7x7 one
    ("CBAMBlock", [], ["means different modules", "37,571 parameters, [-1, 1, CBAM, [{form: eap}]] or `dialect: eap`",
                        "32,867 parameters, [-1, 1, CBAM, [{form: ods}]] or `dialect: ods`"]),
    # YOLOAir reads the width as SEAttention's channel count (reduction 16), yoloair2 also as its reduction
    ("SEAttention", [1024], ["means different modules", "32,768 parameters, [-1, 1, SE, [{form: eap}]] or "
                             "`dialect: yoloair`", "1,024 parameters, [-1, 1, SE, [{reduction: 512, form: eap}]] or "
                             "`dialect: yoloair2`"]),
    # YOLOAir's own GlobalContextBlock row: pooling_type 2 is no pooling GCNet knows
    ("GlobalContextBlock", [512, 0.25, 2, 16], ["cannot be read", "pooling_type=2", "[-1, 1, GCBlock, []]"]),
    # YOLOAir's SpatialGroupEnhance row: EAP's and ODS's SGE take one argument
    ("SpatialGroupEnhance", [8, 0.5], ["cannot be read", "takes 1 argument(s) here (groups), the row gives 2"]),
    ("GAMAttention", [1024, "yes"], ["group must be true or false"]),
    ("SKAttention", [1024, [3, 6]], ["kernels must be a list of odd kernel sizes"]),
    ("EMA", [7], ["factor 7", "divisible by 7"]),
    ("GlobalContextBlock", [512, 0.3, "att", ["channel_add"]], ["ratio 0.3", "no integer reduction"]),
])
def test_ambiguous_or_unreadable_rows_fail_with_the_row_in_our_form(name, args, expected):
    with pytest.raises(ConfigError) as e:
        built(name, args)
    assert f"air.yaml: layer 1 ({name})" in str(e.value)
    for text in expected:
        assert text in str(e.value)


def test_own_name_with_foreign_arguments_fails_with_how_other_projects_read_it():
    with pytest.raises(ConfigError) as e:  # YOLOAir's TripletAttention [2]: no_spatial (EAP), gate_channels (official)
        built("TripletAttention", [2])
    msg = str(e.value)
    assert "write 1024" in msg and "Other projects read it: " in msg
    assert "200 parameters, [-1, 1, TripletAttention, [{no_spatial: True}]] or `dialect: yoloair`" in msg
    assert "300 parameters, [-1, 1, TripletAttention, []] or `dialect: yoloair`" in msg
    with pytest.raises(ConfigError, match="YOLOAir's code has no DANet module"):
        built("DANet", [512, 512, False])
    with pytest.raises(ConfigError, match=r"263,040 parameters, \[-1, 1, DoubleAttention, \[\{c_m: 128\}\]\] or `dialect: yoloair`"):
        built("DoubleAttention", [512, 128, 128, 8])


def test_dialect_reads_our_own_names_as_the_home_project_does():
    assert count(built("SOCA", [1024])) == 33_312  # ours: reduction 16
    soca = built("SOCA", [1024], dialect="yoloair")  # YOLOAir's SOCA: reduction 8
    assert count(soca) == 66_112 and soca.type == "SOCA (YOLOAir)"
    assert count(built("ShuffleAttention", [1024])) == 24 and count(built("ShuffleAttention", [], dialect="ods")) == 192
    assert built("SimAM", [1024], dialect="yoloair").e_lambda == 512  # YOLOAir's parser: the width as e_lambda
    assert count(built("CBAM", [1024], dialect="ods")) == 33_412  # no ODS reading of CBAM: ours
    with pytest.raises(ConfigError, match="dialect must be one of yoloair, yoloair2, ods, eap, ultralytics, forks, "
                                          "native .*, got 'YOLOv5'. yoloair: YOLOAir"):
        built("SOCA", [1024], dialect="YOLOv5")


# -- unknown names ---------------------------------------------------------------------------------------------------


def test_known_modules_of_other_projects_are_not_provided_rather_than_typos():
    with pytest.raises(ConfigError) as e:
        built("AxialImageTransformer", [512, 2, False])
    msg = str(e.value)
    assert "'AxialImageTransformer' is a known module from YOLOAir/EAP" in msg and "not provided here" in msg
    assert "closest here: CrissCross" in msg and "Did you mean" not in msg
    with pytest.raises(ConfigError, match="'Stem' is a known module from YOLOv7/YOLOAir"):
        built("Stem", [])


def test_names_listed_as_not_provided_are_not_registered():
    """The lists of other projects' modules this project lacks stay true as layers are added (ReOrg, DownC, ...)."""
    from models.dialects import known as aliases

    listed = aliases.YOLOAIR_NOT_PROVIDED + aliases.YOLOV7_NOT_PROVIDED + [n for n, *_ in aliases._ATTENTION_NOT_PROVIDED]
    assert [n for n in listed if n in LAYERS] == []


def test_every_unknown_name_of_a_yaml_is_reported_at_once_with_at_most_five_suggestions():
    d = model_dict("SEAttenton", [1024])
    d["backbone"] += [[-1, 1, "CBAMM", []], [-1, 1, "BoT3", [1024]], [-1, 1, "GAMAttention", [1024]]]
    with pytest.raises(ConfigError) as e:
        parse_model(d, verbose=False)
    lines = str(e.value).splitlines()
    assert lines[0] == "air.yaml: 3 layer names are not provided here:"
    assert lines[1].startswith("  layer 1 (SEAttenton): unknown layer 'SEAttenton'. Did you mean: SEAttention (= SE)")
    assert lines[2].startswith("  layer 2 (CBAMM): unknown layer 'CBAMM'. Did you mean: CBAM")
    assert "layer 3 (BoT3): 'BoT3' is a known module from YOLOAir" in lines[3]
    for line in lines[1:3]:
        assert line.split("Did you mean: ")[1].split("?")[0].count(",") <= 4


@pytest.mark.parametrize("typo, first", [("cbam", "CBAM"), ("CoordAttention", "CoordAtt"),
                                         ("SEattention", "SEAttention"), ("GAM_attention", "GAM_Attention")])
def test_closest_names_are_case_insensitive_and_include_aliases(typo, first):
    assert closest(typo)[0] == first


def test_registry_get_of_an_alias_names_the_module_to_write():
    with pytest.raises(KeyError, match=r"'SEAttention' is another project's name for SE \(YOLOAir, .*\); write SE here"):
        LAYERS.get("SEAttention")


# -- the table itself ------------------------------------------------------------------------------------------------


def test_aliases_name_registered_attention_modules_and_never_shadow_ours():
    attention = {s.name for s in attention_specs()}
    for a in FOREIGN.aliases():
        assert a.target in attention, a
        assert a.name not in LAYERS, f"{a.name} is registered: the alias would never apply"
        assert a.readings
    for name in ("SOCA", "CBAM", "TripletAttention"):
        assert FOREIGN.readings_of(name) and name in attention
    assert not [k.name for k in FOREIGN.known_modules(LAYERS.names()) if k.name in LAYERS or resolves(k.name)]


def test_yoloair_format_yaml_file_builds_and_runs(tmp_path):
    """A whole yolov5s written in YOLOAir's format (depth/width multiples, anchors, Detect [nc, anchors]) with its
    SEAttention row before the P5 output: the anchor-based yolov5s (7,235,389) plus EAP's SEAttention on 512 channels
    (SE form 'eap'). Without `dialect:` the row is refused: yoloair2 reads [1024] as its reduction too."""
    text = """# a yolov5s in YOLOAir's format, attention before the P5 output
nc: 80
dialect: yoloair
depth_multiple: 0.33
width_multiple: 0.50
anchors:
  - [10,13, 16,30, 33,23]
  - [30,61, 62,45, 59,119]
  - [116,90, 156,198, 373,326]
backbone:
  [[-1, 1, Conv, [64, 6, 2, 2]],
   [-1, 1, Conv, [128, 3, 2]],
   [-1, 3, C3, [128]],
   [-1, 1, Conv, [256, 3, 2]],
   [-1, 6, C3, [256]],
   [-1, 1, Conv, [512, 3, 2]],
   [-1, 9, C3, [512]],
   [-1, 1, Conv, [1024, 3, 2]],
   [-1, 3, C3, [1024]],
   [-1, 1, SPPF, [1024, 5]],
  ]
head:
  [[-1, 1, Conv, [512, 1, 1]],
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 6], 1, Concat, [1]],
   [-1, 3, C3, [512, False]],
   [-1, 1, Conv, [256, 1, 1]],
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 4], 1, Concat, [1]],
   [-1, 3, C3, [256, False]],
   [-1, 1, Conv, [256, 3, 2]],
   [[-1, 14], 1, Concat, [1]],
   [-1, 3, C3, [512, False]],
   [-1, 1, Conv, [512, 3, 2]],
   [[-1, 10], 1, Concat, [1]],
   [-1, 3, C3, [1024, False]],
   [-1, 1, SEAttention, [1024]],
   [[17, 20, 24], 1, Detect, [nc, anchors]],
  ]
"""
    m = build_model(_write(tmp_path, "yolov5s_se_air.yaml", text))
    assert sum(p.numel() for p in m.parameters()) == 7_235_389 + 32_768
    assert m.model[24].type == "SEAttention -> SE" and type(m.model[24]).__name__ == "SE"
    out = m.eval()(torch.zeros(1, 3, 64, 64))
    y = out[0] if isinstance(out, (list, tuple)) else out
    assert y.shape[0] == 1 and torch.isfinite(y).all()
    bad = text.replace("[-1, 1, SEAttention, [1024]]", "[-1, 1, SEAttention, [512]]").replace(
        "[-1, 1, Conv, [512, 1, 1]]", "[-1, 1, Conv5, [512, 1, 1]]")
    with pytest.raises(ConfigError, match=r"yolov5s_bad\.yaml: layer 10 \(Conv5\): unknown layer 'Conv5'\. Did "
                                          r"you mean: Conv"):
        build_model(_write(tmp_path, "yolov5s_bad.yaml", bad))  # names are checked before any row is read


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_every_readings_documented_example_builds_its_target():
    from models.registry import RowContext

    ctx = RowContext([C], {}, W, float("inf"), "<example>")
    readings = [(a.name, a.target, r) for a in FOREIGN.aliases() for r in a.readings]
    readings += [(s.name, s.name, r) for s in attention_specs() for r in FOREIGN.readings_of(s.name)]
    assert len(readings) > 60
    mentions = []
    for name, target, r in readings:
        try:
            kwargs = r.translate(list(r.example), ctx).kwargs
        except NoEquivalent as e:  # a module with no equivalent here: the reading says what it is
            mentions.append(name)
            assert "here" in str(e), (name, r.source)
            continue
        with torch.device("meta"):
            m = LAYERS.get(target).cls(C, **kwargs)
        assert count(m) > 0 or target == "SimAM", (name, r.source)
    assert sorted(mentions) == ["BiLevelRoutingAttention", "CBAM", "DANet", "GAMAttention"]


def test_alias_docs_are_up_to_date():
    from tools import gen_aliases

    assert gen_aliases.main(["--check"]) == 0, "docs/aliases.md is out of date: run python tools/gen_aliases.py"
