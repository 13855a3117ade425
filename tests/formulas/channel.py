"""SK, BAM, GCBlock, SOCA, NAM, EffectiveSE, GatherExcite, ELA, CPCA, MLCA.

Each line is the paper's parameter count written as its terms (biases and norm affines included), with the
same width/group clamps the modules apply (see each module's docstring for the departures).
"""

import math


def _hidden(c, r):
    """Hidden width of a bottleneck: max(C // r, min(8, C)) (models.attention._common.reduced_channels)."""
    return max(int(c // r), min(8, c))


def _divisor_at_most(c, g):
    g = max(1, min(int(g), c))
    while c % g:
        g -= 1
    return g


def _eca_k(c, gamma=2, b=1):
    t = int(abs((math.log2(c) + b) / gamma))
    return t if t % 2 else t + 1


def _sk(c, groups=32, r=16, L=32, m=2):
    g, d = _divisor_at_most(c, groups), max(c // r, L)
    convs = m * 9 * c * (c // g)  # M grouped 3x3 convs, no bias
    bns = m * 2 * c  # their BN affines
    fuse = c * d + d  # W: C -> d; bias instead of the paper's BN on z (2d)
    select = m * d * c  # A_m: d -> C, no bias
    return convs + bns + fuse + select


def _bam(c, r=16, n_dil=2):
    h = _hidden(c, r)
    channel = (c * h + h) + (h * c + c)  # FC C->C/r, FC C/r->C (biases); no BN on the pooled vector
    spatial = (c * h + h) + 2 * h  # 1x1 reduce + BN
    spatial += n_dil * (9 * h * h + h + 2 * h)  # dilated 3x3 + BN, twice
    spatial += h + 1  # 1x1 C/r -> 1
    return channel + spatial


def _gc(c, r=16):
    h = _hidden(c, r)
    return (c + 1) + (c * h + h) + 2 * h + (h * c + c)  # mask conv, conv1, LayerNorm([h,1,1]), conv2


def _cpca(c, r=4):
    h = _hidden(c, r)
    proj = c * c + c  # the shared 1x1 conv P
    prior = (c * h + h) + (h * c + c)  # shared MLP of the channel prior
    dw = (25 * c + c) + sum(2 * (k * c + c) for k in (7, 11, 21))  # DW 5x5 and the 1xk / kx1 strip pairs
    return proj + prior + dw


PARAMS = {
    "SK": _sk,
    "BAM": _bam,
    "GCBlock": _gc,
    # 2C^2/r + C/r + C
    "SOCA": lambda c: (c * _hidden(c, 16) + _hidden(c, 16)) + (_hidden(c, 16) * c + c),
    # BN affine gamma, beta
    "NAM": lambda c: 2 * c,
    # one C x C FC with bias
    "EffectiveSE": lambda c: c * c + c,
    # default: parameter-free global gather + excite MLP (C -> C/16 -> C, biases)
    "GatherExcite": lambda c: (c * _hidden(c, 16) + _hidden(c, 16)) + (_hidden(c, 16) * c + c),
    # depthwise Conv1d k*C (no bias) + GroupNorm affine 2C
    "ELA": lambda c: 7 * c + 2 * c,
    "CPCA": _cpca,
    # two bias-free Conv1d of the ECA kernel size
    "MLCA": lambda c: 2 * _eca_k(c),
}
