"""The names other projects give our modules, and their readings of rows with our own names.

Each :meth:`~models.dialects.names.ForeignNames.alias` call names a foreign module, the registered module it means and
one reading per project that uses the name; the notes say where the source's module differs from ours in structure
(arguments are translated exactly). Rows of our own names as other projects read them apply under ``dialect:``.
Nothing here imports a module class: the targets are registered names.
"""

from __future__ import annotations

from models.dialects.names import FOREIGN, Reading
from models.dialects.readings import (EAP, ODS, REQUIRED, YOLOAIR, ToOurs, Values, _divides, _exact_reduction, _flag, _int,
                                      _only, _ratio, reading)
from models.registry import ConfigError, RowContext

def _se(v: Values, ctx: RowContext) -> dict:
    return {"reduction": _exact_reduction(ctx, v["reduction"]), "min_channels": 1}


def _gam(v: Values, ctx: RowContext) -> dict:
    rate = _int(v["rate"], "rate")
    grouped = _flag(v["group"], "group", v) if "group" in v else False
    c = ctx.c_from[0]
    if grouped and (c % rate or (c // rate) % rate):
        raise ConfigError(f"grouped GAMAttention (group true) needs C and C/rate divisible by rate: C={c}, rate={rate}")
    if c // rate < 1:
        raise ConfigError(f"rate {rate} leaves no hidden channels at C={c}")
    return {"reduction": rate, "groups": rate if grouped else 1, "min_channels": 1}


def _sk(v: Values, ctx: RowContext) -> dict:
    if list(v["kernels"]) != [1, 3, 5, 7] or v["group"] != 1:
        raise ConfigError(f"kernels {v['kernels']!r} / group {v['group']!r} describe the 4-branch dense port, which SK "
                          "here (the paper's 2 grouped 3x3 branches) has no option for; write "
                          "SK [{branches: N, groups: G}]")
    return {"reduction": _int(v["reduction"], "reduction"), "min_channels": _int(v["L"], "L")}


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
    reading(YOLOAIR, (("reduction", 16),), _se, channel="nominal"),
    reading(f"{EAP}/{ODS}", (("reduction", 16),), _se),
    note="the source's SEAttention has bias-free Linear layers; SE's 1x1 convs have biases (C + C/r more parameters)",
)
FOREIGN.alias(
    "CA", "CoordAtt",
    reading(YOLOAIR, (("reduction", 32),), lambda v, ctx: {"reduction": _int(v["reduction"], "reduction")},
            channel="nominal"),
)
FOREIGN.alias(
    "CrissCrossAttention", "CrissCross",
    reading(YOLOAIR, (), lambda v, ctx: {"recurrence": 1}, channel="nominal"),
    reading(EAP, (), lambda v, ctx: {"recurrence": 1}),
    note="one criss-cross pass, as the source module does (CCNet's RCCA runs two: CrissCross's default recurrence=2)",
)
FOREIGN.alias(
    "EffectiveSELayer", "EffectiveSE",
    reading(YOLOAIR, (), channel="nominal",
            convention="[c2 (x width_multiple)] (YOLOAir passes c2 into the module's unused act argument)"),
)
FOREIGN.alias(
    "EffectiveSEModule", "EffectiveSE",
    reading(f"{ODS}/timm", (("add_maxpool", False), ("gate_layer", "hard_sigmoid")),
            lambda v, ctx: _ese(v)),
)
FOREIGN.alias(
    "GAMAttention", "GAM",
    reading(YOLOAIR, (("group", True), ("rate", 4)), _gam, channel="nominal"),
    note="YOLOAir's GAMAttention multiplies by its channel MLP without a sigmoid and shuffles the spatial gate after "
    "its sigmoid; GAM (the paper's) applies both sigmoids and shuffles between its grouped convs (same parameters)",
)
FOREIGN.alias("GAM_Attention", "GAM", reading(ODS, (("rate", 4),), _gam))
FOREIGN.alias(
    "NAMAttention", "NAM",
    reading(YOLOAIR, (("no_spatial", True),),
            lambda v, ctx: (v.notes.append("no_spatial false is ignored, as by YOLOAir's NAMAttention (channel "
                                           "branch only)") if not v["no_spatial"] else None) or {},
            channel="nominal"),
)
_SK = (("kernels", (1, 3, 5, 7)), ("reduction", 16), ("group", 1), ("L", 32))
FOREIGN.alias(
    "SKAttention", "SK",
    reading(YOLOAIR, _SK, _sk, channel="nominal"),
    reading(f"{EAP}/{ODS}", _SK, _sk),
    note="the source's SKAttention (EAP's, copied by YOLOAir and ODS) has 4 dense branches (kernels 1, 3, 5, 7, "
    "groups 1): 84 C^2 conv parameters, 22.1 M at C=512; SK is the paper's 2 grouped 3x3 branches (dilation 1, 2; "
    "G=32), 0.2 M at C=512",
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
                            ("gate_layer", "sigmoid")), _timm_gc),
)
FOREIGN.alias(
    "SpatialGroupEnhance", "SGE",
    reading(EAP, (("groups", REQUIRED),), lambda v, ctx: {"groups": _divides(ctx, v["groups"], "groups")},
            example=(8,)),
    reading(ODS, (("groups", 8),), lambda v, ctx: {"groups": _divides(ctx, v["groups"], "groups")}),
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
    "SequentialPolarizedSelfAttention", "PolarizedSA_S", reading(f"{EAP}/{ODS}"),
    note="the source keeps biases on its 1x1 convs (PolarizedSA_S has none: 2.5 C + 1 fewer parameters)",
)
FOREIGN.alias(
    "ParallelPolarizedSelfAttention", "PolarizedSA_P", reading(f"{EAP}/{ODS}"),
    note="the source keeps biases on its 1x1 convs (PolarizedSA_P has none: 2.5 C + 1 fewer parameters)",
)
FOREIGN.alias(
    "ECAAttention", "ECA",
    reading(EAP, (("kernel_size", 3),), lambda v, ctx: {"kernel_size": _int(v["kernel_size"], "kernel_size")}),
    note="EAP's Conv1d has a bias (1 parameter more than ECA)",
)
FOREIGN.alias(
    "EfficientChannelAttention", "ECA",
    reading(ODS, (("b", 1), ("gamma", 2)), lambda v, ctx: {"b": v["b"], "gamma": v["gamma"]}),
)
_CBAM = lambda v, ctx: {"reduction": _exact_reduction(ctx, v["reduction"]), "kernel_size": _int(v["kernel_size"],
                        "kernel_size"), "min_channels": 1}
