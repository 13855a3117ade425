"""Linear and agent attention of 2023-2024: AgentAttention, CascadedGroupAttention, EfficientAdditiveAttention,
FocusedLinearAttention, MLLA (each as the attention half of its block: the norm and residual the block has)."""


def _agent(c, heads=8, agents=49, side=7, k=3):
    # q (C -> C) and kv (C -> 2C) with bias, proj (bias), depthwise k x k of V (bias),
    # two 7 x 7 bias tables and four side-long row/column tables per (head, agent)
    return (3 * c * c + 3 * c) + (c * c + c) + (k * k * c + c) + 2 * heads * agents * 49 + 4 * heads * agents * side


PAPER = {
    "AgentAttention": _agent,
}

DEPARTURES = {
    "AgentAttention": {"the Agent-PVT block's pre-norm LayerNorm is part of the module": lambda c: 2 * c},
}
