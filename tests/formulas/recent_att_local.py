"""Local and windowed attention of 2022-2023 (issue 22): iRMB (EMO), DeformableLKA (D-LKA), HiLo (LITv2),
MSDA (DilateFormer)."""


def _irmb(c, exp_ratio=1.0, k=3, qkv_bias=False):
    m = int(c * exp_ratio)
    norm = 2 * c  # input BatchNorm / LayerNorm affine
    qk = c * 2 * c + (2 * c if qkv_bias else 0)  # 1x1 C -> 2C
    v = c * m + (m if qkv_bias else 0)  # 1x1 C -> lambda C
    local = k * k * m + 2 * m  # depthwise k x k (no bias) + BatchNorm
    proj = m * c  # 1x1 lambda C -> C, no bias
    return norm + qk + v + local + proj


def _dlka(c):
    # offset convs C -> 2 k^2 (k x k, bias) and depthwise deformable k x k weights (no bias), k = 5 and 7 (dilation 3)
    deform = sum(c * 2 * k * k * k * k + 2 * k * k + c * k * k for k in (5, 7))
    conv1 = c * c + c  # 1x1 after the deformable convs
    projections = 2 * (c * c + c)  # VAN's proj_1 / proj_2 around the attention (the residual form)
    return deform + conv1 + projections


def _hilo(c, heads=8, alpha=0.9):
    d = c // heads
    lo = int(heads * alpha) * d  # Lo-Fi width: 7 of 8 heads
    hi = c - lo  # Hi-Fi width
    # Lo-Fi q (C -> lo), kv (C -> 2 lo), proj (lo -> lo) + Hi-Fi qkv (C -> 3 hi), proj (hi -> hi); all biased
    return (c * lo + lo) + (c * 2 * lo + 2 * lo) + (lo * lo + lo) + (c * 3 * hi + 3 * hi) + (hi * hi + hi)


def _msda(c):
    return (c * 3 * c + 3 * c) + (c * c + c)  # q/k/v 1x1 conv (C -> 3C, bias) + output Linear (bias): 4 C^2 + 4 C


PAPER = {
    # the official class defaults: expansion 1, DW 3x3, no q/k/v bias (4 C^2 + 13 C)
    "iRMB": _irmb,
    "DeformableLKA": _dlka,  # 3 C^2 + 6129 C + 148: the 7x7 offset conv alone is 4802 C
    "HiLo": _hilo,  # 8 heads, alpha 0.9: 7 Lo-Fi, 1 Hi-Fi
    "MSDA": _msda,  # the dilation rates and head split add no parameters
}

DEPARTURES = {
    "HiLo": {"the LITv2 block's pre-norm LayerNorm is part of the module": lambda c: 2 * c},
    "MSDA": {"the DilateFormer block's pre-norm LayerNorm is part of the module": lambda c: 2 * c},
}

CLAMPED = {  # at SMALL_C = 24
    "iRMB": _irmb(24),  # heads 24/64 -> 1 (C below dim_head): no parameter changes
}

FORMS = {
    ("iRMB", "official"): _irmb,  # only the window partition differs
}