FOREIGN.alias(
    "CBAMBlock", "CBAM",
    reading(EAP, (("reduction", 16), ("kernel_size", 49)), _CBAM),
    reading(ODS, (("reduction", 16), ("kernel_size", 7)), _CBAM),
    note="both ports use a bias-free MLP and a biased spatial conv without BN (CBAM: biased MLP, BN after the spatial "
    "conv); EAP's CBAMBlock also adds its input back (x + CBAM(x)), which the paper's CBAM does not",
)
FOREIGN.alias(
    "BAMBlock", "BAM",
    reading(f"{EAP}/{ODS}", (("reduction", 16), ("dia_val", 2)),
            lambda v, ctx: {"reduction": _exact_reduction(ctx, v["reduction"]),
                            "dilation": _int(v["dia_val"], "dia_val"), "num_dilated": 3, "min_channels": 1}),
    note="the ports' channel branch has 3 hidden FC layers with BatchNorm1d (batch 1 fails in training), BAM's one "
    "with GroupNorm; EAP pads its dilated convs by 1 (the map shrinks), ODS pads them right",
)
FOREIGN.alias(
    "EMA", "EMAttention",
    reading(ODS, (("factor", 8),), lambda v, ctx: {"groups": _divides(ctx, v["factor"], "factor")}),
)
FOREIGN.alias("LSKblock", "LSKBlock", reading(ODS, (), lambda v, ctx: {"wrapped": False}))
FOREIGN.alias(
    "BiLevelRoutingAttention_nchw", "BiLevelRoutingAttention",
    reading(ODS, (("num_heads", 8), ("n_win", 7), ("qk_scale", None), ("topk", 4), ("side_dwconv", 3),
                  ("auto_pad", False), ("attn_backend", "torch")),
            lambda v, ctx: _bra(v)),
    note="BiLevelRoutingAttention adds a pre-norm and a residual around the attention (2C parameters more) and always "
    "pads to a multiple of n_win (the ODS module asserts divisibility unless auto_pad)",
)

