"""Other projects' block names and common spellings: what they build here, or the row to write.

- Block names whose code a block here reproduces are built as it (``Conv_CBAM`` -> ``ConvCBAM``), with a warning
  where the name means something else too (the seed article's ``CCN``).
- Attention fused into a block under its own name (``C3CBAM``, ``ECAC3``, ``C2f_EMA``, ``C3k2_SE``...) is answered
  with the row of this project's block that places the attention inside (``C3Att``, ``ELANAtt``, ``C2fAtt``,
  ``C3k2Att``): the forks' blocks differ in where the attention sits, so the row is written, not guessed.
- Common spellings of modules here (``SELayer``, ``ChannelAttention``, ...) are answered with the module to write.
"""

from __future__ import annotations

import re

from models.dialects.names import FOREIGN
from models.dialects.readings import ARTICLE, FORKS
from models.registry.values import flow
from models.registry import LAYERS

FOREIGN.block("Conv_CBAM", FORKS, "ConvCBAM")
FOREIGN.block("CCN", ARTICLE, "ResidualConv",
              warning="CCN is built as the seed article's code, a residual convolution x + LeakyReLU(0.1)(BN(conv3x3"
                      "(x))) (ResidualConv); the article's text calls it criss-cross attention (CCNet), which here is "
                      "[-1, 1, CrissCross, []]")
FOREIGN.block("CBAMConv", "songjiahao-wq/MY-YLOv7", hint=lambda args: (
    "songjiahao-wq's CBAMConv(c1, c2, k, s) is CBAM on its input (bias-free, [max; mean]) followed by a biased k x k "
    "convolution, BN and ReLU; no block here builds it. Closest: [-1, 1, CBAM, [{form: bubbliiiing}]] then "
    f"[-1, 1, Conv, [{', '.join(flow(a) for a in args) or 'c2, k, s'}]] (Conv: no bias, SiLU)"))

# Common spellings: (names, what they are elsewhere, the row to write here)
SPELLINGS = (
    (("SELayer", "SELayerV1", "SELayerV2", "SEModule", "SqueezeExcitation", "SqueezeExcite", "SEBlock", "SENet"),
     "squeeze-and-excitation under another name",
     "[-1, 1, SE, []] (biased FC layers, as the paper and mmcv/timm) or [-1, 1, SE, [{form: eap}]] (bias-free, as "
     "senet.pytorch, EAP and most forks); check the source's FC biases and reduction"),
    (("ChannelAttention", "ChannelAtt", "ChannelAttentionModule", "CAM"),
     "a channel gate alone (CBAM's channel half, or ultralytics' one-conv gate)",
     "[-1, 1, SE, [{form: eap}]] (a bias-free MLP on the mean) or CBAM for both gates ([-1, 1, CBAM, [{form: "
     "ultralytics}]] has ultralytics' ChannelAttention as its channel gate)"),
    (("SpatialAttention", "SpatialAtt", "SpatialAttentionModule", "SAM"),
     "a spatial gate alone (CBAM's spatial half)", "CBAM (channel then spatial gate); no spatial gate alone here"),
    (("GlobalAttentionModule", "GlobalAttention", "GAMBlock"),
     "the global attention mechanism (GAM) under another name", "[-1, 1, GAM, []]"),
    (("MultiHeadSelfAttention", "MultiHeadAttention", "SelfAttention", "MHSA2d"),
     "multi-head self-attention on the feature map", "[-1, 1, BoTMHSA, []] (relative positions, any size)"),
    (("NonLocalBlock", "NLBlock", "NonLocal2d"), "a non-local block", "[-1, 1, NonLocal, []]"),
    (("BRABlock", "BiFormerBlock", "BiFormer"), "a BiFormer block (bi-level routing attention, then an MLP)",
     "[-1, 1, BiLevelRoutingAttention, []] (the attention with its pre-norm and residual; no MLP)"),
    (("ECABlock", "ECALayer", "eca_layer"), "efficient channel attention", "[-1, 1, ECA, []]"),
    (("CoordAttention", "CoordinateAttention", "CoordAttBlock"), "coordinate attention",
     "[-1, 1, CoordAtt, []] (official, h-swish) or [-1, 1, CoordAtt, [{form: bubbliiiing}]] (bias-free, ReLU)"),
    (("SKBlock", "SKLayer", "SKConv", "SKNet"), "selective-kernel convolution",
     "[-1, 1, SK, []] (the paper's 2 grouped branches) or [-1, 1, SK, [{form: eap}]] (EAP's 4 dense branches)"),
)
_SPELLING = {name: (what, row) for names, what, row in SPELLINGS for name in names}


