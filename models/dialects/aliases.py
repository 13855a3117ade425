"""The names other projects give our attention modules, with each project's reading of their rows.

Each :meth:`~models.dialects.names.ForeignNames.alias` call names a foreign module, the registered module it means and
one reading per project that uses the name (its ``dialect:`` value selects it); a reading translates the row into our
module, its ``form`` included where the source's module is one of our forms. The notes say where the source's module
still differs from ours in structure: they are printed as a warning when the row is built. Nothing here imports a
module class: the targets are registered names.
"""

from __future__ import annotations

from models.dialects.names import FOREIGN, NoEquivalent
from models.dialects.readings import (ARTICLE, EAP, FORKS, ODS, REQUIRED, ULTRA, YOLOAIR, YOLOAIR2, Values, _divides,
                                      _exact_reduction, _flag, _int, _only, _ratio, reading)
from models.registry import ConfigError, RowContext


def _se_eap(v: Values, ctx: RowContext, key: str = "reduction") -> dict:
    """EAP's SEAttention (bias-free Linear layers, hidden exactly C // r): SE's form 'eap'."""
    return {"reduction": _exact_reduction(ctx, v[key], key), "form": "eap"}


def _width_as_reduction(ctx: RowContext, form: str) -> dict:
    """yoloair2's Module(c1, c2): the layer's width (checked equal to the input's) lands in ``reduction``."""
    return {"reduction": ctx.c_from[0], "form": form}


