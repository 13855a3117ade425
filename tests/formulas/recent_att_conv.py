"""SCSA, CAFM, MSCA, SEAM, MultiSEAM (issue 22, convolution-based attention of 2022-2025)."""


def _scsa(c):
    # four biased depthwise 1-D convs on C/4 channels each (kernels 3, 5, 7, 9), shared by the H and W directions;
    # GroupNorm(4, C) per direction, GroupNorm(1, C) before the channel self-attention; per-channel q, k, v (no bias)
    return (c // 4) * (3 + 5 + 7 + 9) + c + 2 * (2 * c) + 2 * c + 3 * c


def _cafm(c, heads=8):
    # HCANet's Attention: 1x1 C -> 3C and a depthwise 3x3x3 conv (no biases), 1x1 output projection (no bias),
    # fc 3*heads -> 9 (biased), grouped 3x3x3 conv 9C/heads -> C in C/heads groups (biased), a temperature per head
    return 3 * c * c + 27 * 3 * c + c * c + (9 * 3 * heads + 9) + (27 * 9 * c + c) + heads


def _cafm_2d(c, heads=8):  # the same layers with 3x3 kernels (the middle slice of the depth-1 3x3x3 ones)
    return _cafm(c, heads) - 18 * 3 * c - 18 * 9 * c


def _msca_bare(c, strips=(7, 11, 21)):
    # depthwise 5x5, a 1xk and a kx1 depthwise conv per strip kernel, 1x1 C -> C (all biased)
    return (25 * c + c) + sum(2 * (k * c + c) for k in strips) + (c * c + c)


def _mixer(c, k=3):
    # YOLO-FaceV2's mixing layer: depthwise kxk (biased) + BN, 1x1 C -> C (biased) + BN
    return (k * k * c + c) + 2 * c + (c * c + c) + 2 * c


def _exp_gate(c, r=16):
    return 2 * c * (c // r)  # FC C -> C/r -> C, no biases


def _multiseam(c, patches=(6, 7, 8), depth=1):
    # per patch size: p x p stride-p conv C -> C (biased) + BN, then the mixing layers
    return sum((p * p * c * c + c) + 2 * c + depth * _mixer(c) for p in patches) + _exp_gate(c)


PAPER = {
    "SCSA": _scsa,  # 16C
    "CAFM": lambda c: _cafm(c) + 2 * c,
    "MSCA": lambda c: 2 * (c * c + c) + _msca_bare(c),  # MSCAN's residual form: proj_1 + MSCA + proj_2
    "SEAM": lambda c: _mixer(c) + _exp_gate(c),  # depth 1: C^2 + 15C + 2C(C/16)
    "MultiSEAM": _multiseam,  # patches 6, 7, 8, depth 1: 152C^2 + 54C + 2C(C/16)  # in the CAMixing block's pre-norm residual: + LayerNorm(C)
}

DEPARTURES = {
    "CAFM": {"3x3x3 kernels on a depth-1 map kept as their 3x3 middle slice": lambda c: -18 * 3 * c - 18 * 9 * c},
}

FORMS = {
    ("SCSA", "official"): _scsa,  # the same layers, floor-mode pooling
    ("CAFM", "official"): lambda c: _cafm_2d(c) + 2 * c,  # the same layers, memory-order grouping in the local branch
    ("MultiSEAM", "full"): _multiseam,  # the same layers, padded patch grid
}