def spelling_hint(name: str) -> str | None:
    found = _SPELLING.get(name)
    if found is None:
        return None
    what, row = found
    return f"'{name}' is {what} in other code, not a name here; write {row}"


# ----------------------------------------------------------------------------------------------------------------------
# Attention fused into a block under its own name

_BLOCKS = (("C3k2", "C3k2Att"), ("C2f", "C2fAtt"), ("ELAN", "ELANAtt"), ("C3", "C3Att"))  # longest first
_FUSED = re.compile(r"^(?:(?P<block>C3k2|C2f|ELAN|C3)_?(?P<att>[A-Za-z][A-Za-z0-9_]*?)(?:_?Attention|_?Block)?"
                    r"|(?P<att2>[A-Za-z][A-Za-z0-9]*?)_?(?P<block2>C3k2|C2f|ELAN|C3))$")
_ATT_SHORT = {"ca": "CoordAtt", "sa": "ShuffleAttention", "ema": "EMAttention", "se": "SE", "eca": "ECA",
              "cbam": "CBAM", "gam": "GAM", "simam": "SimAM", "sk": "SK", "nam": "NAM", "cot": "CoT", "bam": "BAM",
              "lska": "LSKA", "lsk": "LSKBlock", "cpca": "CPCA", "mlca": "MLCA", "ela": "ELA", "caa": "CAA",
              "gc": "GCBlock", "triplet": "TripletAttention", "bra": "BiLevelRoutingAttention",
              "biformer": "BiLevelRoutingAttention", "acmix": "ACmix", "dat": "DAttention", "soca": "SOCA"}


def _attention_named(text: str) -> str | None:
    low = text.lower().strip("_")
    if low in _ATT_SHORT:
        return _ATT_SHORT[low]
    for spec in LAYERS.specs("attention"):
        if spec.name.lower() == low:
            return spec.name
    alias = FOREIGN.alias_of(text)
    return alias.target if alias is not None else None


def fused_hint(name: str, args: list | None = None) -> str | None:
    """The row to write for a block with attention fused under its own name (``C3CBAM [256]``), or None."""
    m = _FUSED.match(name) if isinstance(name, str) else None
    if m is None:
        return None
    block, att_text = (m["block"], m["att"]) if m["block"] else (m["block2"], m["att2"])
    att = _attention_named(att_text)
    if att is None:
        return None
    ours = dict(_BLOCKS)[block]
    written = [flow(a) for a in (args or [])]
    row = f"[from, n, {ours}, [{', '.join([*written, att]) if written else f'<c2>, {att}'}]]"
    where = {"ELANAtt": "closing each stage", "C3Att": "inside every bottleneck, after its 3x3 conv"}.get(
        ours, "inside every bottleneck")
    if ours in LAYERS:
        return (f"'{name}' is a fork's {block} with {att} fused in; here the block is {ours} ({att} {where}): write "
                f"{row}. The fork's block may place the attention elsewhere or use another port of {att} (forms: "
                "docs/modules.md): compare its code")
    return (f"'{name}' is a fork's {block} with {att} fused in; this project's block for it, {ours}, is not provided "
            f"yet; the closest rows now are [from, n, {block}, [{', '.join(written) or '<c2>'}]] then "
            f"[-1, 1, {att}, []] ({att} after the block, not inside it)")


def block_hint(name: str, args: list | None = None) -> str | None:
    """What this layer knows of a block or spelling that does not build: the row to write, or None."""
    block = FOREIGN.block_of(name)
    if block is not None and block.hint is not None:
        return f"'{name}' ({block.source}): {block.hint(list(args or []))}"
    return spelling_hint(name) or fused_hint(name, args)

