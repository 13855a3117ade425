"""Behaviour of the self-attention family that the shared matrix cannot see.

Numerical checks of each module's computation against a direct (loop or textbook) evaluation of the
paper's formula, identity at init, width clamping notes, and the dense-module metadata.
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from models.attention.acmix import ACmix, reflect_pad
from models.attention.biformer import BiLevelRoutingAttention
from models.attention.bot_mhsa import BoTMHSA
from models.attention.cot import CoT
from models.attention.criss_cross import CrissCross
from models.attention.danet import DANet
from models.attention.dat import DAttention, bilinear_gather
from models.attention.double_attention import DoubleAttention
from models.attention.external import ExternalAttention
from models.attention.non_local import NonLocal, floor_pool_input
from models.attention.residual_attention import ResidualAttention, bilinear_resize
from models.registry import ConfigError, attention_arguments, attention_specs

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
    assert m.attention_map_elements(5, 7) == 8 * 16 * 35  # the working set, 8 C N: no (N x N') map is stored


def _non_local_reference(m: NonLocal, x: torch.Tensor, keys_from: torch.Tensor, pool) -> torch.Tensor:
    theta = m.theta(x).flatten(2)
    phi, g = pool(m.phi(keys_from)).flatten(2), pool(m.g(keys_from)).flatten(2)
    f = torch.softmax(theta.transpose(1, 2) @ phi * m.scale, -1)
    return x + m.bn(m.w_z((g @ f.transpose(1, 2)).reshape_as(m.theta(x))))


def test_non_local_official_form_pools_the_input_with_floor_and_scales():
    """Caffe2: MaxPool(x) 2x2 floor -> phi, g; logits * ci^-0.5; BN eps 1.0000001e-5 (golden fixture: 1e-12)."""
    torch.manual_seed(0)
    m = _rand_params(NonLocal(16, form="official"))
    assert m.scale == 8**-0.5 and m.bn.eps == 1.0000001e-5 and NonLocal(16).bn.eps == 1e-5
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    keys = F.max_pool2d(x, 2)  # floor: 5x7 -> 2x3, the last row and column are dropped
    assert keys.shape[-2:] == (2, 3) and m.affinity(x)[1] == (2, 3)
    torch.testing.assert_close(m(x), _non_local_reference(m, x, keys, lambda t: t))
    # a 1-pixel side (Caffe2 raises: floor gives 0 rows) is not pooled; the other side is
    x1 = torch.randn(1, 16, 1, 7, dtype=torch.float64)
    assert floor_pool_input(x1).shape[-2:] == (1, 3)
    torch.testing.assert_close(m(x1), _non_local_reference(m, x1, F.max_pool2d(x1, (1, 2)), lambda t: t))
    assert floor_pool_input(torch.randn(1, 2, 1, 1)).shape[-2:] == (1, 1)
    # same parameters, same count, as the paper form; the paper form pools phi(x) and g(x) in ceil mode, unscaled
    paper = NonLocal(16)
    assert [(k, v.shape) for k, v in paper.state_dict().items()] == [(k, v.shape) for k, v in m.state_dict().items()]
    paper.load_state_dict(m.state_dict())
    paper.double().eval()
    ref = _non_local_reference(paper, x, x, lambda t: F.max_pool2d(t, 2, ceil_mode=True))
    torch.testing.assert_close(paper(x), ref)
    assert (paper(x) - m(x)).abs().max() > 1e-3


def test_forms_are_set_from_a_yaml_row_and_bad_ones_name_the_layer():
    from models.yolo import build_model

    for name in ("NonLocal", "ACmix", "DAttention"):
        args, kwargs = attention_arguments(SPECS[name], [{"form": "official"}], 32, "t.yaml: layer 3")
        assert SPECS[name].cls(32, *args, **kwargs).form == "official"
        assert SPECS[name].cls(32).form == "paper"
    cfg = {"nc": 2, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "NonLocal", [{"form": "offical"}]]],
           "head": [[-1, 1, "Conv", [16, 1, 1]]]}
    with pytest.raises(ConfigError, match=r"layer 1.*NonLocal.*form must be one of 'paper', 'official', got 'offical'"):
        build_model(cfg)


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


def _acmix_unfold_reference(m: ACmix, x: torch.Tensor) -> torch.Tensor:
    """Both forms with 49-fold unfolded neighbourhoods, as the official code computes them (paper form: zero padding
    and a mask, official: reflection padding); logits q . (k_nb + pe_q - pe_nb)."""
    b, c, h, w = x.shape
    heads, hd = m.heads, m.hd
    q, k, v = m.conv1(x), m.conv2(x), m.conv3(x)
    loc = torch.stack(torch.meshgrid(torch.linspace(-1, 1, h, dtype=x.dtype), torch.linspace(-1, 1, w, dtype=x.dtype),
                                     indexing="ij")[::-1], 0)[None]
    pe = m.conv_p(loc)
    mode = "reflect" if m.form == "official" else "constant"

    def unfold(t):
        return F.unfold(F.pad(t, (3, 3, 3, 3), mode=mode), 7).reshape(t.shape[0], t.shape[1], 49, h, w)

    qa = q.reshape(b * heads, hd, h, w) * hd**-0.5
    att = (qa.unsqueeze(2) * (unfold(k.reshape(b * heads, hd, h, w)) + pe.unsqueeze(2) - unfold(pe))).sum(1)
    if m.form == "paper":
        att = att.masked_fill(unfold(torch.ones(1, 1, h, w, dtype=x.dtype))[:, 0] == 0, float("-inf"))
    att = torch.softmax(att, 1)
    out_att = (att.unsqueeze(1) * unfold(v.reshape(b * heads, hd, h, w))).sum(2).reshape(b, c, h, w)
    qkv = torch.cat([t.reshape(b, heads, hd, h * w) for t in (q, k, v)], 1)
    out_conv = m.dep_conv(m.fc(qkv).permute(0, 2, 1, 3).reshape(b, -1, h, w))
    return m.rate1 * out_att + m.rate2 * out_conv


@pytest.mark.parametrize("form", ["paper", "official"])
def test_acmix_tap_loop_matches_the_unfolded_window(form):
    """The 49 taps as shifted views (no copies) give the unfold computation exactly, borders included."""
    torch.manual_seed(0)
    m = _rand_params(ACmix(16, form=form))
    x = torch.randn(2, 16, 9, 10, dtype=torch.float64, requires_grad=True)
    y, ref = m(x), _acmix_unfold_reference(m, x)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    gy = torch.randn_like(y)
    g1 = torch.autograd.grad(y, [x, *m.parameters()], gy)
    g2 = torch.autograd.grad(ref, [x, *m.parameters()], gy)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def test_acmix_official_form_has_no_dep_conv_bias_and_folds_reflection_on_tiny_maps():
    paper, official = ACmix(32), ACmix(32, form="official")
    assert official.dep_conv.bias is None and "dep_conv.bias" not in official.state_dict()
    assert sum(p.numel() for p in paper.parameters()) - sum(p.numel() for p in official.parameters()) == 32
    t = torch.arange(20.0).reshape(1, 1, 4, 5)
    torch.testing.assert_close(reflect_pad(t, 3), F.pad(t, (3, 3, 3, 3), mode="reflect"))
    row = torch.tensor([[[[1.0, 2.0]]]])  # 1 x 2: rows repeat, columns fold with period 2
    torch.testing.assert_close(reflect_pad(row, 3)[0, 0], torch.tensor([[2.0, 1, 2, 1, 2, 1, 2, 1]]).expand(7, 8))
    three = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3)  # period 4: 2 3 2 1 | 1 2 3 | 2 1 2 3
    assert reflect_pad(three, 3)[0, 0, 0].tolist() == [2, 3, 2, 1, 2, 3, 2, 1, 2]
    for hw in [(1, 1), (2, 3), (3, 3), (5, 4)]:
        assert official.train()(torch.randn(1, 32, *hw)).shape == (1, 32, *hw)


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
    assert m.attention_map_elements(20, 20) == 21 * 32 * 400  # the working set, 21 C N: no (N x Ns) map stored


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


def test_dat_official_form_puts_reference_points_half_a_pixel_off():
    """Official reference points: pixel (i + 0.5)(H - 1)/(Hk - 1), i.e. i + 0.5 at stride 1: with zero offsets each
    key is the mean of a 2x2 pixel block (zero beyond the last row/column)."""
    torch.manual_seed(0)
    m = DAttention(32, form="official").double().eval()
    with torch.no_grad():
        m.off_pw.weight.zero_()
    x = torch.randn(1, 32, 4, 6, dtype=torch.float64)
    t = m.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    keys = F.avg_pool2d(F.pad(t, (0, 1, 0, 1)), 2, stride=1)  # bilinear at (i + 0.5, j + 0.5)
    q, k, v = m.proj_q(t), m.proj_k(keys), m.proj_v(keys)
    qh, kh, vh = (z.reshape(8, 4, 24) for z in (q, k, v))
    attn = torch.softmax(qh.transpose(1, 2) @ kh * 0.5, -1)
    out = vh @ attn.transpose(1, 2) + m.rpe(q).reshape(8, 4, 24)
    torch.testing.assert_close(m(x), x + m.proj_out(out.reshape(1, 32, 4, 6)))
    strided = DAttention(16, stride=2, form="official")  # 5 -> 3 keys at (i + 0.5) * 4 / 2 = 1, 3, 5 (outside)
    iy = torch.arange(3.0)
    assert strided._reference_points(iy, iy, torch.tensor(4.0), torch.tensor(4.0))[0].tolist() == [1.0, 3.0, 5.0]
    assert DAttention(16, stride=2)._reference_points(iy, iy, torch.tensor(4.0), torch.tensor(4.0))[0].tolist() == [
        0.0, 2.0, 4.0]


# ---------------------------------------------------------------------- official forms through the matrix

FORM_CASES = [("NonLocal", {"form": "official"}), ("NonLocal", {"form": "official", "sub_sample": False}),
              ("ACmix", {"form": "official"}), ("DAttention", {"form": "official"})]
FORM_IDS = ["-".join([name, *map(str, kw.values())]) for name, kw in FORM_CASES]
# batch 1 in train mode, 1x1, a 1-pixel side, tiny, odd and non-square maps (the matrix's shapes and 1 x 7)
FORM_SHAPES = [(1, 24, 1, 1), (1, 24, 1, 7), (2, 40, 3, 3), (1, 72, 20, 12), (2, 24, 13, 31)]


def _form(name: str, kwargs: dict, c: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = SPECS[name].cls(c, **kwargs)
    with torch.no_grad():  # as the matrix: zero-initialised parameters perturbed so the attention path counts
        for p in m.parameters():
            if torch.count_nonzero(p) == 0:
                p.add_(0.1 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("name, kwargs", FORM_CASES, ids=FORM_IDS)
def test_official_forms_every_shape_train_and_eval(name, kwargs):
    for shape in FORM_SHAPES:
        m = _form(name, kwargs, shape[1])
        x = torch.randn(shape)
        y = m.train()(x)
        assert y.shape == x.shape and torch.isfinite(y).all(), (name, shape)
        with torch.no_grad():
            assert m.eval()(x).shape == x.shape


@pytest.mark.parametrize("name, kwargs", FORM_CASES, ids=FORM_IDS)
def test_official_forms_fp16_bf16_and_deterministic(name, kwargs):
    m = _form(name, kwargs, 40).eval().half()
    with torch.no_grad():
        y = m((10 * torch.randn(2, 40, 20, 20)).half())
    assert y.dtype == torch.float16 and torch.isfinite(y).all(), f"{name}: fp16 forward overflowed"
    m = _form(name, kwargs, 40).train()
    x = torch.randn(2, 40, 12, 20, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    y.float().square().mean().backward()
    assert torch.isfinite(y.float()).all() and torch.isfinite(x.grad).all()

    def run():
        mm = _form(name, kwargs, 40).train()
        xx = torch.randn(2, 40, 12, 20, generator=torch.Generator().manual_seed(3), requires_grad=True)
        yy = mm(xx)
        yy.square().mean().backward()
        return [yy.detach(), xx.grad, *(p.grad for p in mm.parameters() if p.grad is not None)]

    torch.use_deterministic_algorithms(True)
    try:
        first, second = run(), run()
    finally:
        torch.use_deterministic_algorithms(False)
    assert len(first) == len(second) and all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("name, kwargs", FORM_CASES, ids=FORM_IDS)
def test_official_forms_export_onnx_with_dynamic_size(name, kwargs):
    ort = pytest.importorskip("onnxruntime")
    m = _form(name, kwargs, 32).eval()
    f = io.BytesIO()
    torch.onnx.export(m, (torch.randn(1, 32, 16, 16),), f, input_names=["x"], output_names=["y"], opset_version=17,
                      dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}}, dynamo=False)
    sess = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    for h, w in [(16, 16), (20, 12), (13, 31), (5, 7), (1, 6)]:
        xi = torch.randn(1, 32, h, w)
        with torch.no_grad():
            ref = m(xi).numpy()
        out = sess.run(None, {"x": xi.numpy()})[0]
        assert abs(out - ref).max() <= 1e-4 + 1e-4 * abs(ref).max(), f"{name} at {h}x{w}"


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
    from models.registry.protocol import init_identity

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
