"""Behaviour of the channel-family modules that the shared matrix cannot see.

Each check compares a module with a direct, independent computation of its paper/official formula, or checks
a documented property (identity at init, clamps, options).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.attention.bam import BAM
from models.attention.cpca import CPCA
from models.attention.effective_se import EffectiveSE
from models.attention.ela import ELA
from models.attention.gather_excite import GatherExcite
from models.attention.global_context import GCBlock
from models.attention._resize import adaptive_pool_matrix
from models.attention.mlca import MLCA
from models.attention.nam import NAM
from models.attention.selective_kernel import SK
from models.attention.soca import SOCA, newton_schulz_sqrt

SIZES = [(1, 1), (3, 3), (5, 5), (7, 9), (20, 12), (13, 31), (12, 10)]


def _rand_params(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return m


# ---------------------------------------------------------------------------------------------------- MLCA
@pytest.mark.parametrize("n_in,n_out", [(1, 5), (3, 5), (7, 5), (12, 5), (31, 5), (5, 1), (5, 3), (5, 13), (5, 20)])
def test_adaptive_pool_matrix_matches_torch(n_in, n_out):
    v = torch.randn(2, 3, n_in, dtype=torch.float64)
    ref = F.adaptive_avg_pool1d(v, n_out)
    got = v @ adaptive_pool_matrix(n_in, n_out, v).T
    torch.testing.assert_close(got, ref)


def _mlca_reference(m: MLCA, x: torch.Tensor) -> torch.Tensor:
    """The official (corrected) MLCA forward with adaptive pooling layers."""
    b, c, h, w = x.shape
    s = m.local_size
    local = F.adaptive_avg_pool2d(x, s)
    glob = F.adaptive_avg_pool2d(local, 1)
    seq = local.reshape(b, c, -1).transpose(-1, -2).reshape(b, 1, -1)
    y_local = m.conv_local(seq).reshape(b, s * s, c).transpose(-1, -2).reshape(b, c, s, s)
    y_global = m.conv(glob.reshape(b, c, -1).transpose(-1, -2)).reshape(b, -1).unsqueeze(-1).unsqueeze(-1)
    att_global = F.adaptive_avg_pool2d(y_global.sigmoid(), [s, s])
    att = att_global * (1 - m.local_weight) + y_local.sigmoid() * m.local_weight
    return x * F.adaptive_avg_pool2d(att, [h, w])


@pytest.mark.parametrize("hw", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_mlca_matches_official_adaptive_pooling(hw):
    m = _rand_params(MLCA(40)).double()
    x = torch.randn(2, 40, *hw, dtype=torch.float64)
    torch.testing.assert_close(m(x), _mlca_reference(m, x))


def test_mlca_global_path_is_per_sample():
    m = _rand_params(MLCA(24))
    x = torch.randn(3, 24, 10, 10)
    torch.testing.assert_close(m(x)[1:2], m(x[1:2]), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- SOCA
def _san_sqrtm(cov: torch.Tensor, n: int) -> torch.Tensor:
    """iSQRT-COV as indexed in SAN's Sqrtm.forward (lists of Y_i, Z_i), n >= 2, no eps."""
    c = cov.shape[-1]
    i3 = 3 * torch.eye(c, dtype=cov.dtype)
    tr = cov.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None]
    a = cov / tr
    zy = 0.5 * (i3 - a)
    ys, zs = [a @ zy], [zy]
    for i in range(1, n - 1):
        zy = 0.5 * (i3 - zs[i - 1] @ ys[i - 1])
        ys.append(ys[i - 1] @ zy)
        zs.append(zy @ zs[i - 1])
    zy = 0.5 * ys[n - 2] @ (i3 - zs[n - 2] @ ys[n - 2])
    return zy * tr.sqrt()


def test_soca_pooling_matches_san_covpool_and_sqrtm():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 6, 7, dtype=torch.float64)
    m = SOCA(16, eps=0.0)
    # SAN's covariance with the explicit M x M centring matrix
    xm = x.flatten(2)
    n = xm.shape[-1]
    i_hat = -torch.ones(n, n, dtype=x.dtype) / n / n + torch.eye(n, dtype=x.dtype) / n
    cov = xm @ i_hat @ xm.transpose(1, 2)
    ref = _san_sqrtm(cov, 5).mean(1)
    torch.testing.assert_close(m.pooled(x), ref)


