"""Names other projects give our modules, how each project reads its rows, and modules they have that we lack.

A model YAML from YOLOAir (iscyy/yoloair), or a blog that pasted modules from External-Attention-pytorch (EAP,
xmu-xiaoma666) or objectdetection_script's cv-attention (ODS, z1069614715), names modules its own way
(``SEAttention``, ``CA``, ``GAMAttention``) and writes their arguments in its own convention. Each name here is an
:class:`~models.registry.Alias` with one :class:`~models.registry.Reading` per project that uses it; a reading
checks a row the way that project's parser and module would, and translates it into our module's hyperparameters.
The registry applies them (:meth:`~models.registry.Registry.resolve`): a row valid in exactly one translation is
built, with the translation in the layer table; a row two projects read differently, or none can read, is a
:class:`~models.registry.ConfigError` that shows the row in our form. Nothing here imports a module class: the
targets are registered names.

The conventions, from the projects' own parsers:

- YOLOAir (``models/yolo.py`` ``parse_model``): for ``SEAttention``, ``SKAttention``, ``CrissCrossAttention``, ``CA``,
  ``GAMAttention``, ``NAMAttention``, ``EffectiveSELayer`` (and ``CBAM``, ``SOCA``, ``ShuffleAttention``,
  ``S2Attention``, ``ACmix``, ``SimAM``) the first argument is the *nominal* channel count: it is scaled by
  ``width_multiple`` like a Conv's output (``make_divisible(c * width, 8)``) and becomes the layer's recorded output
  width, while the module is built on the real input channels. So ``[-1, 1, SEAttention, [1024]]`` after a 512-channel
  layer of a width-0.5 model is right, and ``[512]`` there is an error here (YOLOAir would record 256 output channels
  for a 512-channel output and build its next layer for 256). Every other name gets its arguments as written (its
  first argument is the *real* channel count, e.g. ``GlobalContextBlock [512, 0.25]`` in yolov5s); YOLOAir's YAMLs
  name several such modules that its code does not contain, and those follow the signature of the code they come
  from (EAP, GCNet, DeLightCMU's PSA).
- ODS (cv-attention readme: modules that need channels get them from the parser): the row writes only the module's
  remaining arguments, ``[-1, 1, EMA, [8]]``. An integer equal to the input's width (or its nominal width) is a
  channel count, never read as such a hyperparameter.
- EAP has no YOLO parser; blogs place its modules either way, so EAP names have both readings where it matters.

Under a model YAML's ``dialect: yoloair`` (or ``ods``), rows that use one of *our* names that project also uses
(``SOCA``, ``ShuffleAttention``, ``CBAM``, ...) are read that project's way: YOLOAir's ``SOCA [1024]`` means reduction
8, ours 16. Without the key they are read our way, and a row that fails says how the other projects read it.
"""

from __future__ import annotations

import math
from typing import Callable

from models.registry import LAYERS, ConfigError, Reading, RowContext, Translation, is_int, scaled_width

REQUIRED = object()  # a source parameter without a default

EAP = "EAP"  # xmu-xiaoma666/External-Attention-pytorch
ODS = "ODS"  # z1069614715/objectdetection_script, cv-attention


class Values(dict):
    """A row's arguments bound to a source signature, defaults filled in; ``notes``: what translating decided."""

    def __init__(self, values: dict):
        super().__init__(values)
        self.notes: list[str] = []


ToOurs = Callable[[Values, RowContext], dict]


def _convention(params: tuple, channel: str | None) -> str:
    lead = {"nominal": ["c2 (x width_multiple)"], "real": ["c (the input channels, unscaled)"]}.get(channel, [])
    rest = [p if d is REQUIRED else f"{p}={_show(d)}" for p, d in params]
    return f"[{', '.join(lead + rest)}]"


def _show(v) -> str:
    return repr(list(v)) if isinstance(v, tuple) else repr(v)


