"""Behaviour of the hybrid-family attention modules that the shared matrix cannot see: each module
computes its paper's formula (checked against a direct, unoptimised computation), clamps group counts
with a note, and the residual forms can start as the identity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.attention.caa import CAA
from models.attention.ema import EMAttention
from models.attention.epsa import EPSA
from models.attention.gam import GAM
from models.attention.lsk import LSKBlock
from models.attention.lska import LSKA
from models.attention.parnet import ParNetAttention
from models.attention.polarized import PolarizedSA_P, PolarizedSA_S
from models.attention.s2_mlp import S2Attention, spatial_shift
from models.attention.sge import SGE
from models.attention.shuffle_attention import ShuffleAttention
from models.attention.simam import SimAM
from models.attention.triplet import TripletAttention


def randomise(m: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


def test_simam_matches_the_energy_formula_and_survives_fp16():
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    n = 5 * 7 - 1
    d = (x - x.mean((2, 3), keepdim=True)) ** 2
    ref = x * torch.sigmoid(d / (4 * (d.sum((2, 3), keepdim=True) / n + 1e-4)) + 0.5)
    torch.testing.assert_close(SimAM(8)(x), ref)
    # 1x1 map: zero variance, gate sigmoid(0.5) (the paper's n = 0 gives NaN)
    one = torch.randn(1, 8, 1, 1)
    torch.testing.assert_close(SimAM(8)(one), one * torch.sigmoid(torch.tensor(0.5)))
    # activations of ~300 at 40x40: the fp16 sum of squares would overflow; statistics are fp32
    big = 300 * torch.randn(1, 8, 40, 40)
    y16 = SimAM(8).half()(big.half())
    assert torch.isfinite(y16).all()
    torch.testing.assert_close(y16.float(), SimAM(8)(big.half().float()), atol=0.5, rtol=2e-3)


def test_sge_matches_official_formula_and_starts_at_sigmoid_one():
    m = randomise(SGE(32, groups=8)).double()
    x = torch.randn(2, 32, 6, 5, dtype=torch.float64)
    g = x.reshape(16, 4, 6, 5)
    t = (g * g.mean((2, 3), keepdim=True)).sum(1).reshape(16, -1)
    t = (t - t.mean(1, keepdim=True)) / (t.std(1, keepdim=True) + 1e-5)
    t = t.reshape(2, 8, 6, 5) * m.weight + m.bias
    ref = (g * torch.sigmoid(t).reshape(16, 1, 6, 5)).reshape(x.shape)
    torch.testing.assert_close(m(x), ref)
    fresh = SGE(32, groups=8)
    xx = torch.randn(1, 32, 4, 4)
    torch.testing.assert_close(fresh(xx), xx * torch.sigmoid(torch.tensor(1.0)))
    assert SGE(40).build_notes == ["groups 64 -> 40 (C=40)"]


def test_shuffle_attention_clamps_groups_and_shuffles_halves():
    m = ShuffleAttention(40)
    assert m.groups == 20 and m.build_notes  # C % 2G == 0 for C=40
    with pytest.raises(ValueError):
        ShuffleAttention(39)
    # at init both gates are sigmoid(1): the output is the shuffled, uniformly scaled input
    x = torch.randn(1, 256, 3, 4)
    y = ShuffleAttention(256)(x)
    s = torch.sigmoid(torch.tensor(1.0))
    expected = (x * s).reshape(1, 2, 128, 3, 4).transpose(1, 2).reshape(1, 256, 3, 4)
    torch.testing.assert_close(y, expected)


def test_triplet_equals_the_rotating_formulation():
    m = randomise(TripletAttention(6)).eval()
    x = torch.randn(2, 6, 5, 7)

    def gate(branch, t):
        pooled = torch.cat((t.amax(1, keepdim=True), t.mean(1, keepdim=True)), 1)
        return t * branch(pooled)

    t1 = gate(m.cw, x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
    t2 = gate(m.hc, x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)
    t3 = gate(m.hw, x)
    torch.testing.assert_close(m(x), (t1 + t2 + t3) / 3)
    assert sum(p.numel() for p in m.parameters()) == 300


def test_s2_shifts_are_out_of_place_and_keep_the_border():
    x = torch.arange(4 * 3 * 5, dtype=torch.float32).reshape(1, 4, 3, 5)
    y = spatial_shift(x, 3, 2)  # +W, -W, +H, -H for channels 0..3
    ref = x.clone()
    ref[0, 0, :, 1:] = x[0, 0, :, :-1]
    ref[0, 1, :, :-1] = x[0, 1, :, 1:]
    ref[0, 2, 1:, :] = x[0, 2, :-1, :]
    ref[0, 3, :-1, :] = x[0, 3, 1:, :]
    torch.testing.assert_close(y, ref)
    assert torch.equal(x, torch.arange(60, dtype=torch.float32).reshape(1, 4, 3, 5))  # input untouched
    one = torch.randn(1, 8, 1, 1)
    torch.testing.assert_close(spatial_shift(one, 2, 3), one)
    with pytest.raises(ValueError):
        S2Attention(6)


def _psa_reference(m, x):
    b, c, h, w = x.shape
    flat = x.flatten(2)
    v = torch.einsum("oc,bcn->bon", m.ch_wv.weight[..., 0, 0], flat)
    q = torch.einsum("oc,bcn->bon", m.ch_wq.weight[..., 0, 0], flat).softmax(-1)
    z = torch.einsum("bon,bn->bo", v, q[:, 0])
    z = torch.einsum("oc,bc->bo", m.ch_wz.weight[..., 0, 0], z)
    a_ch = torch.sigmoid(F.layer_norm(z, (c,), m.ch_norm.weight, m.ch_norm.bias, m.ch_norm.eps))[..., None, None]

    def a_sp(t):
        qs = torch.einsum("oc,bchw->bo", m.sp_wq.weight[..., 0, 0], t / (h * w)).softmax(-1)
        vs = torch.einsum("oc,bchw->bohw", m.sp_wv.weight[..., 0, 0], t)
        return torch.sigmoid(torch.einsum("bo,bohw->bhw", qs, vs))[:, None]

    return a_ch, a_sp


def test_polarized_follows_the_paper_equations():
    x = torch.randn(2, 8, 4, 6, dtype=torch.float64)
    p = randomise(PolarizedSA_P(8)).double()
    a_ch, a_sp = _psa_reference(p, x)
    torch.testing.assert_close(p(x), x * a_ch + x * a_sp(x))
    s = randomise(PolarizedSA_S(8)).double()
    a_ch, a_sp = _psa_reference(s, x)
    z = x * a_ch
    torch.testing.assert_close(s(x), z * a_sp(z))


def test_epsa_shares_one_se_and_softmaxes_over_scales():
    m = randomise(EPSA(64)).double()
    assert not m.build_notes
    assert len([n for n, _ in m.named_modules() if n.startswith("se") and n.count(".") == 0]) == 1
    x = torch.randn(2, 64, 9, 7, dtype=torch.float64)
    feats = [conv(x) for conv in m.convs]
    se = [torch.sigmoid(m.se.fc2(F.relu(m.se.fc1(f.mean((2, 3), keepdim=True))))) for f in feats]
    e = [torch.exp(s) for s in se]
    ref = torch.cat([f * ei / sum(e) for f, ei in zip(feats, e)], 1)
    torch.testing.assert_close(m(x), ref)
    narrow = EPSA(40)
    assert [c.groups for c in narrow.convs] == [1, 2, 5, 10] and narrow.build_notes
    with pytest.raises(ValueError):
        EPSA(42)


def test_ema_matches_the_official_computation():
    m = randomise(EMAttention(64, groups=8)).double()
    x = torch.randn(2, 64, 5, 6, dtype=torch.float64)
    g = x.reshape(16, 8, 5, 6)
    x_h = F.adaptive_avg_pool2d(g, (None, 1))
    x_w = F.adaptive_avg_pool2d(g, (1, None)).permute(0, 1, 3, 2)
    hw = m.conv1x1(torch.cat([x_h, x_w], 2))
    a_h, a_w = torch.split(hw, [5, 6], 2)
    x1 = m.gn(g * a_h.sigmoid() * a_w.permute(0, 1, 3, 2).sigmoid())
    x2 = m.conv3x3(g)
    x11 = F.adaptive_avg_pool2d(x1, 1).reshape(16, -1, 1).permute(0, 2, 1).softmax(-1)
    x21 = F.adaptive_avg_pool2d(x2, 1).reshape(16, -1, 1).permute(0, 2, 1).softmax(-1)
    w = (x11 @ x2.reshape(16, 8, -1) + x21 @ x1.reshape(16, 8, -1)).reshape(16, 1, 5, 6)
    torch.testing.assert_close(m(x), (g * w.sigmoid()).reshape(x.shape))
    assert EMAttention(24).groups == 24 and EMAttention(24).build_notes


@pytest.mark.parametrize("cls", [LSKBlock, LSKA])
def test_residual_forms_start_as_identity_and_bare_forms_cannot(cls):
    m = cls(16)
    assert m.init_identity()
    x = torch.randn(2, 16, 7, 5)
    assert torch.equal(m(x), x)
    bare = cls(16, wrapped=False)
    assert not bare.init_identity()
    assert sum(p.numel() for p in bare.parameters()) < sum(p.numel() for p in m.parameters())


def test_lska_rejects_unsupported_kernels_and_maps_paddings():
    with pytest.raises(ValueError):
        LSKA(16, kernel_size=9)
    for k in (7, 11, 23, 35, 41, 53):
        assert LSKA(8, kernel_size=k)(torch.randn(1, 8, 3, 4)).shape == (1, 8, 3, 4)


def test_caa_gate_is_bounded_and_gam_grouped_variant_builds():
    m = randomise(CAA(16)).eval()
    x = torch.randn(2, 16, 9, 13)
    assert (m(x).abs() <= x.abs() + 1e-6).all()
    g = GAM(40, groups=4)
    assert g.build_notes == ["groups 4 -> 2 (C=40, C/r=10)"]
    assert g(torch.randn(1, 40, 5, 3)).shape == (1, 40, 5, 3)


def test_parnet_is_the_sum_of_three_branches():
    m = randomise(ParNetAttention(8)).eval()
    x = torch.randn(2, 8, 5, 5)
    skip = m.bn_skip(x)
    sse = skip * torch.sigmoid(m.sse(skip.mean((2, 3), keepdim=True)))
    ref = F.silu(m.bn1x1(m.conv1x1(x)) + m.bn3x3(m.conv3x3(x)) + sse)
    torch.testing.assert_close(m(x), ref)


# ------------------------------------------------------------------------------- forms of the official code
def test_epsa_official_reverses_the_scale_order():
    p = randomise(EPSA(64)).double()
    o = EPSA(64, form="official").double()
    o.load_state_dict(p.state_dict())
    x = torch.randn(2, 64, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(o(x), torch.cat(p(x).chunk(4, 1)[::-1], 1))


def test_polarized_official_forms_follow_the_official_code():
    x = torch.randn(2, 16, 4, 6, dtype=torch.float64)
    p = randomise(PolarizedSA_P(16, form="official")).double()
    assert not hasattr(p, "ch_norm")
    q = p.ch_wq(x).flatten(2).softmax(-1)
    a_ch = torch.sigmoid(p.ch_wz(torch.einsum("bcn,bn->bc", p.ch_wv(x).flatten(2), q[:, 0])[..., None, None]))
    ctx = torch.einsum("bc,bcn->bn", p.sp_wq(x).mean((2, 3)), p.sp_wv(x).flatten(2)).softmax(-1)
    a_sp = torch.sigmoid(ctx).reshape(2, 1, 4, 6)
    torch.testing.assert_close(p(x), x * a_ch + x * a_sp)
    s = randomise(PolarizedSA_S(16, form="official")).double()
    assert not hasattr(s, "ch_wz") and s.ch_up1.out_channels == 2 and s.ch_up2.bias is not None
    q = s.ch_wq(x).flatten(2).softmax(-1)
    z = torch.einsum("bcn,bn->bc", s.ch_wv(x).flatten(2), q[:, 0])[..., None, None]
    z = x * torch.sigmoid(s.ch_up2(F.relu(s.ch_up_norm(s.ch_up1(z)))))
    v = s.sp_wv(z).flatten(2).softmax(-1)
    a_sp = torch.sigmoid(torch.einsum("bc,bcn->bn", s.sp_wq(z).mean((2, 3)), v)).reshape(2, 1, 4, 6)
    torch.testing.assert_close(s(x), z * a_sp)


def test_s2_paper_form_sums_and_is_the_mean_form_up_to_a_group_permutation():
    """The pseudo-code's sum descriptor; its shift axes (H first, as the ports run it) are the default's (W first)
    once the four channel groups of every branch swap halves: a relabelling of weights, the same function."""
    c = 8
    mean = randomise(S2Attention(c)).double()
    paper = S2Attention(c, form="paper").double()
    perm = torch.cat([torch.arange(4, 8), torch.arange(0, 4)])  # groups (1, 2) <-> (3, 4) of a C=8 branch
    full = torch.cat([perm + k * c for k in range(3)])  # the same in each of the 3 branches of mlp1
    st = mean.state_dict()
    paper.load_state_dict({
        "mlp1.weight": st["mlp1.weight"][full], "mlp1.bias": st["mlp1.bias"][full],
        "attn_fc1.weight": st["attn_fc1.weight"][:, perm], "attn_fc2.weight": st["attn_fc2.weight"][full],
        "mlp2.weight": st["mlp2.weight"][:, perm], "mlp2.bias": st["mlp2.bias"],
    })
    x = torch.randn(2, c, 5, 7, dtype=torch.float64)
    # equal once the descriptor scale matches: sum = N * mean, so divide the paper's first split-attention layer by N
    paper.attn_fc1.weight.data /= 5 * 7
    torch.testing.assert_close(paper(x), mean(x))


def test_external_attention_official_ties_the_memories():
    from models.attention.external import ExternalAttention

    m = randomise(ExternalAttention(16, s=8, form="official"))
    assert m.mv is None and "mv.weight" not in m.state_dict() and m.relu
    x = torch.randn(2, 16, 5, 4)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m(x).square().mean().backward()
    opt.step()
    attn = torch.randn(2, 8, 20)
    torch.testing.assert_close(m.memory_v(attn), torch.einsum("sc,bsn->bcn", m.mk.weight[..., 0], attn))
    with pytest.raises(ValueError, match="fixes relu=True"):
        ExternalAttention(16, relu=False, form="official")
    assert ExternalAttention(16, relu=True).relu  # the paper form's switch stays


def test_cot_official_fusion_norm_is_a_batchnorm_safe_at_batch_1():
    from models.attention._common import BatchNorm2dSafe
    from models.attention.cot import CoT

    m = CoT(32, form="official").train()
    assert isinstance(m.se_norm, BatchNorm2dSafe) and "se_norm.running_mean" in m.state_dict()
    assert m(torch.randn(1, 32, 5, 4)).shape == (1, 32, 5, 4)
    assert isinstance(CoT(32).se_norm, torch.nn.GroupNorm)


def test_residual_attention_official_pools_like_caffe():
    from models.attention.residual_attention import caffe_max_pool

    x = torch.randn(1, 3, 11, 8)
    assert caffe_max_pool(x).shape[-2:] == (5, 4)  # Caffe: ceil((11 - 3) / 2) + 1 = 5; padding 1 floor: 6
    torch.testing.assert_close(caffe_max_pool(x), F.max_pool2d(x, 3, 2, 0, ceil_mode=True))
    one = torch.randn(1, 3, 1, 6)  # no Caffe output; the window clipped to the map
    torch.testing.assert_close(caffe_max_pool(one), F.max_pool2d(torch.cat([one, one], 2), 3, 2, 0, ceil_mode=True))