def test_newton_schulz_converges_to_true_sqrt():
    torch.manual_seed(0)
    a = torch.randn(3, 12, 40, dtype=torch.float64)
    cov = a @ a.transpose(1, 2) / 40
    evals, evecs = torch.linalg.eigh(cov)
    ref = evecs @ torch.diag_embed(evals.clamp_min(0).sqrt()) @ evecs.transpose(1, 2)
    torch.testing.assert_close(newton_schulz_sqrt(cov, 40, eps=0.0), ref, rtol=1e-6, atol=1e-8)


def test_soca_zero_input_and_half():
    m = SOCA(32)
    x = torch.zeros(1, 32, 8, 8, requires_grad=True)
    y = m(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    mh = SOCA(32).half()
    xh = (30 * torch.randn(2, 32, 40, 40)).half()  # covariance entries ~900 * 1600 would overflow fp16 sums
    assert torch.isfinite(mh(xh)).all()


# ---------------------------------------------------------------------------------------------------- GCBlock
def test_gc_identity_at_init_and_init_identity():
    m = GCBlock(40)
    x = torch.randn(2, 40, 9, 11)
    torch.testing.assert_close(m(x), x)
    _rand_params(m)
    assert not torch.allclose(m(x), x)
    assert m.init_identity() is True
    torch.testing.assert_close(m(x), x)
    assert GCBlock(40, fusion="mul").init_identity() is False


def test_gc_context_is_softmax_weighted_sum():
    m = _rand_params(GCBlock(24)).double()
    x = torch.randn(2, 24, 5, 7, dtype=torch.float64)
    logits = torch.einsum("bchw,c->bhw", x, m.conv_mask.weight.view(-1)) + m.conv_mask.bias
    p = logits.flatten(1).softmax(-1)
    ctx = torch.einsum("bcn,bn->bc", x.flatten(2), p)
    torch.testing.assert_close(m.context(x).view(2, 24), ctx)
    t = m.add_transform
    ref = x + t.conv2(F.relu(t.norm(t.conv1(ctx[..., None, None]))))
    torch.testing.assert_close(m(x), ref)


# ---------------------------------------------------------------------------------------------------- NAM
def test_nam_formula_and_detached_weights():
    m = _rand_params(NAM(24)).eval()
    m.bn.running_mean.normal_()
    m.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 24, 6, 5)
    g = m.bn.weight.abs()
    xhat = (x - m.bn.running_mean[:, None, None]) / (m.bn.running_var[:, None, None] + m.bn.eps).sqrt()
    xhat = xhat * m.bn.weight[:, None, None] + m.bn.bias[:, None, None]
    ref = x * torch.sigmoid(xhat * (g / g.sum())[:, None, None])
    torch.testing.assert_close(m(x), ref)
    assert not m.channel_weights().requires_grad
    pen = m.sparsity_penalty()
    pen.backward()
    assert m.bn.weight.grad is not None and pen.item() == pytest.approx(1e-4 * g.sum().item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------------- ELA
def test_ela_directional_gates_and_clamp():
    m = _rand_params(ELA(24)).double()
    assert m.gn.num_groups == 12 and any("16 -> 12" in n for n in m.build_notes)
    assert m.conv.groups == 24  # depthwise
    x = torch.randn(2, 24, 5, 9, dtype=torch.float64)
    conv = lambda v: F.conv1d(v, m.conv.weight, padding=3, groups=24)  # noqa: E731
    gn = lambda v: F.group_norm(v, 12, m.gn.weight, m.gn.bias, m.gn.eps)  # noqa: E731
    a_h = torch.sigmoid(gn(conv(x.mean(3))))  # (B, C, H)
    a_w = torch.sigmoid(gn(conv(x.mean(2))))  # (B, C, W)
    ref = torch.empty_like(x)
    for i in range(5):
        for j in range(9):
            ref[:, :, i, j] = x[:, :, i, j] * a_h[:, :, i] * a_w[:, :, j]
    torch.testing.assert_close(m(x), ref)
    assert ELA(256).build_notes == [] and ELA(256, conv_groups=32).conv.groups == 32


# ---------------------------------------------------------------------------------------------------- SK
def test_sk_group_clamp_and_branch_weights():
    m = SK(40)
    assert m.convs[0].groups == 20 and m.build_notes == ["groups 32 -> 20 (C=40)"]
    assert SK(256).convs[0].groups == 32 and SK(256).build_notes == []
    assert m.convs[1].dilation == (2, 2) and m.convs[1].padding == (2, 2)
    x = torch.randn(2, 40, 7, 5)
    a = m.weights(m.branch_outputs(x))
    assert a.shape == (2, 2, 40, 1, 1)
    torch.testing.assert_close(a.sum(1), torch.ones(2, 40, 1, 1))
    assert m.fc.out_channels == 32  # d = max(C/16, L=32)


# ---------------------------------------------------------------------------------------------------- BAM
def test_bam_fusions():
    x = torch.randn(2, 40, 13, 31)
    for fusion in ("sum", "mul"):
        m = _rand_params(BAM(40, fusion=fusion)).eval()
        mc, ms = m.channel_att(x), m.spatial_att(x)
        assert mc.shape == (2, 40, 1, 1) and ms.shape == (2, 1, 13, 31)
        comb = mc + ms if fusion == "sum" else mc * ms
        torch.testing.assert_close(m(x), x * (1 + torch.sigmoid(comb)))
    assert BAM(256).dilated[0].dilation == (4, 4) and BAM(256).dilated[0].padding == (4, 4)


# ---------------------------------------------------------------------------------------------------- GatherExcite
def test_gather_excite_default_is_se_form():
    m = _rand_params(GatherExcite(32))
    x = torch.randn(2, 32, 6, 9)
    ref = x * torch.sigmoid(m.mlp(x.mean((2, 3), keepdim=True)))
    torch.testing.assert_close(m(x), ref)


@pytest.mark.parametrize("extra_params", [False, True])
def test_gather_excite_local_extent_shapes_and_onnx(extra_params):
    ort = pytest.importorskip("onnxruntime")
    m = _rand_params(GatherExcite(32, extent=4, extra_params=extra_params)).eval()
    for hw in SIZES:
        x = torch.randn(1, 32, *hw)
        assert m(x).shape == x.shape
    f = io.BytesIO()
    dyn = {"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}}
    torch.onnx.export(m, (torch.randn(1, 32, 16, 16),), f, input_names=["x"], output_names=["y"],
                      dynamic_axes=dyn, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    for hw in [(16, 16), (20, 12), (13, 31)]:
        x = torch.randn(1, 32, *hw)
        with torch.no_grad():
            ref = m(x).numpy()
        assert np.abs(sess.run(None, {"x": x.numpy()})[0] - ref).max() < 1e-4


def test_gather_excite_refuses_fixed_size_form():
    with pytest.raises(ValueError, match="fixed input size"):
        GatherExcite(32, extent=0, extra_params=True)
    with pytest.raises(ValueError):
        GatherExcite(32, extent=3)


# ---------------------------------------------------------------------------------------------------- eSE, CPCA
def test_effective_se_formula():
    m = _rand_params(EffectiveSE(24))
    x = torch.randn(2, 24, 5, 3)
    torch.testing.assert_close(m(x), x * F.relu6(m.fc(x.mean((2, 3), keepdim=True)) + 3) / 6)


def test_cpca_matches_official_structure():
    m = _rand_params(CPCA(32)).double()
    x = torch.randn(2, 32, 9, 13, dtype=torch.float64)
    p = m.conv

    def mlp(v):
        return torch.sigmoid(m.fc2(F.relu(m.fc1(v))))

    u = F.gelu(p(x))
    u = u * (mlp(F.adaptive_avg_pool2d(u, 1)) + mlp(F.adaptive_max_pool2d(u, 1)))
    x0 = m.dw5(u)
    s = x0 + sum(seq[1](seq[0](x0)) for seq in m.strips)
    torch.testing.assert_close(m(x), p(p(s) * u))
    # the one shared 1x1 conv: exactly one C x C pointwise weight in the module
    assert sum(1 for w in m.parameters() if w.shape == (32, 32, 1, 1)) == 1


# ---------------------------------------------------------------------------------------------------- forms
def test_bam_official_forms_pool_as_the_official_code():
    """official: the left H x H square (the official avg_pool2d(x, H, stride=H)), then the first window of side
    min(H, W) where the official code cannot run; official_global: the global mean. Both: BN on the hidden vector,
    product fusion, exact width."""
    x = torch.randn(2, 32, 6, 10, dtype=torch.float64)
    m = _rand_params(BAM(32, form="official")).double().eval()
    g = _rand_params(BAM(32, form="official_global")).double().eval()
    assert m.fc1.out_channels == 2 and m.fusion == "mul" and m.build_notes == []

    def channel(mod, pooled):
        return mod.fc2(F.relu(mod.fc1_bn(mod.fc1(pooled))))

    torch.testing.assert_close(m.channel_att(x), channel(m, F.avg_pool2d(x, 6, stride=6)))
    torch.testing.assert_close(g.channel_att(x), channel(g, x.mean((2, 3), keepdim=True)))
    for hw in ((9, 4), (3, 8), (1, 5)):  # H > W, W >= 2H: the official code raises; the first window here
        xt = torch.randn(1, 32, *hw, dtype=torch.float64)
        s = min(hw)
        torch.testing.assert_close(m.channel_att(xt), channel(m, xt[..., :s, :s].mean((2, 3), keepdim=True)))
    torch.testing.assert_close(m(x), x * (1 + torch.sigmoid(m.channel_att(x) * m.spatial_att(x))))
    with pytest.raises(ValueError, match="fixes fusion='mul'"):
        BAM(32, form="official", fusion="sum")
    assert BAM(32, fusion="mul").fc1_bn is None  # the paper form's ablation switch stays


def test_sk_official_has_the_bn_on_z_and_no_bias():
    m = _rand_params(SK(64, form="official")).double()
    assert m.fc.bias is None and m.fc_bn.num_features == 32
    m.train()
    x = torch.randn(2, 64, 5, 6, dtype=torch.float64)
    feats = m.branch_outputs(x)
    z = m.fc((feats[0] + feats[1]).mean((2, 3), keepdim=True))
    z = F.relu(F.batch_norm(z, None, None, m.fc_bn.weight, m.fc_bn.bias, True, 0.0, 1e-5))
    a = m.select(z).reshape(2, 2, 64, 1, 1).softmax(1)
    torch.testing.assert_close(m(x), feats[0] * a[:, 0] + feats[1] * a[:, 1])
    assert m(x[:1]).shape == (1, 64, 5, 6)  # batch 1 in train mode: running statistics, no error


def test_gather_excite_forms():
    timm = GatherExcite(40, form="timm")
    assert timm.mlp[0].out_channels == 3 and GatherExcite(40, min_channels=1).mlp[0].out_channels == 2  # 2.5: round
    assert GatherExcite(24, form="timm").mlp[0].out_channels == 2 and GatherExcite(8, form="timm").mlp[0].out_channels == 1
    off = GatherExcite(32, form="official")
    assert sum(p.numel() for p in off.parameters()) == 0
    x = torch.randn(2, 32, 5, 7)
    torch.testing.assert_close(off(x), x * torch.sigmoid(x.mean((2, 3), keepdim=True)))
    for bad in ({"use_mlp": True}, {"extent": 4}, {"min_channels": 8}):
        with pytest.raises(ValueError):
            GatherExcite(32, form="official", **bad)
    with pytest.raises(ValueError, match="leave min_channels out"):
        GatherExcite(32, form="timm", min_channels=4)
    assert GatherExcite(32, form="timm", extent=4, extra_params=True).gather is not None


def test_cbam_official_zpool_is_max_then_mean():
    """Official weights load 1:1 in the official form: the paper form with the two input channels swapped agrees."""
    from models.attention.cbam import CBAM

    off = _rand_params(CBAM(32, form="official")).eval()
    pap = CBAM(32, min_channels=1).eval()
    state = off.state_dict()
    state["spatial.conv.weight"] = state["spatial.conv.weight"].flip(1)
    pap.load_state_dict(state)
    x = torch.randn(2, 32, 6, 9)
    torch.testing.assert_close(off(x), pap(x))
    assert off.channel.mlp[0].out_channels == 2


def test_eca_official_fixes_k3_and_soca_gc_se_official_widths():
    from models.attention.eca import ECA
    from models.attention.squeeze_excite import SE

    assert ECA(256).conv.kernel_size == (5,) and ECA(256, form="official").conv.kernel_size == (3,)
    assert ECA(256, kernel_size=7, form="official").conv.kernel_size == (7,)
    assert SE(40, form="official").fc1.out_channels == 2 and SE(40).fc1.out_channels == 8
    assert SOCA(24, reduction=8, form="official").fc1.out_channels == 3
    assert GCBlock(40, form="official").add_transform.conv1.out_channels == 2


def test_coordatt_bn_keeps_the_official_eps_inside_a_yolo_model():
    """ultralytics' initialize_weights resets every nn.BatchNorm2d to eps 1e-3 / momentum 0.03; CoordAtt's BN is a
    BatchNorm2dSafe and keeps the official PyTorch defaults."""
    from models.attention.coordinate import CoordAtt
    from models.yolo import build_model

    model = build_model("yolov5n-ca.yaml", nc=3)
    ca = [m for m in model.modules() if isinstance(m, CoordAtt)]
    assert len(ca) == 1 and (ca[0].bn1.eps, ca[0].bn1.momentum) == (1e-5, 0.1)