def _check_channel(v, channel: str, ctx: RowContext, source: str) -> None:
    c_in, width = ctx.c_from[0], ctx.width
    if channel == "nominal":
        got = scaled_width(v, width, ctx.max_channels)
        if got != c_in:
            exact = c_in / width
            fix = (f"write {int(exact)}" if exact.is_integer() and scaled_width(exact, width, ctx.max_channels) == c_in
                   else "leave the channel count out")
            raise ConfigError(f"{source} scales the first argument {v} by width_multiple {width:g} to {got} (the "
                              f"layer's recorded output width), but the input has {c_in} channels ({fix})")
    elif v != c_in:
        before = f"; {v} is its width before width_multiple {width:g}" if scaled_width(
            v, width, ctx.max_channels) == c_in and v != c_in else ""
        raise ConfigError(f"{source} passes the first argument {v} to the module as written, as its input channels, "
                          f"but the input has {c_in} channels (write {c_in}{before})")


def _looks_like_channels(v, ctx: RowContext) -> bool:
    c_in, width = ctx.c_from[0], ctx.width
    return is_int(v) and v > 1 and (v == c_in or (width and v == c_in / width))


def reading(source: str, params: tuple = (), to_ours: ToOurs | None = None, *, channel: str | None = None,
            dialect: str = "", convention: str = "", example: tuple = ()) -> Reading:
    """A :class:`Reading` of rows written against a source signature.

    ``params``: the source module's parameters after its channel argument, as (name, default) pairs (``REQUIRED``
    for none); ``channel``: ``"nominal"`` or ``"real"`` when the row writes a channel count first (required, as in
    the source), ``None`` when it does not; ``to_ours(values, ctx)``: the bound source values -> our hyperparameters
    (raises :class:`ConfigError` for a value without an equivalent). ``example``: values of the required parameters
    for the documented example row (after 1024 nominal / 512 real channels of a width-0.5 model).
    """
    to_ours = to_ours or (lambda v, ctx: {})
    names = [p for p, _ in params]

    def translate(args: list, ctx: RowContext) -> Translation:
        args = list(args)
        kwargs = dict(args.pop()) if args and isinstance(args[-1], dict) else {}
        if channel:
            if not args or not is_int(args[0]):
                raise ConfigError(f"{source} rows write the channel count first")
            _check_channel(args.pop(0), channel, ctx, source)
        elif args and _looks_like_channels(args[0], ctx) and names:
            raise ConfigError(f"{args[0]} is the input's channel count, which {source} rows do not write "
                              f"(its first argument is {names[0]})")
        if len(args) > len(names):
            raise ConfigError(f"{source}'s module takes {len(names)} argument(s) here ({', '.join(names) or 'none'}), "
                              f"the row gives {len(args)}")
        given = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                raise ConfigError(f"{source}'s module has no argument '{k}' (it takes: {', '.join(names) or 'none'})")
            if k in given:
                raise ConfigError(f"'{k}' given twice")
            given[k] = v
        missing = [p for p, d in params if d is REQUIRED and p not in given]
        if missing:
            raise ConfigError(f"{source}'s module needs {', '.join(missing)}")
        values = Values({**{p: d for p, d in params}, **given})
        out = to_ours(values, ctx)
        return Translation(out, tuple(values.notes))

    lead = {"nominal": (1024,), "real": (512,)}.get(channel, ())
    return Reading(source, convention or _convention(params, channel), translate, dialect, (*lead, *example))


# ----------------------------------------------------------------------------------------------------------------------
# Value translations shared by the readings


def _int(v, what: str, low: int = 1) -> int:
    if not is_int(v) or v < low:
        raise ConfigError(f"{what} must be an integer >= {low}, got {v!r}")
    return v


def _flag(v, what: str, values: Values) -> bool:
    if isinstance(v, bool):
        return v
    if is_int(v):
        values.notes.append(f"{what}: {v} is read as {bool(v)} (the source tests it for truth)")
        return bool(v)
    raise ConfigError(f"{what} must be true or false, got {v!r}")


def _exact_reduction(ctx: RowContext, reduction, what: str = "reduction") -> int:
    """A C -> C // r reduction the source takes without a floor; r must leave at least one channel."""
    r = _int(reduction, what)
    if ctx.c_from[0] // r < 1:
        raise ConfigError(f"{what} {r} leaves {ctx.c_from[0]} // {r} = 0 hidden channels (the source module fails)")
    return r


