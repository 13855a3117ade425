"""Rows with this project's own names as other projects read them.

A reading here applies to a row of one of our names when the model YAML's ``dialect:`` selects it. Without
``dialect:`` the row is read this project's way, and these readings are what the build compares it with
(:mod:`models.dialects.rivals`): a reading that builds something else is named in a warning, one that reads a
written value as another hyperparameter refuses the row, and where our reading fails they say how the row is meant.
"""

from __future__ import annotations

from models.dialects.aliases import _cbam_form, _double, _gam, _lska, _se_eap, _shuffle, _triplet
from models.dialects.names import FOREIGN, NoEquivalent, Reading
from models.dialects.readings import (FORKS, ODS, REQUIRED, ULTRA, YOLOAIR, YOLOAIR2, ToOurs, Values,
                                      _exact_reduction, _int, _only, reading)
from models.registry import ConfigError, RowContext


def yoloair(params: tuple = (), to_ours: ToOurs | None = None, channel: str | None = "nominal",
            dialect: str = "yoloair/yoloair2", **kw) -> Reading:
    """YOLOAir's reading of a row with one of our own names (both generations unless ``dialect`` says)."""
    source = YOLOAIR if dialect == "yoloair" else f"{YOLOAIR}/{YOLOAIR2}"
    return reading(source, params, to_ours, channel=channel, dialect=dialect, **kw)


def _width(key: str, **extra):
    """yoloair2 and the forks' Module(c1, c2): the layer's width (checked equal to the input's) lands in ``key``."""
    return lambda v, ctx: {key: ctx.c_from[0], **extra}


def _yoloair_danet(v: Values, ctx: RowContext) -> dict:
    raise NoEquivalent("YOLOAir's code has no DANet module (its YAML's arguments match no DANet signature); DANet here "
                      "takes its channels from the input")


def _yoloair_acmix(v: Values, ctx: RowContext) -> dict:
    _only(v, "stride", (1,), "the block keeps the map size")
    _only(v, "dilation", (1,), "ACmix here has no dilation")
    # YOLOAir's ACmix is the official code (dep_conv without bias, reflection padding): our official form
    return {"kernel_att": v["kernel_att"], "num_heads": v["head"], "kernel_conv": v["kernel_conv"], "form": "official"}


def _conv_cbam(v: Values, ctx: RowContext) -> dict:
    raise NoEquivalent("ktwu77's Yolov7-CBAM-V1 lists its CBAM(c1, c2, k, s) with the convolutions: a k x k "
                       "convolution to the width, BN, Hardswish, then a bias-free CBAM; here that block is ConvCBAM "
                       "(write ConvCBAM with the same arguments)")


def _bra_forks(v: Values, ctx: RowContext) -> dict:
    c = ctx.c_from[0]
    raise NoEquivalent(f"BiFormer's operator alone, with a 3x3 local-context conv and no pre-norm or residual "
                       f"({18 * c:,} parameters fewer than here at C = {c}); no form here drops the pre-norm "
                       f"([{{side_dwconv: 3}}] leaves its {2 * c:,})")


def _yoloair_s2(v: Values, ctx: RowContext) -> dict:
    c = ctx.c_from[0]
    if c != 512:
        raise NoEquivalent(f"YOLOAir's S2Attention (EAP's) fixes its split attention to 512 channels: at C = {c} its "
                           "own code fails; this project's S2Attention takes any width")
    return {}


# ----------------------------------------------------------------------------------------------------------------------
# CBAM, SE, ECA: the ports' modules under our names

FOREIGN.alias(
    "CBAM", "CBAM",
    yoloair((), lambda v, ctx: {"reduction": _exact_reduction(ctx, 16), "form": "yoloair"},
            convention="[c2 (x width_multiple)] (YOLOAir's CBAM(c1, c2): r = 16 and k = 7 fixed)"),
    reading(f"{FORKS} (bubbliiiing's CBAM)", (("ratio", 16), ("kernel_size", 7)), _cbam_form("bubbliiiing", "ratio"),
            channel="nominal", dialect="forks"),
    reading(f"ultralytics, {ULTRA}", (("kernel_size", 7),), lambda v, ctx: {
        "kernel_size": _int(v["kernel_size"], "kernel_size"), "form": "ultralytics"}, channel="optional",
        dialect="ultralytics"),
    reading(f"{FORKS} (conv + CBAM)", (("k", REQUIRED), ("s", 1), ("p", None), ("g", 1), ("act", True)), _conv_cbam,
            channel="nominal", example=(3,)),
)
FOREIGN.alias(
    "SE", "SE",
    reading(f"{FORKS} (SE(c1, c2, ratio), bias-free)", (("ratio", 16),), lambda v, ctx: _se_eap(v, ctx, "ratio"),
            channel="nominal", dialect="forks"),
    reading(f"{ULTRA} (SE(c1, ratio), bias-free)", (("ratio", 16),), lambda v, ctx: _se_eap(v, ctx, "ratio"),
            channel="optional", dialect="ultralytics"),
)
FOREIGN.alias(
    "ECA", "ECA",
    reading(f"{FORKS} (ECA(c1, c2, k_size=3))", (("k_size", 3),), lambda v, ctx: {
        "kernel_size": _int(v["k_size"], "k_size")}, channel="nominal", dialect="forks"),
    reading(f"{ULTRA} (ECA(c1, k_size=3))", (("k_size", 3),), lambda v, ctx: {
        "kernel_size": _int(v["k_size"], "k_size")}, channel="optional", dialect="ultralytics"),
)
FOREIGN.alias(
    "CoordAtt", "CoordAtt",  # the other forks' CoordAtt is the official one (ours): nothing to say about them
    reading(f"a {ULTRA[:-1]}'s CoordAtt(inp, reduction=8), mip = max(32, C // 8)", (("reduction", 8),),
            lambda v, ctx: {"reduction": _int(v["reduction"], "reduction"), "min_channels": 32}, channel="optional",
            convention="[(width, optional), reduction=8] (beiweidedagongren/pedestrian-detection)"),
)
FOREIGN.alias(
    "GAM", "GAM",
    reading(f"{ULTRA} (GAM(c1, rate=4))", (("rate", 4),), _gam, channel="optional", dialect="ultralytics"),
)
FOREIGN.alias(
    "BiLevelRoutingAttention", "BiLevelRoutingAttention",
    reading(f"{FORKS}, {ULTRA} (BiFormer's operator)", (("n_win", 7), ("num_heads", 8)), _bra_forks,
            channel="optional"),
)

