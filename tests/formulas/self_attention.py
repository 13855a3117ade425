"""Self-attention family: DANet, CrissCross, DoubleAttention, NonLocal, ExternalAttention, CoT,
ResidualAttention (RAN), BiLevelRoutingAttention, BoTMHSA, ACmix, DAttention."""


def _qkv_residual(c, q):
    return 2 * (c * q + q) + (c * c + c)  # Q, K (C -> C/8, bias), V (C -> C, bias)


def _double_attention(c, m):
    return 3 * (c * m + m) + (m * c + c)  # A, B, V (C -> c_m = c_n, bias) + reconstruct (c_m -> C, bias)


def _cot(c, k=3, g=4, sp=8):
    kk = k * k
    wc = c // sp
    mid = c // 2
    a = max(c * 2 // 4, 32)  # the official fusion width max(C * radix / reduction, 32)
    key = kk * c * (c // g) + 2 * c  # grouped kxk conv (no bias) + BN
    embed = 2 * c * mid + 2 * mid + (mid * kk * wc + kk * wc) + 2 * kk * wc  # 1x1 + BN, 1x1 (bias) + GN
    value = c * c + 2 * c  # 1x1 (no bias) + BN
    bn = 2 * c  # BN after the local aggregation
    fuse = (c * a + a) + 2 * a + (a * 2 * c + 2 * c)  # 1x1 (bias), norm, 1x1 (bias) to radix * C
    return key + embed + value + bn + fuse


def _ran(c, p=1, t=2, r=1):
    m = c // 4
    unit = 2 * c + c * m + 2 * m + 9 * m * m + 2 * m + m * c  # pre-activation bottleneck, no biases
    units = 2 * p + t + 2 * r  # pre + post, trunk, one mask level with 2r units
    head = 2 * c + c * c + 2 * c + c * c  # BN-ReLU-1x1-BN-ReLU-1x1
    return units * unit + head


def _bra(c, lepe=5):
    qk = c
    # qkv Linear (C -> 2qk + C, bias) + wo Linear (bias) + depthwise LCE conv (bias)
    return (c * (2 * qk + c) + 2 * qk + c) + (c * c + c) + (lepe * lepe * c + c)


def _bot(c, heads=4, size=32):
    d = c // heads
    # bias-free q, k, v projections + BoTNet's relative tables for a size x size map ((2H - 1) x d and (2W - 1) x d)
    return 3 * c * c + 2 * (2 * size - 1) * d


def _acmix(c, heads=4, k_conv=3):
    d = c // heads
    kk = k_conv * k_conv
    # q, k, v (bias) + conv_p (2 -> d, bias) + fc (3m -> kk, no bias) + dep_conv (kk*d -> C, groups d, bias) + rates
    return 3 * (c * c + c) + (2 * d + d) + 3 * heads * kk + (c * kk * kk + c) + 2


def _dat(c, heads=8, groups=4, k=3):
    cg = c // groups
    # q, k, v, out 1x1 convs (bias) + offset net (depthwise kxk with bias, LayerNorm, bias-free 1x1 to 2)
    return 4 * (c * c + c) + (k * k * cg + cg) + 2 * cg + 2 * cg


PAPER = {
    "DANet": lambda c: _qkv_residual(c, c // 8) + 1 + 1,  # PAM Q/K/V + gamma (PAM) + beta (CAM, parameter-free)
    "CrissCross": lambda c: _qkv_residual(c, c // 8) + 1,  # Q/K/V + gamma, shared by the R = 2 recurrences
    "DoubleAttention": lambda c: _double_attention(c, c // 4),
    # theta, phi, g (C -> C/2, bias) + W_z (C/2 -> C, bias) + BN affine
    "NonLocal": lambda c: 3 * (c * (c // 2) + c // 2) + ((c // 2) * c + c) + 2 * c,
    # conv_in (C^2 + C) + M_k (S*C) + M_v (S*C) + conv_out (C^2) + BN (2C), S = 64
    "ExternalAttention": lambda c: (c * c + c) + 2 * 64 * c + c * c + 2 * c,
    "CoT": _cot,
    "ResidualAttention": _ran,
    "BiLevelRoutingAttention": _bra,
    "BoTMHSA": _bot,
    "ACmix": _acmix,
    "DAttention": _dat,
}

DEPARTURES = {
    "BiLevelRoutingAttention": {"the BiFormer block's pre-norm LayerNorm is part of the module": lambda c: 2 * c},
    "DAttention": {
        "the DAT block's pre-norm LayerNorm is part of the module": lambda c: 2 * c,
        "dwc_pe (depthwise 3x3 of q, biased) instead of the size-bound relative position bias table": lambda c: 10 * c,
    },
}

CLAMPED = {  # at SMALL_C = 24
    "DoubleAttention": _double_attention(24, 8),  # c_m = c_n floored at min(8, C): 24 // 4 = 6 -> 8
}

FORMS = {
    ("ExternalAttention", "official"): lambda c: PAPER["ExternalAttention"](c) - 64 * c,  # M_v tied to M_k^T
    ("CoT", "official"): _cot,  # BatchNorm2d in the fusion (2C' affine, as the GroupNorm)
    ("ResidualAttention", "official"): _ran,  # only the mask pooling differs
    # the Caffe2 code's input max-pool, logit scale and BN eps: no parameter differs
    ("NonLocal", "official"): PAPER["NonLocal"],
    ("ACmix", "official"): lambda c: _acmix(c) - c,  # the official dep_conv has no bias
    # the official sub-layer with its half-pixel reference points; pre-norm and dwc_pe as in the default form
    ("DAttention", "official"): lambda c: _dat(c) + 2 * c + 10 * c,
}