def _ratio(ctx: RowContext, ratio, what: str = "ratio") -> int:
    """GCNet's hidden-width ratio (planes = int(C * ratio)) as our reduction (hidden = C // reduction)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ConfigError(f"{what} must be a number in (0, 1] (hidden width = C x {what}), got {ratio!r}")
    r = round(1 / ratio)
    c = ctx.c_from[0]
    if not math.isclose(1 / ratio, r, rel_tol=1e-6) or int(c * ratio) != c // r or c // r < 1:
        raise ConfigError(f"{what} {ratio:g} gives int({c} x {ratio:g}) = {int(c * ratio)} hidden channels, which no "
                          f"integer reduction of {c} gives; write a ratio 1/r with r dividing {c}")
    return r


def _divides(ctx: RowContext, g, what: str, times: int = 1) -> int:
    g = _int(g, what)
    if ctx.c_from[0] % (g * times):
        raise ConfigError(f"{what} {g}: the source needs the channel count ({ctx.c_from[0]}) divisible by "
                          f"{g * times if times > 1 else g}")
    return g


def _only(values: Values, what: str, allowed, why: str) -> None:
    if values[what] not in allowed:
        raise ConfigError(f"{what}={values[what]!r} has no equivalent here ({why})")


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

YOLOAIR = "YOLOAir"

LAYERS.alias(
    "SEAttention", "SE",
    reading(YOLOAIR, (("reduction", 16),), _se, channel="nominal"),
    reading(f"{EAP}/{ODS}", (("reduction", 16),), _se),
    note="the source's SEAttention has bias-free Linear layers; SE's 1x1 convs have biases (C + C/r more parameters)",
)
LAYERS.alias(
    "CA", "CoordAtt",
    reading(YOLOAIR, (("reduction", 32),), lambda v, ctx: {"reduction": _int(v["reduction"], "reduction")},
            channel="nominal"),
)
LAYERS.alias(
    "CrissCrossAttention", "CrissCross",
    reading(YOLOAIR, (), lambda v, ctx: {"recurrence": 1}, channel="nominal"),
    reading(EAP, (), lambda v, ctx: {"recurrence": 1}),
    note="one criss-cross pass, as the source module does (CCNet's RCCA runs two: CrissCross's default recurrence=2)",
)
LAYERS.alias(
    "EffectiveSELayer", "EffectiveSE",
    reading(YOLOAIR, (), channel="nominal",
            convention="[c2 (x width_multiple)] (YOLOAir passes c2 into the module's unused act argument)"),
)
LAYERS.alias(
    "EffectiveSEModule", "EffectiveSE",
    reading(f"{ODS}/timm", (("add_maxpool", False), ("gate_layer", "hard_sigmoid")),
            lambda v, ctx: _ese(v)),
)
LAYERS.alias(
    "GAMAttention", "GAM",
    reading(YOLOAIR, (("group", True), ("rate", 4)), _gam, channel="nominal"),
    note="YOLOAir's GAMAttention multiplies by its channel MLP without a sigmoid and shuffles the spatial gate after "
    "its sigmoid; GAM (the paper's) applies both sigmoids and shuffles between its grouped convs (same parameters)",
)
LAYERS.alias("GAM_Attention", "GAM", reading(ODS, (("rate", 4),), _gam))
LAYERS.alias(
    "NAMAttention", "NAM",
    reading(YOLOAIR, (("no_spatial", True),),
            lambda v, ctx: (v.notes.append("no_spatial false is ignored, as by YOLOAir's NAMAttention (channel "
                                           "branch only)") if not v["no_spatial"] else None) or {},
            channel="nominal"),
)
_SK = (("kernels", (1, 3, 5, 7)), ("reduction", 16), ("group", 1), ("L", 32))
LAYERS.alias(
    "SKAttention", "SK",
    reading(YOLOAIR, _SK, _sk, channel="nominal"),
    reading(f"{EAP}/{ODS}", _SK, _sk),
    note="the source's SKAttention (EAP's, copied by YOLOAir and ODS) has 4 dense branches (kernels 1, 3, 5, 7, "
    "groups 1): 84 C^2 conv parameters, 22.1 M at C=512; SK is the paper's 2 grouped 3x3 branches (dilation 1, 2; "
    "G=32), 0.2 M at C=512",
)
_GC = (("ratio", REQUIRED), ("pooling_type", "att"))
LAYERS.alias(
    "GlobalContextBlock", "GCBlock",
    reading("GCNet", (*_GC, ("fusion_types", ("channel_add",))), _gcnet, channel="real", example=(0.25,)),
    reading("blog copies", (*_GC, ("fusion_types", ("channel_mul",))), _gcnet, channel="real", example=(0.25,)),
    note="GCBlock zero-initialises the last conv of its transforms, as GCNet's code does (blog copies keep "
    "PyTorch's default init)",
)
LAYERS.alias(
    "ContextBlock", "GCBlock",
    reading("GCNet", (*_GC, ("fusion_types", ("channel_add",))), _gcnet, channel="real", example=(0.25,)),
    reading("blog copies", (*_GC, ("fusion_types", ("channel_mul",))), _gcnet, channel="real", example=(0.25,)),
)
LAYERS.alias(
    "GlobalContext", "GCBlock",
    reading(f"{ODS}/timm", (("use_attn", True), ("fuse_add", False), ("fuse_scale", True), ("init_last_zero", False),
                            ("rd_ratio", 1 / 8), ("rd_channels", None), ("rd_divisor", 1), ("act_layer", "relu"),
                            ("gate_layer", "sigmoid")), _timm_gc),
)
LAYERS.alias(
    "SpatialGroupEnhance", "SGE",
    reading(EAP, (("groups", REQUIRED),), lambda v, ctx: {"groups": _divides(ctx, v["groups"], "groups")},
            example=(8,)),
    reading(ODS, (("groups", 8),), lambda v, ctx: {"groups": _divides(ctx, v["groups"], "groups")}),
    note="EAP/ODS initialise the group bias to 0 (output 0.5 x at init); SGE follows the official b = 1",
)
_PSA = (("planes", REQUIRED), ("kernel_size", 1), ("stride", 1))
LAYERS.alias(
    "PSA_s", "PolarizedSA_S", reading("PSA (official)", _PSA, _psa, channel="real", example=(512,)),
    note="the official PSA_s bottlenecks its channel branch (C/2 -> C/8 -> C with a LayerNorm); PolarizedSA_S is the "
    "paper's sequential form",
)
LAYERS.alias(
    "PSA_p", "PolarizedSA_P", reading("PSA (official)", _PSA, _psa, channel="real", example=(512,)),
    note="the official PSA_p has no LayerNorm in its channel branch (the paper's form, here, has one: 2C parameters)",
)
LAYERS.alias(
    "SequentialPolarizedSelfAttention", "PolarizedSA_S", reading(f"{EAP}/{ODS}"),
    note="the source keeps biases on its 1x1 convs (PolarizedSA_S has none: 2.5 C + 1 fewer parameters)",
)
LAYERS.alias(
    "ParallelPolarizedSelfAttention", "PolarizedSA_P", reading(f"{EAP}/{ODS}"),
    note="the source keeps biases on its 1x1 convs (PolarizedSA_P has none: 2.5 C + 1 fewer parameters)",
)
LAYERS.alias(
    "ECAAttention", "ECA",
    reading(EAP, (("kernel_size", 3),), lambda v, ctx: {"kernel_size": _int(v["kernel_size"], "kernel_size")}),
    note="EAP's Conv1d has a bias (1 parameter more than ECA)",
)
LAYERS.alias(
    "EfficientChannelAttention", "ECA",
    reading(ODS, (("b", 1), ("gamma", 2)), lambda v, ctx: {"b": v["b"], "gamma": v["gamma"]}),
)
_CBAM = lambda v, ctx: {"reduction": _exact_reduction(ctx, v["reduction"]), "kernel_size": _int(v["kernel_size"],
                        "kernel_size"), "min_channels": 1}
LAYERS.alias(
    "CBAMBlock", "CBAM",
    reading(EAP, (("reduction", 16), ("kernel_size", 49)), _CBAM),
    reading(ODS, (("reduction", 16), ("kernel_size", 7)), _CBAM),
    note="both ports use a bias-free MLP and a biased spatial conv without BN (CBAM: biased MLP, BN after the spatial "
    "conv); EAP's CBAMBlock also adds its input back (x + CBAM(x)), which the paper's CBAM does not",
)
LAYERS.alias(
    "BAMBlock", "BAM",
    reading(f"{EAP}/{ODS}", (("reduction", 16), ("dia_val", 2)),
            lambda v, ctx: {"reduction": _exact_reduction(ctx, v["reduction"]),
                            "dilation": _int(v["dia_val"], "dia_val"), "num_dilated": 3, "min_channels": 1}),
    note="the ports' channel branch has 3 hidden FC layers with BatchNorm1d (batch 1 fails in training), BAM's one "
    "with GroupNorm; EAP pads its dilated convs by 1 (the map shrinks), ODS pads them right",
)
LAYERS.alias(
    "EMA", "EMAttention",
    reading(ODS, (("factor", 8),), lambda v, ctx: {"groups": _divides(ctx, v["factor"], "factor")}),
)
LAYERS.alias("LSKblock", "LSKBlock", reading(ODS, (), lambda v, ctx: {"wrapped": False}))
LAYERS.alias(
    "BiLevelRoutingAttention_nchw", "BiLevelRoutingAttention",
    reading(ODS, (("num_heads", 8), ("n_win", 7), ("qk_scale", None), ("topk", 4), ("side_dwconv", 3),
                  ("auto_pad", False), ("attn_backend", "torch")),
            lambda v, ctx: _bra(v)),
    note="BiLevelRoutingAttention adds a pre-norm and a residual around the attention (2C parameters more) and always "
    "pads to a multiple of n_win (the ODS module asserts divisibility unless auto_pad)",
)

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


LAYERS.alias("CBAM", "CBAM", yoloair((), _yoloair_cbam))
LAYERS.alias("SOCA", "SOCA", yoloair((("reduction", 8),), _se))
LAYERS.alias("ShuffleAttention", "ShuffleAttention", yoloair((("reduction", 16), ("G", 8)), _shuffle))
LAYERS.alias("S2Attention", "S2Attention", yoloair((), _yoloair_s2))
LAYERS.alias("ACmix", "ACmix", yoloair(
    (("kernel_att", 7), ("head", 4), ("kernel_conv", 3), ("stride", 1), ("dilation", 1)), _yoloair_acmix))
LAYERS.alias("SimAM", "SimAM", yoloair((), _yoloair_simam))
LAYERS.alias("DANet", "DANet", yoloair((("planes", REQUIRED), ("flag", False)), _yoloair_danet, channel="real",
                                       example=(512, False), convention="[?] (no module in YOLOAir's code)"))
LAYERS.alias("DoubleAttention", "DoubleAttention", yoloair(
    (("c_m", REQUIRED), ("c_n", REQUIRED), ("reconstruct", True)), _double, channel="real", example=(128, 128),
    convention="[c (the input channels, unscaled), c_m, c_n, reconstruct=True] (EAP's signature)"))
LAYERS.alias("ParNetAttention", "ParNetAttention", yoloair(
    (), channel="real", convention="[c (the input channels, unscaled)] (EAP's signature)"))
LAYERS.alias(
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
    LAYERS.alias(name, name, reading(ODS, params, to_ours, dialect="ods"))

# ----------------------------------------------------------------------------------------------------------------------
# Known modules of other projects that are not provided here (their names fail as such, not as typos)

_ATTENTION_NOT_PROVIDED = (
    ("AxialImageTransformer", f"{YOLOAIR}/{EAP}", "axial-attention transformer", "CrissCross (attention along each row "
     "and column)"),
    ("AxialAttention", EAP, "axial attention", "CrissCross (attention along each row and column)"),
    ("MHSA", f"{YOLOAIR}/{ODS}", "BoTNet MHSA with absolute position tables of one fixed size, or none",
     "BoTMHSA (relative positions, any size)"),
    ("DAModule", EAP, "DANet fixed to d_model 512 and 7x7 maps", "DANet"),
    ("CoTAttention", f"{EAP}/{ODS}", "a global-softmax gate, not the official CotLayer", "CoT"),
    ("PSA", EAP, "a name for both pyramid split attention (EAP's PSA.py) and polarized self-attention",
     "EPSA, PolarizedSA_P or PolarizedSA_S"),
    ("EfficientAttention", ODS, "CloFormer's CloAttention (H, W divisible by its window)", ""),
    ("MobileViTAttention", f"{EAP}/{ODS}", "MobileViT block (patch-size divisibility)", ""),
    ("MobileViTv2Attention", EAP, "MobileViTv2 separable attention on tokens", ""),
    ("AFT_FULL", EAP, "attention-free transformer on tokens with a fixed N", ""),
    ("OutlookAttention", EAP, "VOLO outlook attention on tokens", ""),
    ("WeightedPermuteMLP", EAP, "Vision Permutator MLP with fixed H and W", ""),
    ("HaloAttention", EAP, "HaloNet blocked local attention", ""),
    ("EMSA", EAP, "ResT efficient multi-head self-attention on tokens", ""),
    ("MUSEAttention", EAP, "multi-scale self-attention on tokens", ""),
    ("UFOAttention", EAP, "UFO-ViT linear attention on tokens", ""),
    ("ScaledDotProductAttention", EAP, "token self-attention", "BoTMHSA"),
    ("SimplifiedScaledDotProductAttention", EAP, "token self-attention", "BoTMHSA"),
    ("GlobalFilter", EAP, "GFNet FFT filter of a fixed size", ""),
    ("CoAtNet", EAP, "a whole network", ""),
    ("CrossFormer", EAP, "a whole network", ""),
    ("MOATransformer", EAP, "a whole network", ""),
)
for name, source, what, instead in _ATTENTION_NOT_PROVIDED:
    LAYERS.known(name, source, what, instead)

# Names YOLOAir's parse_model places (iscyy/yoloair models/yolo.py) or its YAMLs use, and that are not here.
YOLOAIR_NOT_PROVIDED = (
    "ADD ASFF_Detect ASPP BasicRFB BepC3 BoT3 BottleneckCSP2 BottleneckCSPB BottleneckCSPC BottleneckCSPF C2f_RMB "
    "C3C2 C3GC C3HB C3RFEM C3STR C3_RMB CARAFE CBH CNeB CPNRMB CSPResNet CSPResNet_CBS CSRMBC CoT3 Concat_bifpn "
    "ConvBNLayer ConvNeXt ConvNextBlock Conv_maxpool CoordConv DWConvblock DWT Decoupled_Detect "
    "Dense Densenet121 Densenet169 Densenet201 DepthSepConv DetectX DetectYoloX DySample ES_Bottleneck ETVR "
    "EffDecHead Efficient1 Efficient2 Efficient3 GSConv HorBlock HorNet Involution LC_Block "
    "MobileNet1 MobileNet2 MobileNet3 MobileNetV3_InvertedResidual MobileOne MobileOneBlock MultiSEAM PPConvBlock RTRM "
    "ReNLANRMB RegNet1 RegNet2 RegNet3 RepBlock RepLKNet_Stem RepLKNet_stage1 RepLKNet_stage2 RepLKNet_stage3 "
    "RepLKNet_stage4 RepVGGBlock RepVGGBlockv6 Res2net50 ResCSPB ResCSPC ResNet101vd ResNet50vd ResNet50vd_dcn ResSPP "
    "ResXCSPB ResXCSPC SEAM SPPCSP SPPCSPC_group SPPFCSPC ShuffleNetV2_Model Shuffle_Block SimConv SimSPPF Stem "
    "SwinV2_CSPB Swin_Transformer_A Swin_v2_A VoVGSCSP WaveLAN XCRS conv_bn_hswish conv_bn_relu_maxpool gnconv "
    "mobilev3_bneck nn.ConvTranspose2d space_to_depth stem"
).split()
# Names YOLOv7's parse_model places (WongKinYiu/yolov7 models/yolo.py) that are not here.
YOLOV7_NOT_PROVIDED = (
    "BottleneckCSPA BottleneckCSPB BottleneckCSPC Chuncat Foldcut Ghost GhostCSPA "
    "GhostCSPB GhostCSPC GhostSPPCSPC GhostStem IBin IKeypoint RepBottleneck "
    "RepBottleneckCSPA RepBottleneckCSPB RepBottleneckCSPC RepConv_OREPA RepRes RepResCSPA RepResCSPB RepResCSPC "
    "RepResX RepResXCSPA RepResXCSPB RepResXCSPC Res ResCSPA ResCSPB ResCSPC ResX ResXCSPA ResXCSPB ResXCSPC "
    "RobustConv RobustConv2 ST2CSPA ST2CSPB ST2CSPC STCSPA STCSPB STCSPC Stem SwinTransformer2Block "
    "SwinTransformerBlock nn.Conv2d"
).split()
for name in YOLOV7_NOT_PROVIDED:
    LAYERS.known(name, "YOLOv7")
for name in YOLOAIR_NOT_PROVIDED:
    LAYERS.known(name, YOLOAIR)