# ----------------------------------------------------------------------------------------------------------------------
# YOLOAir's rows (both generations, unless said), and the forks'

FOREIGN.alias("SOCA", "SOCA",
              yoloair((("reduction", 8),), lambda v, ctx: {"reduction": _exact_reduction(ctx, v["reduction"]),
                                                           "form": "official"}, dialect="yoloair"),
              reading(YOLOAIR2, (), _width("reduction", form="official"), channel="nominal", dialect="yoloair2",
                      takes_width=True, convention="[c2 (x width_multiple; also its reduction)]"))
FOREIGN.alias("ShuffleAttention", "ShuffleAttention", yoloair((("reduction", 16), ("G", 8)), _shuffle))
FOREIGN.alias("S2Attention", "S2Attention", yoloair((), _yoloair_s2))
FOREIGN.alias("ACmix", "ACmix", yoloair(
    (("kernel_att", 7), ("head", 4), ("kernel_conv", 3), ("stride", 1), ("dilation", 1)), _yoloair_acmix,
    dialect="yoloair/yoloair2/forks"))
FOREIGN.alias("SimAM", "SimAM", reading(f"{YOLOAIR}, {YOLOAIR2}, {FORKS}", (), _width("e_lambda"), channel="nominal",
                                        dialect="yoloair/yoloair2/forks", takes_width=True,
                                        convention="[c2 (x width_multiple; its parser puts it into e_lambda)]"))
FOREIGN.alias("DANet", "DANet", yoloair((("planes", REQUIRED), ("flag", False)), _yoloair_danet, channel="real",
                                       example=(512, False), convention="[?] (no module in YOLOAir's code)"))
FOREIGN.alias("DoubleAttention", "DoubleAttention", yoloair(
    (("c_m", REQUIRED), ("c_n", REQUIRED), ("reconstruct", True)), _double, channel="real", example=(128, 128),
    convention="[c (the input channels, unscaled), c_m, c_n, reconstruct=True] (EAP's signature)"))
FOREIGN.alias("ParNetAttention", "ParNetAttention", yoloair(
    (), channel="real", convention="[c (the input channels, unscaled)] (EAP's signature)"))
FOREIGN.alias(
    "TripletAttention", "TripletAttention",
    yoloair((("no_spatial", False),), _triplet, channel=None, convention="[no_spatial=False] (EAP's signature)"),
    yoloair((("gate_channels", REQUIRED), ("reduction_ratio", 16), ("pool_types", ("avg", "max")),
             ("no_spatial", False)), _triplet, channel=None, example=(2,),
            convention="[gate_channels, reduction_ratio=16, pool_types=['avg', 'max'], no_spatial=False] (the "
            "official code's first signature; gate_channels unused)"),
    reading(f"{ULTRA} (EAP's TripletAttention(no_spatial))", (), lambda v, ctx: {"no_spatial": True},
            dialect="ultralytics", takes_width=True,
            convention="[] (the parser passes C as EAP's no_spatial: true, the spatial branch dropped)"),
)

# ----------------------------------------------------------------------------------------------------------------------
# ODS's rows (the module's own arguments), and the YOLOv8 forks' (the same, a leading width dropped)

for name, params, to_ours in (
    ("ShuffleAttention", (("reduction", 16), ("G", 8)), _shuffle),
    ("DoubleAttention", (("c_m", 128), ("c_n", 128), ("reconstruct", True)), _double),
    ("LSKA", (("k_size", 7),), _lska),
    ("TripletAttention", (("no_spatial", False),), _triplet),
    ("CPCA", (("channelAttention_reduce", 4),), lambda v, ctx: {
        "reduction": _exact_reduction(ctx, v["channelAttention_reduce"], "channelAttention_reduce"),
        "min_channels": 1}),
    ("SimAM", (("e_lambda", 1e-4),), lambda v, ctx: {"e_lambda": v["e_lambda"]}),
):
    FOREIGN.alias(name, name, reading(ODS, params, to_ours, dialect="ods"))
    if name != "TripletAttention":  # the forks inject C into EAP's TripletAttention (above)
        FOREIGN.alias(name, name, reading(ULTRA, params, to_ours, channel="optional", dialect="ultralytics"))
