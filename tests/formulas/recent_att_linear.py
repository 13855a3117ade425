"""Linear and agent attention of 2023-2024: AgentAttention, CascadedGroupAttention, EfficientAdditiveAttention,
FocusedLinearAttention, MLLA (each as the attention half of its block: the norm and residual the block has)."""


def _agent(c, heads=8, agents=49, side=7, k=3):
    # q (C -> C) and kv (C -> 2C) with bias, proj (bias), depthwise k x k of V (bias),
    # two 7 x 7 bias tables and four side-long row/column tables per (head, agent)
    return (3 * c * c + 3 * c) + (c * c + c) + (k * k * c + c) + 2 * heads * agents * 49 + 4 * heads * agents * side


def _cga(c, heads=4, kd=16, window=7, kernels=(7, 5, 3, 3)):
    split = d = c // heads  # each head's input split and value width (attn_ratio = C / (kd * heads))
    per_head = [split * (2 * kd + d) + 2 * (2 * kd + d)  # bias-free 1x1 conv to q, k, v + BN
                + kd * k * k + 2 * kd for k in kernels[:heads]]  # depthwise k x k on q + BN
    # the heads, the output 1x1 conv (no bias) + BN, one bias per head and window offset (|dy|, |dx|)
    return sum(per_head) + (d * heads * c + 2 * c) + heads * window * window


def _additive(c, heads=1):
    d = c * heads  # inner width: token_dim (= C) x heads
    # to_query, to_key (bias), w_a, proj (bias), final (D -> C, bias)
    return 2 * (c * d + d) + d + (d * d + d) + (d * c + c)


def _flatten(c, heads=8, k=5, side=7):
    d = c // heads
    # q (C -> C) and kv (C -> 2C) with bias, proj (bias), the depthwise k x k on one head's V (shared by the heads,
    # bias), the per-channel focusing scale, the position encoding (a side x side grid of C-vectors)
    return (3 * c * c + 3 * c) + (c * c + c) + (k * k * d + d) + c + side * side * c


def _mlla(c):
    # in_proj, act_proj, out_proj (bias), the depthwise 3x3 before the attention and LePE's (bias), qk (C -> 2C, bias)
    return 3 * (c * c + c) + 2 * (9 * c + c) + (2 * c * c + 2 * c)


PAPER = {
    "AgentAttention": _agent,
    "CascadedGroupAttention": _cga,
    "EfficientAdditiveAttention": _additive,
    "FocusedLinearAttention": _flatten,
    "MLLA": _mlla,
}

DEPARTURES = {
    "AgentAttention": {"the Agent-PVT block's pre-norm LayerNorm is part of the module": lambda c: 2 * c},
    "EfficientAdditiveAttention": {"the SwiftFormer encoder's layer scale is part of the module": lambda c: c},
    "FocusedLinearAttention": {"the FLatten-PVT block's pre-norm LayerNorm is part of the module": lambda c: 2 * c},
    "MLLA": {
        "the MLLA block's pre-norm LayerNorm is part of the module": lambda c: 2 * c,
        "the MLLA block's two conditional position encodings (depthwise 3x3, bias) are part of it": lambda c: 20 * c,
    },
}
