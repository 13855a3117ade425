"""SimAM, S2Attention, GAM, ShuffleAttention, TripletAttention, PolarizedSA, EPSA, EMAttention, SGE,
ParNetAttention, LSKBlock, LSKA, CAA."""


def _epsa(c, groups, hidden, kernels=(3, 5, 7, 9)):
    split = c // 4
    convs = sum(k * k * c * split // g for k, g in zip(kernels, groups))  # 4 grouped convs C -> C/4, no bias
    return convs + (split * hidden + hidden) + (hidden * split + split)  # one SE (C/4 -> C/4r -> C/4) shared by all


def _gam(c, h, g=1):
    mlp = (c * h + h) + (h * c + c)  # per-pixel MLP C -> C/r -> C with biases
    spatial = (49 * c * h // g + h) + 2 * h + (49 * h * c // g + c) + 2 * c  # two biased 7x7 convs (g groups) + BN
    return mlp + spatial


def _ema(c, g):
    cg = c // g
    return (cg * cg + cg) + (9 * cg * cg + cg) + 2 * cg  # shared 1x1 and 3x3 (biased) per group, GroupNorm affine


def _polarized(c):
    # W_q C -> 1, W_v C -> C/2, W_z C/2 -> C, LayerNorm(C); W_q, W_v C -> C/2 (no biases)
    return c + c * (c // 2) + (c // 2) * c + 2 * c + 2 * c * (c // 2)


def _polarized_s_official(c):
    ci, cu = c // 2, c // 8
    # W_q C -> 1, W_v C -> C/2, conv_up (C/2 -> C/8 bias, LayerNorm([C/8, 1, 1]), C/8 -> C bias); W_q, W_v C -> C/2
    return c + c * ci + (ci * cu + cu) + 2 * cu + (cu * c + c) + 2 * c * ci


def _lsk_bare(c):
    h = c // 2
    # DW 5x5, DW 7x7 dilation 3, two 1x1 C -> C/2, 7x7 conv 2 -> 2, 1x1 C/2 -> C (all biased)
    return (25 * c + c) + (49 * c + c) + 2 * (c * h + h) + (2 * 2 * 49 + 2) + (h * c + c)


def _lska_bare(c, k0=3, k=3):  # kernel_size 7 -> (k0 3, k 3, dilation 2)
    return 2 * (k0 * c + c) + 2 * (k * c + c) + (c * c + c)  # 1xk0, k0x1, 1xk, kx1 depthwise + 1x1 (biased)


PAPER = {
    "SimAM": lambda c: 0,
    # mlp1 C -> 3C (bias), split attention C -> C -> 3C (no bias), mlp2 C -> C (bias): 8C^2 + 4C
    "S2Attention": lambda c: (3 * c * c + 3 * c) + c * c + 3 * c * c + (c * c + c),
    "GAM": lambda c: _gam(c, c // 4),  # rate r = 4
    # W_c, b_c, W_s, b_s and the GroupNorm affine, each C/(2G), G = 64: 3C/G
    "ShuffleAttention": lambda c: 6 * (c // (2 * 64)),
    # three 7x7 convs 2 -> 1 (no bias) + BN(1)
    "TripletAttention": lambda c: 3 * (2 * 49 + 2),
    "PolarizedSA_P": _polarized,
    "PolarizedSA_S": _polarized,
    "EPSA": lambda c: _epsa(c, (1, 4, 8, 16), c // 4 // 16),
    "EMAttention": lambda c: _ema(c, 32),  # G = 32 groups
    "SGE": lambda c: 2 * 64,  # per-group weight and bias, G = 64
    # 1x1 + BN, 3x3 + BN (bias-free convs), BN(x) + bias-free 1x1 SSE: 11C^2 + 6C
    "ParNetAttention": lambda c: (c * c + 2 * c) + (9 * c * c + 2 * c) + 2 * c + c * c,
    "LSKBlock": lambda c: 2 * (c * c + c) + _lsk_bare(c),  # LSKNet's residual form: proj_1 + LSK module + proj_2
    "LSKA": lambda c: 2 * (c * c + c) + _lska_bare(c),  # VAN-LSKA's residual form: proj_1 + LSKA(k=7) + proj_2
    # two bias-free 1x1 convs + BN, two biased depthwise strips of 11: 2C^2 + 28C
    "CAA": lambda c: 2 * (c * c + 2 * c) + 2 * (11 * c + c),
}

CLAMPED = {  # at SMALL_C = 24
    "ShuffleAttention": 6 * (24 // (2 * 12)),  # groups 64 -> 12 (largest divisor of C/2 <= G)
    # groups of the 5x5/7x7/9x9 convs 4/8/16 -> 3/6/6 (divisors of gcd(C, C/4) = 6); SE hidden 6 // 16 = 0 -> 1
    "EPSA": _epsa(24, (1, 3, 6, 6), 1),
    "EMAttention": _ema(24, 24),  # groups 32 -> 24 (largest divisor of C <= G)
    "SGE": 2 * 24,  # groups 64 -> 24 (largest divisor of C <= G)
}

FORMS = {
    ("PolarizedSA_P", "official"): lambda c: _polarized(c) - 2 * c,  # official PSA_p: no LayerNorm
    ("PolarizedSA_S", "official"): _polarized_s_official,
    ("EPSA", "official"): PAPER["EPSA"],  # the same layers, output in reverse scale order
    ("S2Attention", "paper"): PAPER["S2Attention"],  # sum descriptor, the same layers
    ("GAM", "yoloair"): lambda c: _gam(c, c // 4, 4),  # YOLOAir's group=True: groups = r = 4
}
