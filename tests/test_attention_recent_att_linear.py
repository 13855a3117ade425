"""Behaviour of the linear/agent attention modules of 2023-2024 that the shared matrix does not cover: identity at
init, the resampling matrices against torch's own ops, the fused softmax against an explicit one in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.attention._resize import adaptive_pool_matrix, bilinear_matrix
from models.attention.agent import AgentAttention

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomised(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


@pytest.mark.parametrize("h, w", [(1, 1), (3, 2), (7, 7), (11, 7), (6, 10), (20, 12)])
def test_resampling_matrices_equal_torch_interpolate_and_adaptive_pooling(h, w):
    """Smaller, equal and larger than the 7 x 7 table / 3 x 3 grid, in float64."""
    table = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    ours = torch.einsum("ys,xt,abst->abyx", bilinear_matrix(h, 7, table), bilinear_matrix(w, 7, table), table)
    torch.testing.assert_close(ours, F.interpolate(table, size=(h, w), mode="bilinear"), rtol=0, atol=1e-13)
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    pooled = torch.einsum("iy,jx,abyx->abij", adaptive_pool_matrix(h, 3, x), adaptive_pool_matrix(w, 3, x), x)
    torch.testing.assert_close(pooled, F.adaptive_avg_pool2d(x, (3, 3)), rtol=0, atol=1e-13)


@pytest.mark.parametrize("make", [lambda: AgentAttention(32, num_heads=4, agent_num=9)], ids=["AgentAttention"])
def test_identity_at_init_is_exact(make):
    m = _randomised(make()).double().train()
    x = torch.randn(2, 32, 9, 5, dtype=torch.float64)
    assert not torch.allclose(m(x), x)
    assert m.init_identity() is True
    assert torch.equal(m(x), x)


def test_agent_attention_sdpa_equals_the_explicit_softmax_in_float64():
    m = _randomised(AgentAttention(32, num_heads=4, agent_num=9, bias_size=5)).double()
    x = torch.randn(2, 32, 11, 7, dtype=torch.float64)
    b, c, h, w = x.shape
    q, k, v, agents, v_map = m._qkv_agents(x)
    to_tokens, to_agents = m._biases(h, w, q)
    s = m.d**-0.5
    agent_v = ((agents @ k.transpose(-1, -2)) * s + to_tokens).softmax(-1) @ v
    out = ((q @ agents.transpose(-1, -2)) * s + to_agents).softmax(-1) @ agent_v
    out = out.transpose(1, 2).reshape(b, h, w, c) + m.dwc(v_map).permute(0, 2, 3, 1)
    explicit = x + m.proj(out).permute(0, 3, 1, 2)
    torch.testing.assert_close(m(x), explicit, rtol=0, atol=1e-12)


def test_agent_attention_needs_a_square_agent_count():
    with pytest.raises(ValueError, match="agent_num must be a square"):
        AgentAttention(32, agent_num=50)
