"""SCSA, CAFM, MSCA, SEAM, MultiSEAM (issue 22, convolution-based attention of 2022-2025)."""


def _scsa(c):
    # four biased depthwise 1-D convs on C/4 channels each (kernels 3, 5, 7, 9), shared by the H and W directions;
    # GroupNorm(4, C) per direction, GroupNorm(1, C) before the channel self-attention; per-channel q, k, v (no bias)
    return (c // 4) * (3 + 5 + 7 + 9) + c + 2 * (2 * c) + 2 * c + 3 * c


PAPER = {
    "SCSA": _scsa,  # 16C
}

FORMS = {
    ("SCSA", "official"): _scsa,  # the same layers, floor-mode pooling
}
