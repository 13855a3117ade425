"""Self-attention family: DANet, CrissCross, DoubleAttention, NonLocal, ExternalAttention, CoT,
ResidualAttention (RAN), BiLevelRoutingAttention, BoTMHSA, ACmix, DAttention.

Written as the papers' terms (weights + biases + norm affine), with the same width clamps as the modules.
"""


def _div_at_most(c, g):
    g = max(1, min(g, c))
    while c % g:
        g -= 1
    return g


def _danet(c):
    q = max(c // 8, 1)
    # PAM: Q, K (C -> C/8, bias), V (C -> C, bias); gamma (PAM) + beta (CAM)
    return 2 * (c * q + q) + (c * c + c) + 1 + 1


def _criss_cross(c):
    q = max(c // 8, 1)
    # Q, K (C -> C/8, bias), V (C -> C, bias), gamma; shared over the R = 2 recurrences
    return 2 * (c * q + q) + (c * c + c) + 1


def _double_attention(c):
    m = max(c // 4, min(8, c))
    # A, B, V (C -> c_m = c_n, bias) + reconstruct (c_m -> C, bias)
    return 3 * (c * m + m) + (m * c + c)


def _non_local(c):
    i = max(c // 2, 1)
    # theta, phi, g (C -> C/2, bias) + W_z (C/2 -> C, bias) + BN affine
    return 3 * (c * i + i) + (i * c + c) + 2 * c


def _external(c, s=64):
    # conv_in (C^2 + C) + M_k (S*C) + M_v (S*C) + conv_out (C^2) + BN (2C)
    return (c * c + c) + 2 * s * c + c * c + 2 * c


def _cot(c, k=3):
    kk = k * k
    g = _div_at_most(c, 4)
    wc = c // _div_at_most(c, 8)
    mid = max(c // 2, 1)
    a = max(c * 2 // 4, 32)
    key = kk * c * (c // g) + 2 * c  # grouped kxk conv (no bias) + BN
    embed = 2 * c * mid + 2 * mid + (mid * kk * wc + kk * wc) + 2 * kk * wc  # 1x1 + BN, 1x1 (bias) + GN
    value = c * c + 2 * c  # 1x1 (no bias) + BN
    bn = 2 * c  # BN after the local aggregation
    fuse = (c * a + a) + 2 * a + (a * 2 * c + 2 * c)  # 1x1 (bias), norm, 1x1 (bias) to radix * C
    return key + embed + value + bn + fuse


def _ran(c, p=1, t=2, r=1):
    m = max(c // 4, 1)
    unit = 2 * c + c * m + 2 * m + 9 * m * m + 2 * m + m * c  # pre-activation bottleneck, no biases
    units = 2 * p + t + 2 * r  # pre + post, trunk, one mask level with 2r units
    head = 2 * c + c * c + 2 * c + c * c  # BN-ReLU-1x1-BN-ReLU-1x1
    return units * unit + head


def _bra(c, lepe=5):
    qk = c
    # LayerNorm + qkv Linear (C -> 2qk + C, bias) + wo Linear (bias) + depthwise LCE conv (bias)
    return 2 * c + (c * (2 * qk + c) + 2 * qk + c) + (c * c + c) + (lepe * lepe * c + c)


def _bot(c, heads=4, rel_size=32):
    d = c // _div_at_most(c, heads)
    # bias-free q, k, v projections + one relative table per axis (2R - 1 offsets x d)
    return 3 * c * c + 2 * (2 * rel_size - 1) * d


def _acmix(c, heads=4, k_conv=3):
    m = _div_at_most(c, heads)
    d = c // m
    kk = k_conv * k_conv
    # q, k, v (bias) + conv_p (2 -> d, bias) + fc (3m -> kk, no bias) + dep_conv (kk*d -> C, groups d, bias) + rates
    return 3 * (c * c + c) + (2 * d + d) + 3 * m * kk + (c * kk * kk + c) + 2


def _dat(c, heads=8, groups=4, k=3):
    m = _div_at_most(c, heads)
    cg = c // _div_at_most(m, groups)
    # block LayerNorm + q, k, v, out 1x1 convs (bias) + offset net (depthwise kxk with bias, LayerNorm,
    # bias-free 1x1 to 2) + depthwise 3x3 position encoding (bias)
    return 2 * c + 4 * (c * c + c) + (k * k * cg + cg) + 2 * cg + 2 * cg + (9 * c + c)


PARAMS = {
    "DANet": _danet,
    "CrissCross": _criss_cross,
    "DoubleAttention": _double_attention,
    "NonLocal": _non_local,
    "ExternalAttention": _external,
    "CoT": _cot,
    "ResidualAttention": _ran,
    "BiLevelRoutingAttention": _bra,
    "BoTMHSA": _bot,
    "ACmix": _acmix,
    "DAttention": _dat,
}