FOREIGN.alias(
    "deformable_LKA_Attention", "DeformableLKA",
    reading(ODS, ()),
    reading("D-LKA (official)", (), channel="real"),
)
FOREIGN.alias(
    "deformable_LKA", "DeformableLKA",
    reading(ODS, (), lambda v, ctx: {"wrapped": False}),
    reading("D-LKA (official)", (), lambda v, ctx: {"wrapped": False}, channel="real"),
)
FOREIGN.alias("SegNext_Attention", "MSCA", reading(ODS, (), lambda v, ctx: {"wrapped": False}))
FOREIGN.alias("EfficientAdditiveAttnetion", "EfficientAdditiveAttention",  # SwiftFormer's class name, typo included
              reading("SwiftFormer (official)", (), channel="real"))

# Rows of our own names as other projects read them (under `dialect:`; and to explain a row that fails ours).


def yoloair(params: tuple = (), to_ours: ToOurs | None = None, channel: str | None = "nominal", **kw) -> Reading:
    """YOLOAir's reading of a row with one of our own names (applies under `dialect: yoloair`)."""
    return reading(YOLOAIR, params, to_ours, channel=channel, dialect="yoloair", **kw)


def _yoloair_cbam(v: Values, ctx: RowContext) -> dict:
    v.notes.append("YOLOAir's CBAM (models/Models/research.py) uses LeakyReLU(0.1) in its channel MLP and a biased 7x7 "
                   "spatial conv without BatchNorm; this is the official CBAM (ReLU, bias-free conv + BN: 1 parameter "
                   "more)")
    return {"reduction": _exact_reduction(ctx, 16), "min_channels": 1}  # YOLOAir's CBAM(c1, c2): C // 16, no floor


def _yoloair_simam(v: Values, ctx: RowContext) -> dict:
    c2 = ctx.c_from[0]
    raise ConfigError(f"YOLOAir builds SimAM(c1, c2): its parser puts the channel count into e_lambda (e_lambda = "
                      f"{c2}), which makes the gate nearly constant; write SimAM [] for the paper's e_lambda 1e-4, "
                      f"or SimAM [{{e_lambda: {c2}}}] to rebuild YOLOAir's")


def _yoloair_danet(v: Values, ctx: RowContext) -> dict:
    raise ConfigError("YOLOAir's code has no DANet module (its YAML's arguments match no DANet signature); DANet here "
                      "takes its channels from the input")


def _yoloair_acmix(v: Values, ctx: RowContext) -> dict:
    _only(v, "stride", (1,), "the block keeps the map size")
    _only(v, "dilation", (1,), "ACmix here has no dilation")
    # YOLOAir's ACmix is the official code (dep_conv without bias, reflection padding): our official form
    return {"kernel_att": v["kernel_att"], "num_heads": v["head"], "kernel_conv": v["kernel_conv"], "form": "official"}


def _yoloair_s2(v: Values, ctx: RowContext) -> dict:
    v.notes.append("YOLOAir's S2Attention (EAP's) fixes its split attention to 512 channels: it runs at C = 512 only")
    return {}


FOREIGN.alias("CBAM", "CBAM", yoloair((), _yoloair_cbam))
FOREIGN.alias("SOCA", "SOCA", yoloair((("reduction", 8),), _se))
FOREIGN.alias("ShuffleAttention", "ShuffleAttention", yoloair((("reduction", 16), ("G", 8)), _shuffle))
FOREIGN.alias("S2Attention", "S2Attention", yoloair((), _yoloair_s2))
FOREIGN.alias("ACmix", "ACmix", yoloair(
    (("kernel_att", 7), ("head", 4), ("kernel_conv", 3), ("stride", 1), ("dilation", 1)), _yoloair_acmix))
FOREIGN.alias("SimAM", "SimAM", yoloair((), _yoloair_simam))
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
)
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

