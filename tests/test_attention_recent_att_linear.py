"""Behaviour of the agent / linear attention modules of 2023-2024 that the shared matrix does not cover: exact
identity at init, the resampling matrices against torch's own ops, fused softmax against an explicit one in float64,
windows, fixed-size tables resized, RoPE, and fp16 agreeing with fp32 where the official code overflows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import models.attention.cascaded_group as cascaded_group
from models.attention._resize import adaptive_pool_matrix, bilinear_matrix
from models.attention.agent import AgentAttention
from models.attention.cascaded_group import CascadedGroupAttention
from models.attention.focused_linear import FocusedLinearAttention
from models.attention.mlla import MLLA, rope_2d
from models.attention.swiftformer import EfficientAdditiveAttention

pytestmark = pytest.mark.usefixtures("one_thread")

MODULES = {
    "AgentAttention": lambda: AgentAttention(32, num_heads=4, agent_num=9),
    "CascadedGroupAttention": lambda: CascadedGroupAttention(32),
    "EfficientAdditiveAttention": lambda: EfficientAdditiveAttention(32),
    "FocusedLinearAttention": lambda: FocusedLinearAttention(32, num_heads=4),
    "MLLA": lambda: MLLA(32, num_heads=4),
}


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


@pytest.mark.parametrize("name", sorted(MODULES))
def test_identity_at_init_is_exact(name):
    m = _randomised(MODULES[name]()).double().train()
    x = torch.randn(2, 32, 9, 5, dtype=torch.float64)
    assert not torch.allclose(m(x), x)
    assert m.init_identity() is True
    assert torch.equal(m(x), x)


def test_cascaded_group_attention_starts_as_the_identity_like_the_official_init():
    m = CascadedGroupAttention(32).train()
    x = torch.randn(2, 32, 9, 15)
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


@pytest.mark.parametrize("key_dim", [4, 8], ids=["E!=Ev", "E==Ev"])
def test_cascaded_group_attention_sdpa_equals_the_explicit_window_maps_in_float64(key_dim, monkeypatch):
    """Both paths (SDPA with the bias as its mask; the explicit maps CPU takes for small windows) give one result."""
    m = _randomised(CascadedGroupAttention(16, num_heads=2, key_dim=key_dim, kernels=(5, 3))).double().eval()
    x = torch.randn(2, 16, 11, 9, dtype=torch.float64)
    monkeypatch.setattr(cascaded_group, "explicit_is_faster", lambda *a, **k: True)
    explicit = m(x)
    monkeypatch.setattr(cascaded_group, "explicit_is_faster", lambda *a, **k: False)
    torch.testing.assert_close(m(x), explicit, rtol=0, atol=1e-12)


def test_cascaded_group_attention_windows_are_independent():
    """A 7 x 14 map is two 7 x 7 windows: in eval mode each half of the output is the module on that half alone."""
    m = _randomised(CascadedGroupAttention(16, num_heads=2, key_dim=4, kernels=(5, 3))).double().eval()
    with torch.no_grad():
        for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
            bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 16, 7, 14, dtype=torch.float64)
    y = m(x)
    torch.testing.assert_close(y[..., :7], m(x[..., :7]), rtol=0, atol=1e-12)
    torch.testing.assert_close(y[..., 7:], m(x[..., 7:]), rtol=0, atol=1e-12)


def test_focused_linear_attention_position_grid_is_used_as_is_at_its_own_size():
    m = _randomised(FocusedLinearAttention(16, num_heads=2, pos_size=5)).double()
    grid = m.positional_encoding
    torch.testing.assert_close(m._position(5, 5, grid), grid, rtol=0, atol=0)
    assert m._position(11, 7, grid).shape == (1, 77, 16)
    assert FocusedLinearAttention(16, pos_size=0).positional_encoding is None


@pytest.mark.parametrize("name", ["FocusedLinearAttention", "MLLA"])
def test_half_precision_agrees_with_float32(name):
    """phi(q) . mean phi(k) underflows fp16 and 1 / (0 + 1e-6) overflows it: the sums run in float32, so a
    model.half() forward matches float32 to fp16 precision, not merely stays finite."""
    m = _randomised(MODULES[name](), seed=1).eval()
    x = 10 * torch.randn(2, 32, 12, 10)
    with torch.no_grad():
        ref = m(x)
        half = m.half()(x.half()).float()
    assert torch.isfinite(half).all()
    assert (half - ref).abs().max() <= 2e-2 * ref.abs().max()


def test_rope_rotates_pairs_by_relative_offsets_only():
    """q~_i . k~_j depends on the offset between positions i and j (rows and columns), not on the positions; RoPE keeps
    each pair's norm; channels beyond 4 * (C // 4) stay as they are."""
    c, h, w = 16, 6, 5
    q, k = torch.randn(c, dtype=torch.float64), torch.randn(c, dtype=torch.float64)
    qr = rope_2d(q.expand(1, h * w, c), h, w).reshape(h, w, c)
    kr = rope_2d(k.expand(1, h * w, c), h, w).reshape(h, w, c)
    torch.testing.assert_close(qr[1, 2] @ kr[3, 1], qr[2, 3] @ kr[4, 2], rtol=0, atol=1e-6)  # angles in float32
    torch.testing.assert_close(qr.reshape(h * w, 8, 2).norm(dim=-1), q.reshape(8, 2).norm(dim=-1).expand(h * w, 8))
    t = torch.randn(1, h * w, 18)
    assert torch.equal(rope_2d(t, h, w)[..., 16:], t[..., 16:])
    assert MLLA(18, num_heads=2)(torch.randn(1, 18, 5, 3)).shape == (1, 18, 5, 3)


def test_additive_attention_token_weights_are_unit_norm():
    m = _randomised(EfficientAdditiveAttention(16))
    maps = m.attention_maps(torch.randn(2, 16, 7, 5))
    torch.testing.assert_close(maps["spatial"].square().sum((1, 2)), torch.ones(2))
