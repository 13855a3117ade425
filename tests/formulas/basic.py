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

def _bias_free_mlp(c, h):
    return 2 * c * h  # the ports' Linear / 1x1 layers C -> h -> C without biases


FORMS = {  # the official forms and the ports: exact widths C // r; ECA's official class and EAP's fix k = 3
    ("SE", "official"): PAPER["SE"],
    ("SE", "eap"): lambda c: _bias_free_mlp(c, c // 16),
    ("CBAM", "official"): PAPER["CBAM"],
    ("CBAM", "ods"): lambda c: _bias_free_mlp(c, c // 16) + 2 * 7 * 7 + 1,  # biased 7x7 spatial conv, no BN
    ("CBAM", "eap"): lambda c: _bias_free_mlp(c, c // 16) + 2 * 49 * 49 + 1,  # as ods, 49x49 by default
    ("CBAM", "ultralytics"): lambda c: (c * c + c) + 2 * 7 * 7,  # one biased C x C gate; bias-free 7x7, no BN
    ("CBAM", "bubbliiiing"): lambda c: _bias_free_mlp(c, c // 16) + 2 * 7 * 7,  # all bias-free, no BN
    ("CBAM", "yoloair"): lambda c: _mlp(c, c // 16) + 2 * 7 * 7 + 1,  # biased MLP and 7x7 conv, no BN
    ("ECA", "official"): lambda c: 3,
    ("ECA", "eap"): lambda c: 3 + 1,  # k = 3 and the Conv1d's bias
    ("CoordAtt", "bubbliiiing"): lambda c: 3 * c * (c // 16) + 2 * (c // 16),  # bias-free 1x1 convs, BN, r = 16
}
