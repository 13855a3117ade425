"""SE, CBAM, ECA, Coordinate Attention (hidden widths clamped as documented in each module)."""

import math


def _hidden(c, r=16):
    return max(c // r, min(8, c))


def _eca_k(c):
    t = int(abs((math.log2(c) + 1) / 2))
    return t if t % 2 else t + 1


PARAMS = {
    # 2C^2/r plus the biases of the two FC layers
    "SE": lambda c: 2 * c * _hidden(c) + _hidden(c) + c,
    # shared MLP 2C^2/r (+ biases), 7x7 conv on 2 maps (98), BN on 1 map (2)
    "CBAM": lambda c: 2 * c * _hidden(c) + _hidden(c) + c + 98 + 2,
    # one bias-free 1D kernel of adaptive size
    "ECA": lambda c: _eca_k(c),
    # conv1 C*mip + mip, BN 2*mip, two heads mip*C + C each; mip = max(8, C//32)
    "CoordAtt": lambda c: c * max(8, c // 32) + max(8, c // 32) * 3 + 2 * (max(8, c // 32) * c + c),
}
