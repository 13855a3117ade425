"""SK, BAM, GCBlock, SOCA, NAM, EffectiveSE, GatherExcite, ELA, CPCA, MLCA."""

from tests.formulas.basic import _eca_k, _mlp


def _sk(c, g, d, m=2):
    convs = m * 9 * c * (c // g)  # M grouped 3x3 convs (dilation 1, 2), no bias
    bns = m * 2 * c  # their BN affines
    fuse = c * d + 2 * d  # W: C -> d, then BN on z
    select = m * d * c  # A_m: d -> C, no bias
    return convs + bns + fuse + select


def _sk_eap(c, d, kernels=(1, 3, 5, 7)):
    convs = sum(k * k * c * c + c for k in kernels)  # EAP's dense biased branches: 84 C^2 + 4C
    bns = len(kernels) * 2 * c
    return convs + bns + (c * d + d) + len(kernels) * (d * c + c)  # biased fc C -> d, one biased d -> C per branch


def _bam(c, h, n_dil=2):
    # the official code's count (the paper gives none): FC C -> C/r, BatchNorm1d on the hidden vector, FC C/r -> C
    channel = (c * h + h) + 2 * h + (h * c + c)
    spatial = (c * h + h) + 2 * h  # 1x1 reduce + BN
    spatial += n_dil * (9 * h * h + h + 2 * h)  # dilated 3x3 + BN, twice
    spatial += h + 1  # 1x1 C/r -> 1
    return channel + spatial


def _gc(c, h):
    return (c + 1) + (c * h + h) + 2 * h + (h * c + c)  # mask conv C -> 1, conv1, LayerNorm([h, 1, 1]), conv2


def _ela(c, k=7):
    return k * c + 2 * c  # depthwise Conv1d (no bias) + GroupNorm affine


def _cpca(c, h):
    proj = c * c + c  # the shared 1x1 conv P
    prior = _mlp(c, h)  # shared MLP of the channel prior, C -> C/4 -> C
    dw = (25 * c + c) + sum(2 * (k * c + c) for k in (7, 11, 21))  # DW 5x5 and the 1xk / kx1 strip pairs
    return proj + prior + dw


PAPER = {
    "SK": lambda c: _sk(c, 32, max(c // 16, 32)),  # G = 32, d = max(C / r, L), r = 16, L = 32
    "BAM": lambda c: _bam(c, c // 16),
    "GCBlock": lambda c: _gc(c, c // 16),
    "SOCA": lambda c: _mlp(c, c // 16),  # 2C^2/r + C/r + C
    "NAM": lambda c: 2 * c,  # BN affine gamma, beta
    "EffectiveSE": lambda c: c * c + c,  # one C x C FC with bias
    "GatherExcite": lambda c: _mlp(c, c // 16),  # parameter-free global gather + excite MLP C -> C/16 -> C
    "ELA": _ela,
    "CPCA": lambda c: _cpca(c, c // 4),
    "MLCA": lambda c: 2 * _eca_k(c),  # two bias-free Conv1d of the ECA kernel size
}

DEPARTURES = {
    "SK": {"no BN on z, a bias on W instead (BN raises at batch 1): C*d + d, not C*d + 2d":
           lambda c: -max(c // 16, 32)},
    "BAM": {"no BatchNorm1d on the hidden (B, C/r) vector (the official code's; form='official' has it)":
            lambda c: -2 * (c // 16)},
}

CLAMPED = {  # at SMALL_C = 24
    "SK": _sk(24, 24, 32) - 32,  # groups 32 -> 24 (largest divisor of C <= G); d = L = 32; no BN on z (-d)
    "BAM": _bam(24, 8) - 2 * 8,  # hidden width floored at min(8, C): 24 // 16 = 1 -> 8; no BN on the hidden vector
    "GCBlock": _gc(24, 8),  # hidden width floored at min(8, C): 24 // 16 = 1 -> 8
    "SOCA": _mlp(24, 8),  # hidden width floored at min(8, C): 24 // 16 = 1 -> 8
    "GatherExcite": _mlp(24, 8),  # hidden width floored at min(8, C): 24 // 16 = 1 -> 8
    "ELA": _ela(24),  # GroupNorm groups 16 -> 12 (two channels a group at least); the count does not change
    "CPCA": _cpca(24, 8),  # channel-prior hidden width floored at min(8, C): 24 // 4 = 6 -> 8
}

FORMS = {  # the official forms: exact widths C // r, the official layers
    ("SK", "official"): PAPER["SK"],  # BN on z, W without bias
    ("SK", "eap"): lambda c: _sk_eap(c, max(c // 16, 32)),
    ("BAM", "official"): PAPER["BAM"],  # + BatchNorm1d on the hidden vector
    ("BAM", "official_global"): PAPER["BAM"],
    ("GCBlock", "official"): PAPER["GCBlock"],
    ("SOCA", "official"): PAPER["SOCA"],
    ("GatherExcite", "timm"): lambda c: _mlp(c, max(1, int(c / 16 + 0.5))),  # timm rounds C/16 half up
    ("GatherExcite", "official"): lambda c: 0,  # the authors' parameter-free GE-theta-minus
}