def _gam(v: Values, ctx: RowContext, form: str = "paper") -> dict:
    rate = _int(v["rate"], "rate")
    grouped = _flag(v["group"], "group", v) if "group" in v else False
    c = ctx.c_from[0]
    if grouped and (c % rate or (c // rate) % rate):
        raise ConfigError(f"grouped GAMAttention (group true) needs C and C/rate divisible by rate: C={c}, rate={rate}")
    if c // rate < 1:
        raise ConfigError(f"rate {rate} leaves no hidden channels at C={c}")
    if form == "yoloair" and c % 4:
        raise ConfigError(f"YOLOAir's GAMAttention shuffles its spatial gate in 4 groups: C={c} is not divisible by 4")
    return {"reduction": rate, "groups": rate if grouped else 1, "min_channels": 1,
            **({"form": form} if form != "paper" else {})}


def _gam_yoloair(v: Values, ctx: RowContext) -> dict:
    return _gam(v, ctx, "yoloair")


def _sk(v: Values, ctx: RowContext) -> dict:
    """EAP's SKAttention: SK's form 'eap' (dense biased branches of the given kernels, no ReLU on z)."""
    kernels = v["kernels"]
    if isinstance(kernels, (str, bytes)) or not isinstance(kernels, (list, tuple)) or not kernels or any(
            not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 == 0 for k in kernels):
        raise ConfigError(f"kernels must be a list of odd kernel sizes, got {kernels!r}")
    group = _int(v["group"], "group")
    if ctx.c_from[0] % group:
        raise ConfigError(f"group {group}: the source's convolutions need C ({ctx.c_from[0]}) divisible by it")
    return {"kernels": tuple(kernels), "groups": group, "reduction": _int(v["reduction"], "reduction"),
            "min_channels": _int(v["L"], "L"), "form": "eap"}


def _gcnet(v: Values, ctx: RowContext) -> dict:
    _only(v, "pooling_type", ("att", "avg"), "GCNet's block pools by 'att' or 'avg'")
    fusion = v["fusion_types"]
    kinds = {"channel_add", "channel_mul"}
    if isinstance(fusion, str) or not isinstance(fusion, (list, tuple)) or not fusion or not set(fusion) <= kinds:
        raise ConfigError(f"fusion_types must be a non-empty list of 'channel_add' / 'channel_mul', got {fusion!r}")
    return {"reduction": _ratio(ctx, v["ratio"]), "pooling": v["pooling_type"],
            "fusion": "both" if len(set(fusion)) == 2 else {"channel_add": "add", "channel_mul": "mul"}[fusion[0]],
            "min_channels": 1}


def _timm_gc(v: Values, ctx: RowContext) -> dict:
    for key, default in (("act_layer", "relu"), ("gate_layer", "sigmoid"), ("rd_divisor", 1)):
        _only(v, key, (default,), f"GCBlock uses {key} {default!r}")
    if not (v["fuse_add"] or v["fuse_scale"]):
        raise ConfigError("fuse_add and fuse_scale are both false: the block would do nothing")
    reduction = _ratio(ctx, v["rd_ratio"], "rd_ratio")
    if v["rd_channels"] is not None and v["rd_channels"] != ctx.c_from[0] // reduction:
        raise ConfigError(f"rd_channels {v['rd_channels']!r}: give the hidden width as rd_ratio (1/r) instead")
    if v["init_last_zero"] and not v["fuse_add"]:
        v.notes.append("init_last_zero: GCBlock zero-initialises the additive branch only")
    return {"reduction": reduction, "pooling": "att" if _flag(v["use_attn"], "use_attn", v) else "avg",
            "fusion": "both" if v["fuse_add"] and v["fuse_scale"] else "add" if v["fuse_add"] else "mul",
            "min_channels": 1}


def _psa(v: Values, ctx: RowContext) -> dict:
    if v["planes"] != ctx.c_from[0]:
        raise ConfigError(f"planes {v['planes']!r} must equal the input channels {ctx.c_from[0]} (PSA multiplies its "
                          "input by a planes-channel mask)")
    _only(v, "stride", (1,), "the block must keep the map size")
    if v["kernel_size"] != 1:
        v.notes.append(f"kernel_size {v['kernel_size']!r} is ignored, as in the official PSA (its convs are 1x1)")
    return {}


def _triplet(v: Values, ctx: RowContext) -> dict:
    return {"no_spatial": _flag(v["no_spatial"], "no_spatial", v)}


def _double(v: Values, ctx: RowContext) -> dict:
    c_m, c_n = _int(v["c_m"], "c_m"), _int(v["c_n"], "c_n")
    if not _flag(v["reconstruct"], "reconstruct", v) and c_m != ctx.c_from[0]:
        raise ConfigError(f"reconstruct false outputs c_m={c_m} channels, not the input's {ctx.c_from[0]}: "
                          "not shape-preserving")
    return {"c_m": c_m, "c_n": c_n}


def _shuffle(v: Values, ctx: RowContext) -> dict:
    return {"groups": _divides(ctx, v["G"], "G", times=2)}


def _ese(v: Values) -> dict:
    _only(v, "gate_layer", ("hard_sigmoid",), "EffectiveSE's gate is the hard sigmoid")
    return {"add_maxpool": _flag(v["add_maxpool"], "add_maxpool", v)}


def _bra(v: Values) -> dict:
    _only(v, "qk_scale", (None,), "the scale is head_dim^-0.5 here")
    return {key: _int(v[key], key) for key in ("num_heads", "n_win", "topk", "side_dwconv")}


def _lska(v: Values, ctx: RowContext) -> dict:
    _only(v, "k_size", (7, 11, 23, 35, 41, 53), "ODS's LSKA defines kernels 7, 11, 23, 35, 41, 53 only")
    return {"kernel_size": v["k_size"], "wrapped": False}


# ----------------------------------------------------------------------------------------------------------------------
# The aliases. Notes say where the source's module differs from ours in structure (arguments are translated exactly).

FOREIGN.alias(
    "SEAttention", "SE",
    reading(f"{YOLOAIR}, {FORKS}", (("reduction", 16),), _se_eap, channel="nominal", dialect="yoloair/forks"),
    reading(YOLOAIR2, (), lambda v, ctx: _width_as_reduction(ctx, "eap"), channel="nominal", dialect="yoloair2",
            takes_width=True, convention="[c2 (x width_multiple; also its reduction)]"),
    reading(f"{EAP}, {ODS}, {ARTICLE}", (("reduction", 16),), _se_eap, dialect="ods/eap"),
    reading(ULTRA, (("reduction", 16),), _se_eap, channel="optional", dialect="ultralytics"),
)
_CA = (("reduction", 32),)
FOREIGN.alias(
    "CA", "CoordAtt",
    reading(f"{YOLOAIR}/{YOLOAIR2}", _CA, lambda v, ctx: {"reduction": _int(v["reduction"], "reduction")},
            channel="nominal", dialect="yoloair/yoloair2/forks"),
    reading(ULTRA, _CA, lambda v, ctx: {"reduction": _int(v["reduction"], "reduction")}, channel="optional",
            dialect="ultralytics"),
)
FOREIGN.alias(
    "CABlock", "CoordAtt",
    reading(FORKS, _CA, lambda v, ctx: {"reduction": _int(v["reduction"], "reduction")}, channel="nominal",
            dialect="forks", convention="[c2 (x width_multiple), reduction=32] (CABlock(c1, c2, reduction))"),
)
_CA_BLOCK = (("reduction", 16),)
for _name, _source in (("CAAttention", ARTICLE), ("CA_Block", "bubbliiiing")):
    FOREIGN.alias(
        _name, "CoordAtt",
        reading(f"{_source} (as a YOLOv5 fork lists it)", _CA_BLOCK, lambda v, ctx: {
            "reduction": _exact_reduction(ctx, v["reduction"]), "form": "bubbliiiing"}, channel="nominal",
            dialect="forks"),
        reading(_source, _CA_BLOCK, lambda v, ctx: {"reduction": _exact_reduction(ctx, v["reduction"]),
                                                     "form": "bubbliiiing"}, dialect="ods/eap/ultralytics"),
    )
FOREIGN.alias(
    "CrissCrossAttention", "CrissCross",
    reading(f"{YOLOAIR}/{YOLOAIR2}", (), lambda v, ctx: {"recurrence": 1}, channel="nominal",
            dialect="yoloair/yoloair2/ultralytics/forks"),
    reading(EAP, (), lambda v, ctx: {"recurrence": 1}, dialect="eap/ods"),
)
FOREIGN.alias(
    "EffectiveSELayer", "EffectiveSE",
    reading(f"{YOLOAIR}/{YOLOAIR2}", (), channel="nominal", dialect="yoloair/yoloair2",
            convention="[c2 (x width_multiple)] (YOLOAir passes c2 into the module's unused act argument)"),
)
FOREIGN.alias(
    "EffectiveSEModule", "EffectiveSE",
    reading(f"{ODS}/timm", (("add_maxpool", False), ("gate_layer", "hard_sigmoid")),
            lambda v, ctx: _ese(v), dialect="ods"),
)


def _article_gam(v: Values, ctx: RowContext) -> dict:
    c = ctx.c_from[0]
    raise NoEquivalent(f"the {ARTICLE}'s one-argument GAMAttention(in_channels) is not GAM: it returns "
                       f"sigmoid(BN(conv1x1(avgpool x)))^2, shape (B, C, 1, 1), dropping the feature map "
                       f"({c * c + 3 * c:,} parameters at C = {c}); no module here builds it")


FOREIGN.alias(
    "GAMAttention", "GAM",
    reading(f"{YOLOAIR}/{YOLOAIR2}", (("group", True), ("rate", 4)), _gam_yoloair, channel="nominal",
            dialect="yoloair/yoloair2/forks"),
    reading(ARTICLE, (), _article_gam, channel="nominal"),
)
FOREIGN.alias(
    "GAM_Attention", "GAM",
    reading(ODS, (("rate", 4),), _gam, dialect="ods/ultralytics"),
    reading(f"{FORKS} (YOLOAir's class under ODS's name)", (("group", True), ("rate", 4)), _gam_yoloair,
            channel="nominal", dialect="forks"),
)
FOREIGN.alias(
    "NAMAttention", "NAM",
    reading(f"{YOLOAIR}/{YOLOAIR2}", (("no_spatial", True),),
            lambda v, ctx: (v.notes.append("no_spatial false is ignored, as by YOLOAir's NAMAttention (channel "
                                           "branch only)") if not v["no_spatial"] else None) or {},
            channel="nominal", dialect="yoloair/yoloair2/forks"),
)
_SK = (("kernels", (1, 3, 5, 7)), ("reduction", 16), ("group", 1), ("L", 32))
FOREIGN.alias(
    "SKAttention", "SK",
    reading(YOLOAIR, _SK, _sk, channel="nominal", dialect="yoloair"),
    reading(YOLOAIR2, _SK, _sk, channel="real", dialect="yoloair2"),
    reading(f"{EAP}/{ODS}", _SK, _sk, dialect="eap/ods"),
    reading(ULTRA, _SK, _sk, channel="optional", dialect="ultralytics"),
)
_GC = (("ratio", REQUIRED), ("pooling_type", "att"))
FOREIGN.alias(
    "GlobalContextBlock", "GCBlock",
    reading("GCNet", (*_GC, ("fusion_types", ("channel_add",))), _gcnet, channel="real", example=(0.25,)),
    reading("blog copies", (*_GC, ("fusion_types", ("channel_mul",))), _gcnet, channel="real", example=(0.25,)),
    note="GCBlock zero-initialises the last conv of its transforms, as GCNet's code does (blog copies keep "
    "PyTorch's default init)",
)
FOREIGN.alias(
    "ContextBlock", "GCBlock",
    reading("GCNet", (*_GC, ("fusion_types", ("channel_add",))), _gcnet, channel="real", example=(0.25,)),
    reading("blog copies", (*_GC, ("fusion_types", ("channel_mul",))), _gcnet, channel="real", example=(0.25,)),
)
FOREIGN.alias(
    "GlobalContext", "GCBlock",
    reading(f"{ODS}/timm", (("use_attn", True), ("fuse_add", False), ("fuse_scale", True), ("init_last_zero", False),
                            ("rd_ratio", 1 / 8), ("rd_channels", None), ("rd_divisor", 1), ("act_layer", "relu"),
                            ("gate_layer", "sigmoid")), _timm_gc, dialect="ods"),
)
FOREIGN.alias(
    "SpatialGroupEnhance", "SGE",
    reading(EAP, (("groups", REQUIRED),), lambda v, ctx: {"groups": _divides(ctx, v["groups"], "groups")},
            example=(8,), dialect="eap"),
    reading(ODS, (("groups", 8),), lambda v, ctx: {"groups": _divides(ctx, v["groups"], "groups")}, dialect="ods"),
    note="EAP/ODS initialise the group bias to 0 (output 0.5 x at init); SGE follows the official b = 1",
)
_PSA = (("planes", REQUIRED), ("kernel_size", 1), ("stride", 1))
FOREIGN.alias(
    "PSA_s", "PolarizedSA_S", reading("PSA (official)", _PSA, _psa, channel="real", example=(512,)),
    note="the official PSA_s bottlenecks its channel branch (C/2 -> C/8 -> C with a LayerNorm); PolarizedSA_S is the "
    "paper's sequential form",
)
FOREIGN.alias(
    "PSA_p", "PolarizedSA_P", reading("PSA (official)", _PSA, _psa, channel="real", example=(512,)),
    note="the official PSA_p has no LayerNorm in its channel branch (the paper's form, here, has one: 2C parameters)",
)
FOREIGN.alias(
    "SequentialPolarizedSelfAttention", "PolarizedSA_S", reading(f"{EAP}/{ODS}", dialect="eap/ods"),
    note="the source keeps biases on its 1x1 convs (PolarizedSA_S has none: 2.5 C + 1 fewer parameters)",
)
FOREIGN.alias(
    "ParallelPolarizedSelfAttention", "PolarizedSA_P", reading(f"{EAP}/{ODS}", dialect="eap/ods"),
    note="the source keeps biases on its 1x1 convs (PolarizedSA_P has none: 2.5 C + 1 fewer parameters)",
)
FOREIGN.alias(
    "ECAAttention", "ECA",
    reading(f"{EAP}/{ARTICLE}", (("kernel_size", 3),), lambda v, ctx: {
        "kernel_size": _int(v["kernel_size"], "kernel_size"), "form": "eap"}, dialect="eap/ods"),
    reading(f"{ULTRA} (ECAAttention(c1, k_size=3), bias-free)", (("k_size", 3),), lambda v, ctx: {
        "kernel_size": _int(v["k_size"], "k_size")}, channel="nominal", dialect="ultralytics"),
)
FOREIGN.alias(
    "EfficientChannelAttention", "ECA",
    reading(ODS, (("b", 1), ("gamma", 2)), lambda v, ctx: {"b": v["b"], "gamma": v["gamma"]}, dialect="ods"),
)


def _cbam_form(form: str, ratio: str = "reduction"):
    return lambda v, ctx: {"reduction": _exact_reduction(ctx, v[ratio], ratio),
                           "kernel_size": _int(v["kernel_size"], "kernel_size"), "form": form}


FOREIGN.alias(
    "CBAMBlock", "CBAM",
    reading(EAP, (("reduction", 16), ("kernel_size", 49)), _cbam_form("eap"), dialect="eap"),
    reading(ODS, (("reduction", 16), ("kernel_size", 7)), _cbam_form("ods"), dialect="ods"),
)
_CBAM = (("reduction", 16), ("kernel_size", 7))
FOREIGN.alias(
    "CBAMAttention", "CBAM",
    reading(f"{ARTICLE} (as a YOLOv5 fork lists it)", _CBAM, _cbam_form("ods"), channel="nominal", dialect="forks"),
    reading(ARTICLE, _CBAM, _cbam_form("ods"), dialect="ods/eap/ultralytics"),
)
FOREIGN.alias(
    "cbam_block", "CBAM",
    reading("bubbliiiing (as a YOLOv5 fork lists it)", (("ratio", 8), ("kernel_size", 7)),
            _cbam_form("bubbliiiing", "ratio"), channel="nominal", dialect="forks"),
    reading("bubbliiiing", (("ratio", 8), ("kernel_size", 7)), _cbam_form("bubbliiiing", "ratio"),
            dialect="ods/eap/ultralytics"),
)
FOREIGN.alias(
    "CBAM_Authentic", "CBAM",
    reading(f"{ULTRA} (a bias-free CBAM(c1, ratio=16, kernel_size=7))", (("ratio", 16), ("kernel_size", 7)),
            _cbam_form("bubbliiiing", "ratio"), channel="optional", dialect="ultralytics"),
)
for _name, _source in (("se_block", "bubbliiiing"), ("SE_Block", "YOLOv5 forks")):
    FOREIGN.alias(
        _name, "SE",
        reading(f"{_source} (as a YOLOv5 fork lists it)", (("ratio", 16),), lambda v, ctx: _se_eap(v, ctx, "ratio"),
                channel="nominal", dialect="forks"),
        reading(_source, (("ratio", 16),), lambda v, ctx: _se_eap(v, ctx, "ratio"), dialect="ods/eap/ultralytics"),
    )
FOREIGN.alias(
    "eca_block", "ECA",
    reading("bubbliiiing (as a YOLOv5 fork lists it)", (("b", 1), ("gamma", 2)),
            lambda v, ctx: {"b": v["b"], "gamma": v["gamma"]}, channel="nominal", dialect="forks"),
    reading("bubbliiiing", (("b", 1), ("gamma", 2)), lambda v, ctx: {"b": v["b"], "gamma": v["gamma"]},
            dialect="ods/eap/ultralytics"),
)
FOREIGN.alias(
    "BAMBlock", "BAM",
    reading(f"{EAP}/{ODS}", (("reduction", 16), ("dia_val", 2)),
            lambda v, ctx: {"reduction": _exact_reduction(ctx, v["reduction"]),
                            "dilation": _int(v["dia_val"], "dia_val"), "num_dilated": 3, "min_channels": 1},
            dialect="eap/ods"),
    note="the ports' channel branch has 3 hidden FC layers with BatchNorm1d (batch 1 fails in training), BAM's one "
    "with GroupNorm; EAP pads its dilated convs by 1 (the map shrinks), ODS pads them right",
)
FOREIGN.alias(
    "EMA", "EMAttention",
    reading(f"{ODS}, {ULTRA}", (("factor", 8),), lambda v, ctx: {"groups": _divides(ctx, v["factor"], "factor")},
            channel="optional", dialect="ods/ultralytics"),
)
FOREIGN.alias("LSKblock", "LSKBlock", reading(ODS, (), lambda v, ctx: {"wrapped": False}, dialect="ods"))
FOREIGN.alias(
    "BiLevelRoutingAttention_nchw", "BiLevelRoutingAttention",
    reading(ODS, (("num_heads", 8), ("n_win", 7), ("qk_scale", None), ("topk", 4), ("side_dwconv", 3),
                  ("auto_pad", False), ("attn_backend", "torch")),
            lambda v, ctx: _bra(v), dialect="ods"),
    note="BiLevelRoutingAttention adds a pre-norm and a residual around the attention (2C parameters more) and always "
    "pads to a multiple of n_win (the ODS module asserts divisibility unless auto_pad)",
)

FOREIGN.alias(
    "deformable_LKA_Attention", "DeformableLKA",
    reading(ODS, (), dialect="ods"),
    reading("D-LKA (official)", (), channel="real"),
)
FOREIGN.alias(
    "deformable_LKA", "DeformableLKA",
    reading(ODS, (), lambda v, ctx: {"wrapped": False}, dialect="ods"),
    reading("D-LKA (official)", (), lambda v, ctx: {"wrapped": False}, channel="real"),
)
FOREIGN.alias("SegNext_Attention", "MSCA", reading(ODS, (), lambda v, ctx: {"wrapped": False}, dialect="ods"))
FOREIGN.alias("EfficientAdditiveAttnetion", "EfficientAdditiveAttention",  # SwiftFormer's class name, typo included
              reading("SwiftFormer (official)", (), channel="real"))

# The YOLOv8 forks' names for modules here (the parser injects c1; a leading width is dropped)
FOREIGN.alias("LSKblockAttention", "LSKBlock", reading(f"{ULTRA} (LSKNet's LSKblock with proj_1/proj_2)", (),
                                                       channel="optional", dialect="ultralytics"))
FOREIGN.alias("EMA_attention", "EMAttention", reading(
    f"{ULTRA} (EMA_attention(channels, c2, factor=32))", (("factor", 32),),
    lambda v, ctx: {"groups": _divides(ctx, v["factor"], "factor")}, channel="optional", dialect="ultralytics"))
FOREIGN.alias("SA", "ShuffleAttention", reading(
    f"{ULTRA} (SA(c1, G=8): SA-Net's shuffle attention)", (("G", 8),),
    lambda v, ctx: {"groups": _divides(ctx, v["G"], "G", times=2)}, channel="optional", dialect="ultralytics"))
FOREIGN.alias("NLBlockND", "NonLocal", reading(
    f"{ULTRA} (NLBlockND(c1, inter_channels=c2), embedded Gaussian, no subsampling)", (),
    lambda v, ctx: {"reduction": 1, "sub_sample": False}, channel="nominal", dialect="ultralytics", takes_width=True,
    convention="[c2 (x width_multiple; also the inter_channels)]"))
