"""SimAM, S2Attention, GAM, ShuffleAttention, TripletAttention, PolarizedSA, EPSA, EMAttention, SGE,
ParNetAttention, LSKBlock, LSKA, CAA (group counts clamped as documented in each module)."""

import math


def _divisor_at_most(c, g):
    g = max(1, min(g, c))
    while c % g:
        g -= 1
    return g


def _epsa(c, kernels=(3, 5, 7, 9), groups=(1, 4, 8, 16), r=16):
    split = c // 4
    convs = sum(k * k * c * split // _divisor_at_most(math.gcd(c, split), g) for k, g in zip(kernels, groups))
    hidden = max(split // r, 1)
    return convs + (split * hidden + hidden) + (hidden * split + split)  # one SE shared by the 4 scales


def _gam(c, r=4):
    h = c // r
    mlp = (c * h + h) + (h * c + c)  # per-pixel MLP C -> C/r -> C with biases
    spatial = (49 * c * h + h) + 2 * h + (49 * h * c + c) + 2 * c  # two biased 7x7 convs, each + BN
    return mlp + spatial


def _ema(c, factor=32):
    cg = c // _divisor_at_most(c, factor)
    return (cg * cg + cg) + (9 * cg * cg + cg) + 2 * cg  # 1x1, 3x3 (biased), GroupNorm affine


def _lsk_bare(c):
    h = c // 2
    return (25 * c + c) + (49 * c + c) + 2 * (c * h + h) + (2 * 2 * 49 + 2) + (h * c + c)


def _lska_bare(c, k0=3, k=3):  # k_size = 7 -> (3, 3, dilation 2)
    return 2 * (k0 * c + c) + 2 * (k * c + c) + (c * c + c)


PARAMS = {
    "SimAM": lambda c: 0,
    # mlp1 C -> 3C (bias), split attention C -> C -> 3C (no bias), mlp2 C -> C (bias): 8C^2 + 4C
    "S2Attention": lambda c: (3 * c * c + 3 * c) + c * c + 3 * c * c + (c * c + c),
    "GAM": _gam,
    # W_c, b_c, W_s, b_s and the GroupNorm affine, each C/(2G): 3C/G
    "ShuffleAttention": lambda c: 6 * (c // (2 * _divisor_at_most(c // 2, 64))),
    # three 7x7 convs 2 -> 1 (no bias) + BN(1)
    "TripletAttention": lambda c: 3 * (2 * 49 + 2),
    # W_q C -> 1, W_v C -> C/2, W_z C/2 -> C, LayerNorm(C); W_q, W_v C -> C/2 (no biases)
    "PolarizedSA_P": lambda c: c + c * (c // 2) + (c // 2) * c + 2 * c + 2 * c * (c // 2),
    "PolarizedSA_S": lambda c: c + c * (c // 2) + (c // 2) * c + 2 * c + 2 * c * (c // 2),
    "EPSA": _epsa,
    "EMAttention": _ema,
    # per-group weight and bias
    "SGE": lambda c: 2 * _divisor_at_most(c, 64),
    # 1x1 + BN, 3x3 + BN (bias-free convs), BN(x) + bias-free 1x1 SSE: 11C^2 + 6C
    "ParNetAttention": lambda c: (c * c + 2 * c) + (9 * c * c + 2 * c) + 2 * c + c * c,
    # LSKNet residual form: proj_1 + LSK module + proj_2
    "LSKBlock": lambda c: 2 * (c * c + c) + _lsk_bare(c),
    # VAN-LSKA residual form: proj_1 + LSKA(k=7) + proj_2
    "LSKA": lambda c: 2 * (c * c + c) + _lska_bare(c),
    # two bias-free 1x1 convs + BN, two biased depthwise strips of 11: 2C^2 + 28C
    "CAA": lambda c: 2 * (c * c + 2 * c) + 2 * (11 * c + c),
}
