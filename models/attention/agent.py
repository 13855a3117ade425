"""Agent Attention: softmax attention through a few pooled agent tokens (the attention sub-layer of an Agent-PVT block).

Han, Ye, Han, Xia, Pan, Wan, Song, Huang, "Agent Attention: On the Integration of Softmax and Linear Attention",
ECCV 2024, arXiv:2312.08874. Official code: LeapLabTHU/Agent-Attention (``agent_transformer/models/agent_pvt.py``
for classification, ``downstream/detection/mmdet/models/backbones/agent_pvt.py`` for detection; ``AgentAttention``).

Tokens t = LN(x); q, k, v = linear projections of t (bias), split into m heads of d = C/m. The n = p x p agent
tokens A are q average-pooled to a p x p grid. Agent aggregation, then agent broadcast (softmax over the last axis):

    V_A = softmax(d^-1/2 A K^T + B_1) V          (n x N: each agent attends to every token)
    O   = softmax(d^-1/2 Q A^T + B_2) V_A + DWC(V)   (N x n: each token attends to the agents)

B_1, B_2 are the agent biases: a 7 x 7 table per (head, agent) resized bilinearly to H x W, plus per-(head, agent)
row and column tables of ``bias_size`` entries, resized the same way. DWC is a depthwise 3 x 3 conv of V. y = x +
proj(O): the Agent-PVT block's attention half (pre-norm LayerNorm, eps 1e-6, and the residual are inside this
module; the block's MLP is not). Agent attention equals a generalised linear attention with phi(q) = softmax(q A^T):
cost O(N n d), so this is not a dense module.

Departures from the paper / official code:
- Any H, W: the row/column bias tables are sized by the pretraining resolution (``bias_size``, the official
  ``num_patches ** 0.5``) and are resized bilinearly to H x W, as the official detection code does (its
  classification code adds them without resizing, so it runs only at that size, where resizing is the identity:
  both give the same numbers there). The 7 x 7 tables are resized to H x W in both official codes.
- Pooling and resizing are matrix products (exact ``AdaptiveAvgPool2d`` / ``F.interpolate(bilinear)``): deterministic
  on CUDA and dynamic in ONNX; on maps smaller than p x p the agents repeat pixels, as adaptive pooling does.
- Both softmax steps run through ``scaled_dot_product_attention`` with the biases as its additive mask.
- The detection code can pool to a different agent grid than the tables (``downstream_agent_shape``); here the grid
  is the tables' p x p. Heads clamp to a divisor of C (noted in ``build_notes``).

Verified against the official detection class on an 11x7 map and the classification class at its own size
(tests/fixtures/golden/AgentAttention*.npz).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import at_least_fp32, divisor_at_most
from models.attention._resize import adaptive_pool_matrix, bilinear_matrix
from models.registry.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "AgentAttention",
    category="self-attention",
    paper="Agent Attention: On the Integration of Softmax and Linear Attention",
    arxiv="2312.08874",
    year=2024,
    placement="backbone_end",
    notes="Official classification code sizes the agent row/column biases to one map (num_patches) and uses "
    "AdaptiveAvgPool2d; ports copy that (fixed size, raises elsewhere). Here: biases resized bilinearly to H x W as "
    "the official detection code does, matrix pooling, pre-norm residual; N x 49 maps, not dense.",
    renamed={"heads": "num_heads", "n_heads": "num_heads"},
)
class AgentAttention(AttentionModule):
    """x + proj(AgentAttention(LN(x))): 8 heads, 49 agents (7 x 7 pooled queries), 3 x 3 DWC of V."""

    def __init__(self, c1: int, num_heads: int = 8, agent_num: int = 49, bias_size: int = 7, kernel_size: int = 3,
                 qkv_bias: bool = True):
        super().__init__()
        self.heads = self.clamp("heads", num_heads, divisor_at_most(c1, num_heads), f"C={c1}")
        self.d = c1 // self.heads
        self.pool = math.isqrt(int(agent_num))
        if self.pool < 1 or self.pool * self.pool != agent_num:
            raise ValueError(f"AgentAttention: agent_num must be a square (the agents are a p x p grid), "
                             f"got {agent_num}")
        if bias_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"AgentAttention: bias_size >= 1 and an odd kernel_size, got {bias_size}, {kernel_size}")
        self.agents = int(agent_num)
        m, n, s = self.heads, self.agents, int(bias_size)
        self.norm = nn.LayerNorm(c1, eps=1e-6)
        self.q = nn.Linear(c1, c1, bias=qkv_bias)
        self.kv = nn.Linear(c1, 2 * c1, bias=qkv_bias)
        self.proj = nn.Linear(c1, c1)
        self.dwc = nn.Conv2d(c1, c1, kernel_size, padding=kernel_size // 2, groups=c1)
        # agent biases (official init: truncated normal, std 0.02)
        self.an_bias = nn.Parameter(torch.zeros(m, n, 7, 7))  # agents -> tokens, 7 x 7 resized to H x W
        self.na_bias = nn.Parameter(torch.zeros(m, n, 7, 7))  # tokens -> agents
        self.ah_bias = nn.Parameter(torch.zeros(m, n, s))  # agents -> token rows
        self.aw_bias = nn.Parameter(torch.zeros(m, n, s))  # agents -> token columns
        self.ha_bias = nn.Parameter(torch.zeros(m, s, n))  # token rows -> agents
        self.wa_bias = nn.Parameter(torch.zeros(m, s, n))  # token columns -> agents
        for p in (self.an_bias, self.na_bias, self.ah_bias, self.aw_bias, self.ha_bias, self.wa_bias):
            nn.init.trunc_normal_(p, std=0.02)

    def _biases(self, h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, m, n, N) bias of the agent aggregation and (1, m, N, n) bias of the agent broadcast at h x w."""
        f = torch.empty((), dtype=torch.promote_types(like.dtype, torch.float32), device=like.device)  # tables' dtype
        rh7, rw7 = bilinear_matrix(h, 7, f), bilinear_matrix(w, 7, f)
        s = self.ah_bias.shape[-1]
        rh, rw = bilinear_matrix(h, s, f), bilinear_matrix(w, s, f)
        an, na = self.an_bias.to(f.dtype), self.na_bias.to(f.dtype)
        # bilinear resizing is linear and keeps constants: resize(row table + column table) = resized row + column
        to_tokens = torch.einsum("ys,xt,mast->mayx", rh7, rw7, an)
        to_tokens = to_tokens + (rh @ self.ah_bias.to(f.dtype).unsqueeze(-1)).squeeze(-1)[..., :, None]
        to_tokens = to_tokens + (rw @ self.aw_bias.to(f.dtype).unsqueeze(-1)).squeeze(-1)[..., None, :]
        to_agents = torch.einsum("ys,xt,mast->myxa", rh7, rw7, na)
        to_agents = to_agents + (rh @ self.ha_bias.to(f.dtype))[:, :, None, :]
        to_agents = to_agents + (rw @ self.wa_bias.to(f.dtype))[:, None, :, :]
        m, n = self.heads, self.agents
        return (to_tokens.reshape(1, m, n, h * w).to(like.dtype), to_agents.reshape(1, m, h * w, n).to(like.dtype))

    def _qkv_agents(self, x: torch.Tensor):
        """Heads of q, k, v (B, m, N, d), the agents (B, m, n, d) and v as a map (B, C, H, W)."""
        b, c, h, w = x.shape
        m, d, p = self.heads, self.d, self.pool
        t = self.norm(x.permute(0, 2, 3, 1))  # (B, H, W, C)
        q = self.q(t)
        k, v = self.kv(t).chunk(2, -1)
        # agents: q average-pooled to p x p (adaptive pooling as two small matrices)
        ph, pw = adaptive_pool_matrix(h, p, q), adaptive_pool_matrix(w, p, q)
        agents = torch.matmul(ph, q.reshape(b, h, w * c)).reshape(b * p, w, c)
        agents = torch.matmul(pw, agents).reshape(b, p * p, m, d).transpose(1, 2)

        def heads(t_: torch.Tensor) -> torch.Tensor:
            return t_.reshape(b, h * w, m, d).transpose(1, 2)

        return heads(q), heads(k), heads(v), agents, v.permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v, agents, v_map = self._qkv_agents(x)
        to_tokens, to_agents = self._biases(h, w, q)
        scale = self.d**-0.5
        agent_v = F.scaled_dot_product_attention(agents, k, v, attn_mask=to_tokens, scale=scale)  # (B, m, n, d)
        out = F.scaled_dot_product_attention(q, agents, agent_v, attn_mask=to_agents, scale=scale)  # (B, m, N, d)
        out = out.transpose(1, 2).reshape(b, h, w, c) + self.dwc(v_map).permute(0, 2, 3, 1)
        return x + self.proj(out).permute(0, 3, 1, 2)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The attention each position receives from the agents (aggregation step), mean over agents and heads."""
        b, _, h, w = x.shape
        q, k, v, agents, _ = self._qkv_agents(x)
        to_tokens, _ = self._biases(h, w, q)
        logits = at_least_fp32(torch.matmul(agents, k.transpose(-1, -2))) * self.d**-0.5 + to_tokens
        return {"spatial": logits.softmax(-1).mean((1, 2)).reshape(b, h, w),
                "spatial_how": "agent aggregation attention each position receives, mean over agents and heads"}

    def init_identity(self) -> bool:
        """Zero the output projection: the module then computes exactly x."""
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        return True

    def attention_map_elements(self, h: int, w: int) -> int:
        """Both (heads, n, N) agent maps of one sample (not quadratic in N)."""
        return 2 * self.heads * self.agents * h * w
