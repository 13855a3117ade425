"""SE, CBAM, ECA, Coordinate Attention."""

import math


def _mlp(c, h):
    """Two 1x1 convs (the papers' FC layers) C -> h -> C, with biases."""
    return (c * h + h) + (h * c + c)


def _eca_k(c, gamma=2, b=1):
    """ECA-Net's adaptive kernel size |log2(C)/gamma + b/gamma|, rounded up to odd."""
    t = int(abs((math.log2(c) + b) / gamma))
    return t if t % 2 else t + 1


def _cbam(c, h, k=7):
    return _mlp(c, h) + 2 * k * k + 2  # shared MLP, k x k conv 2 -> 1 (no bias), BN on one map


def _coord(c, mip):
    return (c * mip + mip) + 2 * mip + 2 * (mip * c + c)  # shared 1x1 C -> mip + BN, one 1x1 mip -> C per direction


PAPER = {
    "SE": lambda c: _mlp(c, c // 16),  # 2C^2/r + C/r + C, r = 16
    "CBAM": lambda c: _cbam(c, c // 16),
    "ECA": lambda c: _eca_k(c),  # one bias-free Conv1d of the adaptive size
    "CoordAtt": lambda c: _coord(c, c // 32),  # mip = C / r, r = 32
}

CLAMPED = {  # at SMALL_C = 24
    "SE": _mlp(24, 8),  # hidden width floored at min(8, C): 24 // 16 = 1 -> 8
    "CBAM": _cbam(24, 8),  # hidden width floored at min(8, C): 24 // 16 = 1 -> 8
    "CoordAtt": _coord(24, 8),  # mip floored at 8 (the official max(8, C // r)): 24 // 32 = 0 -> 8
}

FORMS = {  # the official forms: exact widths C // r (SE, CBAM); ECA's official class fixes k = 3
    ("SE", "official"): PAPER["SE"],
    ("CBAM", "official"): PAPER["CBAM"],
    ("ECA", "official"): lambda c: 3,
}
