"""Behaviour of the self-attention family that the shared matrix cannot see.

Numerical checks of each module's computation against a direct (loop or textbook) evaluation of the
paper's formula, identity at init, width clamping notes, and the dense-module metadata.
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from models.attention.acmix import ACmix
from models.attention.biformer import BiLevelRoutingAttention
from models.attention.bot_mhsa import BoTMHSA
from models.attention.cot import CoT
from models.attention.criss_cross import CrissCross
from models.attention.danet import DANet
from models.attention.dat import DAttention, bilinear_gather
from models.attention.double_attention import DoubleAttention
from models.attention.external import ExternalAttention
from models.attention.non_local import NonLocal
from models.attention.residual_attention import ResidualAttention, bilinear_resize
from models.registry import attention_specs

SPECS = {s.name: s for s in attention_specs()}
MINE = ["DANet", "CrissCross", "DoubleAttention", "NonLocal", "ExternalAttention", "CoT", "ResidualAttention",
        "BiLevelRoutingAttention", "BoTMHSA", "ACmix", "DAttention"]


def _rand_params(m: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "gamma" in n or "rate" in n or p.numel() == 1 or torch.count_nonzero(p) == 0:
                p.copy_(0.5 * torch.randn_like(p))
    return m.double().eval()


# ------------------------------------------------------------------------------------------ DANet


def test_danet_matches_direct_formula():
    torch.manual_seed(0)
    m = _rand_params(DANet(16))
    x = torch.randn(2, 16, 3, 5, dtype=torch.float64)
    q, k, v = m.pam.query(x).flatten(2), m.pam.key(x).flatten(2), m.pam.value(x).flatten(2)
    a = x.flatten(2)
    n = 15
    pam = torch.zeros_like(v)
    for u in range(n):
        wts = torch.softmax(torch.einsum("bc,bcn->bn", q[:, :, u], k), -1)
        pam[:, :, u] = torch.einsum("bn,bcn->bc", wts, v)
    e = a @ a.transpose(1, 2)
    cam = torch.softmax(e.amax(-1, keepdim=True) - e, -1) @ a  # official rowmax(E) - E
    ref = x + m.gamma_pam * pam.reshape_as(x) + m.gamma_cam * cam.reshape_as(x)
    torch.testing.assert_close(m(x), ref)
    paper = DANet(16, cam_form="paper")
    paper.load_state_dict(m.state_dict())
    paper.double().eval()
    ref_p = x + m.gamma_pam * pam.reshape_as(x) + m.gamma_cam * (torch.softmax(e, -1) @ a).reshape_as(x)
    torch.testing.assert_close(paper(x), ref_p)


# ------------------------------------------------------------------------------------- CrissCross


def test_criss_cross_matches_loop_and_recurs_twice():
    torch.manual_seed(0)
    m = _rand_params(CrissCross(16))
    cca = m.cca
    x = torch.randn(1, 16, 3, 4, dtype=torch.float64)

    def one_pass(t):
        q, k, v = cca.query(t)[0], cca.key(t)[0], cca.value(t)[0]
        h, w = t.shape[-2:]
        out = torch.zeros_like(v)
        for i in range(h):
            for j in range(w):
                keys = [(i2, j) for i2 in range(h) if i2 != i] + [(i, j2) for j2 in range(w)]
                e = torch.stack([q[:, i, j] @ k[:, a, b] for a, b in keys])
                wts = torch.softmax(e, 0)
                out[:, i, j] = sum(wt * v[:, a, b] for wt, (a, b) in zip(wts, keys))
        return t + cca.gamma * out[None]

    torch.testing.assert_close(cca(x), one_pass(x))
    torch.testing.assert_close(m(x), one_pass(one_pass(x)))  # R = 2 with shared weights


def test_criss_cross_onnx_has_no_diag_and_half_works():
    m = CrissCross(16).eval()
    f = io.BytesIO()
    torch.onnx.export(m, (torch.randn(1, 16, 6, 7),), f, opset_version=17, dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {2: "h", 3: "w"}})
    import onnx

    ops = {n.op_type for n in onnx.load_from_string(f.getvalue()).graph.node}
    assert not any("diag" in o.lower() or o.startswith("ATen") for o in ops), ops
    with torch.no_grad():
        y = m.half()(torch.randn(1, 16, 5, 6).half())
    assert y.dtype == torch.float16 and torch.isfinite(y).all()


# -------------------------------------------------------------------------------- DoubleAttention


def test_double_attention_softmax_dims_and_batch_independence():
    torch.manual_seed(0)
    m = _rand_params(DoubleAttention(32))
    x = torch.randn(3, 32, 4, 5, dtype=torch.float64)
    a = m.conv_a(x).flatten(2)
    bm = torch.softmax(m.conv_b(x).flatten(2), dim=2)  # each map normalised over positions
    vv = torch.softmax(m.conv_v(x).flatten(2), dim=1)  # each position's vector normalised over maps
    ref = x + m.proj(((a @ bm.transpose(1, 2)) @ vv).reshape(3, -1, 4, 5))
    torch.testing.assert_close(m(x), ref)
    torch.testing.assert_close(m(x[:1]), m(x)[:1])  # no normalisation across the batch


# -------------------------------------------------------------------------------------- NonLocal


def test_non_local_matches_formula_with_ceil_subsampling():
    torch.manual_seed(0)
    m = _rand_params(NonLocal(16))
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    theta = m.theta(x).flatten(2)
    phi = F.max_pool2d(F.pad(m.phi(x), (0, 1, 0, 1), value=-1e9), 2).flatten(2)  # ceil: keeps last row/col
    g = F.max_pool2d(F.pad(m.g(x), (0, 1, 0, 1), value=-1e9), 2).flatten(2)
    assert phi.shape[-1] == 3 * 4
    f = torch.softmax(theta.transpose(1, 2) @ phi, -1)
    ref = x + m.bn(m.w_z((g @ f.transpose(1, 2)).reshape(2, -1, 5, 7)))
    torch.testing.assert_close(m(x), ref)
    assert m.attention_map_elements(5, 7) == 35 * 12


# ---------------------------------------------------------------------------------- External


def test_external_attention_double_normalisation():
    torch.manual_seed(0)
    m = ExternalAttention(16, s=8)
    torch.testing.assert_close(m.mv.weight, m.mk.weight.transpose(0, 1))
    assert m.mv.weight.data_ptr() != m.mk.weight.data_ptr()  # untied copy
    m = _rand_params(m)
    x = torch.randn(2, 16, 3, 4, dtype=torch.float64)
    t = m.conv_in(x).flatten(2)
    attn = torch.softmax(torch.einsum("sc,bcn->bsn", m.mk.weight[..., 0], t), -1)
    attn = attn / (1e-9 + attn.sum(1, keepdim=True))
    torch.testing.assert_close(attn.sum(1), torch.ones(2, 12, dtype=torch.float64))
    t = torch.einsum("cs,bsn->bcn", m.mv.weight[..., 0], attn).reshape(2, 16, 3, 4)
    torch.testing.assert_close(m(x), x + m.bn(m.conv_out(t)))
    relu = ExternalAttention(16, relu=True)
    assert relu.init_identity() is False


# -------------------------------------------------------------------------------------------- CoT


def test_cot_local_aggregation_matches_unfold_reference():
    torch.manual_seed(0)
    m = _rand_params(CoT(16))
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64)
    b, c, h, w = x.shape
    k1 = F.relu(m.key_bn(m.key_conv(x)))
    wgt = F.relu(m.embed_bn(m.embed_conv1(torch.cat((x, k1), 1))))
    wgt = m.embed_gn(m.embed_conv2(wgt)).reshape(b, m.wc, 9, h, w)
    v = m.value_bn(m.value_conv(x))
    unf = F.unfold(v, 3, padding=1).reshape(b, c, 9, h, w)
    ch = torch.arange(c) % m.wc  # channel c uses weight channel c mod (C / share_planes)
    k2 = F.silu(m.bn((unf * wgt[:, ch]).sum(2)))
    s = (k1 + k2).mean((2, 3), keepdim=True)
    a = torch.softmax(m.se_conv2(F.relu(m.se_norm(m.se_conv1(s)))).reshape(b, c, 2), -1)
    ref = k2 * a[:, :, 0, None, None] + k1 * a[:, :, 1, None, None]
    torch.testing.assert_close(m(x), ref)


# ------------------------------------------------------------------------------ ResidualAttention


def test_ran_bilinear_matches_interpolate_align_corners():
    x = torch.randn(2, 3, 4, 7, dtype=torch.float64)
    for size in [(7, 13), (4, 7), (1, 1), (9, 2)]:
        ref = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        torch.testing.assert_close(bilinear_resize(x, *size), ref)
    one = torch.randn(1, 2, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(bilinear_resize(one, 3, 5), one.expand(1, 2, 3, 5))


def test_ran_structure_and_multilevel():
    m = ResidualAttention(32)
    assert len(m.pre) == 1 and len(m.trunk) == 2 and len(m.post) == 1 and len(m.mask.down) == 2
    deep = ResidualAttention(32, levels=3).train()
    for shape in [(1, 32, 1, 1), (2, 32, 13, 31)]:
        assert deep(torch.randn(shape)).shape == shape


# ------------------------------------------------------------------------------------- BiFormer


def test_bra_with_all_regions_equals_full_attention():
    torch.manual_seed(0)
    m = _rand_params(BiLevelRoutingAttention(16, n_win=3, num_heads=4, topk=9, side_dwconv=3))
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)  # padded to 6 x 9
    t = F.pad(m.norm(x.permute(0, 2, 3, 1)), (0, 0, 0, 2, 0, 1))
    q, k, v = m.qkv(t).split([16, 16, 16], -1)
    lepe = m.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    qh, kh, vh = (z.reshape(2, 54, 4, 4).transpose(1, 2) for z in (q, k, v))
    attn = torch.softmax((qh * 16**-0.5) @ kh.transpose(-1, -2), -1)
    out = (attn @ vh).transpose(1, 2).reshape(2, 6, 9, 16) + lepe
    ref = x + m.wo(out)[:, :5, :7].permute(0, 3, 1, 2)
    torch.testing.assert_close(m(x), ref)


def test_bra_routing_is_sparse_and_clamps():
    m = BiLevelRoutingAttention(20)
    assert m.heads == 5 and any("heads 8 -> 5" in n for n in m.build_notes)
    assert BiLevelRoutingAttention(16, n_win=1, topk=4).topk == 1


# ---------------------------------------------------------------------------------------- BoTMHSA


def test_bot_relative_logits_match_pairwise_definition():
    torch.manual_seed(0)
    m = _rand_params(BoTMHSA(16, num_heads=2, rel_size=4))
    x = torch.randn(1, 16, 3, 6, dtype=torch.float64)  # W = 6 > rel_size: offsets beyond +-3 are clipped
    q, k, v = m.qkv(x).reshape(1, 3, 2, 8, 3, 6).unbind(1)
    out = torch.zeros(2, 8, 3, 6, dtype=torch.float64)
    for head in range(2):
        for i in range(3):
            for j in range(6):
                qq = q[0, head, :, i, j] * 8**-0.5
                logit = torch.zeros(3, 6, dtype=torch.float64)
                for i2 in range(3):
                    for j2 in range(6):
                        rh = m.rel_h[max(-3, min(3, i2 - i)) + 3]
                        rw = m.rel_w[max(-3, min(3, j2 - j)) + 3]
                        logit[i2, j2] = qq @ (k[0, head, :, i2, j2] + rh + rw)
                wts = torch.softmax(logit.flatten(), 0).reshape(3, 6)
                out[head, :, i, j] = (v[0, head] * wts).sum((1, 2))
    torch.testing.assert_close(m(x), out.reshape(1, 16, 3, 6))


def test_bot_any_size_no_table_resize():
    m = BoTMHSA(32)
    n_params = sum(p.numel() for p in m.parameters())
    for hw in [(1, 1), (8, 8), (20, 12), (40, 41)]:
        assert m(torch.randn(1, 32, *hw)).shape == (1, 32, *hw)
    assert sum(p.numel() for p in m.parameters()) == n_params
    assert BoTMHSA(18).heads == 3


# ------------------------------------------------------------------------------------------ ACmix


def test_acmix_attention_matches_reflection_version_in_the_interior():
    torch.manual_seed(0)
    m = _rand_params(ACmix(16))
    with torch.no_grad():
        m.rate1.fill_(1.0)
        m.rate2.fill_(0.0)
    x = torch.randn(2, 16, 9, 10, dtype=torch.float64)
    b, c, h, w = x.shape
    hd, heads = 4, 4
    q, k, v = m.conv1(x), m.conv2(x), m.conv3(x)
    loc = torch.stack(torch.meshgrid(torch.linspace(-1, 1, h, dtype=x.dtype), torch.linspace(-1, 1, w, dtype=x.dtype),
                                     indexing="ij")[::-1], 0)[None]  # channel 0 along W, channel 1 along H
    pe = m.conv_p(loc)

    def unfold(t):
        return F.unfold(F.pad(t, (3, 3, 3, 3), mode="reflect"), 7).reshape(t.shape[0], t.shape[1], 49, h, w)

    qa = q.reshape(b * heads, hd, h, w) * hd**-0.5
    att = (qa.unsqueeze(2) * (unfold(k.reshape(b * heads, hd, h, w)) + pe.unsqueeze(2) - unfold(pe))).sum(1)
    att = torch.softmax(att, 1)
    ref = (att.unsqueeze(1) * unfold(v.reshape(b * heads, hd, h, w))).sum(2).reshape(b, c, h, w)
    inner = (slice(None), slice(None), slice(3, h - 3), slice(3, w - 3))
    torch.testing.assert_close(m(x)[inner], ref[inner])


def test_acmix_conv_path_is_shift_initialised_and_small_maps_work():
    m = ACmix(16)
    w = m.dep_conv.weight
    assert w.shape == (16, 9, 3, 3)
    assert torch.equal(w.sum((2, 3)), torch.ones(16, 9)) and float(m.dep_conv.bias.detach().abs().sum()) == 0
    for hw in [(1, 1), (2, 3), (3, 3)]:
        assert m.train()(torch.randn(1, 16, *hw)).shape == (1, 16, *hw)
    assert ACmix(18).heads == 3


# -------------------------------------------------------------------------------------- DAttention


def test_dat_gather_sampling_matches_grid_sample():
    torch.manual_seed(0)
    feat = torch.randn(3, 5, 6, 7, dtype=torch.float64)
    py = torch.rand(3, 4, 5, dtype=torch.float64) * 8 - 1  # includes points outside the map
    px = torch.rand(3, 4, 5, dtype=torch.float64) * 9 - 1
    grid = torch.stack((px / 6 * 2 - 1, py / 5 * 2 - 1), -1)
    ref = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=True).flatten(2)
    torch.testing.assert_close(bilinear_gather(feat, py, px), ref)


def test_dat_zero_offsets_sample_the_pixel_grid():
    torch.manual_seed(0)
    m = DAttention(32).double().eval()
    with torch.no_grad():
        m.off_pw.weight.zero_()  # zero offsets: keys are the (normalised) pixels themselves
    x = torch.randn(1, 32, 4, 6, dtype=torch.float64)
    t = m.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    q, k, v = m.proj_q(t), m.proj_k(t), m.proj_v(t)
    qh, kh, vh = (z.reshape(8, 4, 24) for z in (q, k, v))
    attn = torch.softmax(qh.transpose(1, 2) @ kh * 0.5, -1)
    out = vh @ attn.transpose(1, 2) + m.rpe(q).reshape(8, 4, 24)
    torch.testing.assert_close(m(x), x + m.proj_out(out.reshape(1, 32, 4, 6)))
    assert m.attention_map_elements(20, 20) == 8 * 400 * 400


def test_dat_non_finite_positions_give_nan_not_an_index_error():
    """NaN input (e.g. an uninitialised tensor, as ultralytics' FLOP counter feeds) used to make the gather raise."""
    feat = torch.randn(1, 3, 4, 5)
    py = torch.tensor([[0.5, float("nan"), float("inf"), -float("inf")]])
    px = torch.tensor([[1.5, 2.0, 1.0, 1.0]])
    out = bilinear_gather(feat, py, px)
    assert torch.isfinite(out[..., 0]).all() and torch.isnan(out[..., 1]).all()
    m = DAttention(16).eval()
    with torch.no_grad():
        assert m(torch.full((1, 16, 6, 6), float("nan"))).isnan().all()


# --------------------------------------------------------------------------- identity and metadata


@pytest.mark.parametrize("name", ["DANet", "CrissCross", "NonLocal"])
def test_identity_at_init_by_default(name):
    m = SPECS[name].cls(24).train()
    x = torch.randn(2, 24, 5, 6)
    torch.testing.assert_close(m(x), x)


@pytest.mark.parametrize("name", ["DANet", "CrissCross", "NonLocal", "DoubleAttention", "ExternalAttention",
                                  "BiLevelRoutingAttention", "DAttention"])
def test_init_identity(name):
    m = _rand_params(SPECS[name].cls(24)).float()
    x = torch.randn(2, 24, 5, 6)
    assert not torch.allclose(m(x), x)
    assert m.init_identity() is True
    torch.testing.assert_close(m(x), x)


@pytest.mark.parametrize("name", ["CoT", "ResidualAttention", "BoTMHSA", "ACmix"])
def test_no_identity_claim_where_impossible(name):
    from models.protocol import init_identity

    assert init_identity(SPECS[name].cls(32)) is False


def test_clamping_notes():
    assert any("share planes 8 -> 5" in n for n in CoT(20).build_notes)
    assert any("key groups 4 -> 3" in n for n in CoT(18).build_notes)
    assert any("heads 4 -> 3" in n for n in ACmix(18).build_notes)
    assert any("heads 8 -> 6" in n for n in DAttention(18).build_notes)
    assert DoubleAttention(16).build_notes  # C // 4 = 4 -> floor 8


def test_dense_registration():
    for name in MINE:
        spec = SPECS[name]
        dense = name in {"DANet", "NonLocal", "BoTMHSA", "DAttention"}
        assert spec.dense is dense, name
        if dense:
            assert spec.placement == "p5"
            assert SPECS[name].cls(16).attention_map_elements(20, 12) > 0
