"""iRMB, DeformableLKA, HiLo and MSDA: the behaviour the shared matrix and the golden fixtures do not cover.

iRMB's paper form (contiguous windows) against an explicit per-window reference and its locality, the official
form's strided grid; D-LKA's deformable depthwise conv against ``torchvision.ops.deform_conv2d`` in value and
gradient; HiLo's Lo-Fi map never stored and its working-set estimate; MSDA's unequal head split and its dilated
neighbourhoods against an explicit reference.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import models.attention._sdpa as sdpa
from models.attention.deformable_lka import DeformableLKA, _DeformDepthwise, deform_depthwise
from models.attention.hilo import HiLo
from models.attention.irmb import iRMB
from models.attention.msda import MSDA
from tests.test_attention_dense import FLASH_CPU, Ops

pytestmark = pytest.mark.usefixtures("one_thread")


def _perturb(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


# --- iRMB ---------------------------------------------------------------------------------------------------------


def _irmb_reference(m: iRMB, x: torch.Tensor) -> torch.Tensor:
    """The paper's iRMB written out window by window (contiguous ws x ws windows, explicit softmax)."""
    t = m.norm(x)
    b, c, h, w = t.shape
    ws, heads = m.ws, m.heads
    t = F.pad(t, (0, (-w) % ws, 0, (-h) % ws))
    qk, v = m.qk(t), t if m.attn_pre else F.relu(m.v(t))
    z = torch.zeros(b, v.shape[1], *t.shape[-2:], dtype=x.dtype)
    d, dv = c // heads, v.shape[1] // heads
    for i in range(0, t.shape[-2], ws):
        for j in range(0, t.shape[-1], ws):
            win = (slice(None), slice(None), slice(i, i + ws), slice(j, j + ws))
            q = qk[win][:, :c].reshape(b, heads, d, ws * ws)
            k = qk[win][:, c:].reshape(b, heads, d, ws * ws)
            vv = v[win].reshape(b, heads, dv, ws * ws)
            a = (q.transpose(-1, -2) @ k * d**-0.5).softmax(-1)  # (B, heads, L, L)
            z[win] = (vv @ a.transpose(-1, -2)).reshape(b, heads * dv, ws, ws)
    z = z[..., :h, :w]
    if m.attn_pre:
        z = F.relu(m.v(z))
    return x + m.proj(z + F.silu(m.conv_local_bn(m.conv_local(z))))


@pytest.mark.parametrize("kwargs", [{}, {"exp_ratio": 2.0}, {"attn_pre": True, "qkv_bias": True}],
                         ids=["defaults", "expanded-v", "attn_pre"])
def test_irmb_paper_form_is_contiguous_window_attention(kwargs):
    """float64: the default (paper) form equals the written-out per-window attention, also where v is wider than
    q/k (expansion 2: the explicit-softmax path of the SDPA helper) and with attention before v."""
    m = _perturb(iRMB(16, dim_head=8, window_size=4, **kwargs)).double().eval()
    x = torch.randn(2, 16, 9, 6, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(m(x), _irmb_reference(m, x), atol=1e-12, rtol=0)


def test_irmb_forms_differ_only_in_the_window_partition():
    """One window (H, W <= ws): both forms are the same attention. 14 x 7 with ws 7: the paper form is local (a pixel
    in the bottom window does not change the top window's outputs beyond the DW conv's reach), the official grid
    form puts rows 1, 3, ..., 13 in one window, so a change in row 13 reaches the top of the map."""
    torch.manual_seed(0)
    paper, official = _perturb(iRMB(16, dim_head=8)).eval(), iRMB(16, dim_head=8, form="official").eval()
    official.load_state_dict(paper.state_dict())
    x = torch.randn(1, 16, 7, 5)
    with torch.no_grad():
        assert torch.equal(paper(x), official(x))
        x = torch.randn(1, 16, 14, 7)
        x2 = x.clone()
        x2[..., 13, 3] += 5.0  # bottom window (rows 7-13) of the paper partition, rows 1, 3, ..., 13 of the grid
        dp, do = (paper(x2) - paper(x)).abs(), (official(x2) - official(x)).abs()
    assert dp[..., :6, :].max() == 0 and dp[..., 7:, :].max() > 0  # the DW 3x3 reaches row 6 only
    assert do[..., 1, :].max() > 0  # row 1 shares the grid window of row 13


def test_irmb_identity_init_and_head_clamp():
    m = iRMB(40)  # dim_head 64 > C: one head of width 40, noted
    assert m.heads == 1 and m.build_notes == ["heads 40/64 -> 1 (C=40, dim_head=64, expanded 40)"]
    assert iRMB(256).heads == 4 and iRMB(256).build_notes == []
    assert iRMB(48, dim_head=16, exp_ratio=1.5).heads == 3  # 3 heads split 48 and 72
    _perturb(m).train()
    assert m.init_identity()
    x = torch.randn(2, 40, 9, 11)
    assert torch.equal(m(x), x)
    with pytest.raises(ValueError, match="odd kernel_size"):
        iRMB(32, kernel_size=4)
    with pytest.raises(ValueError, match="norm_layer"):
        iRMB(32, norm_layer="gn")


# --- DeformableLKA ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k, pad, dil", [(5, 2, 1), (7, 9, 3), (3, 1, 1)])
def test_deformable_depthwise_conv_equals_torchvision_in_value_and_gradient(k, pad, dil):
    """float64, offsets of several pixels (many samples outside the map or across its border): output and the
    gradients of input, offsets and weight equal torchvision's deform_conv2d; the plain (exported) form too."""
    tv = pytest.importorskip("torchvision")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 9, 7, dtype=torch.float64, generator=g, requires_grad=True)
    off = (3 * torch.randn(2, 2 * k * k, 9, 7, dtype=torch.float64, generator=g)).requires_grad_()
    w = torch.randn(6, 1, k, k, dtype=torch.float64, generator=g, requires_grad=True)
    ref = tv.ops.deform_conv2d(x, off, w, padding=pad, dilation=dil)
    ours = _DeformDepthwise.apply(x, off, w, k, pad, dil)  # the training path (recomputing backward)
    plain = deform_depthwise(x, off, w, k, pad, dil)
    assert (ours - ref).abs().max() < 1e-12 and (plain - ref).abs().max() < 1e-12
    gy = torch.randn(ref.shape, dtype=torch.float64, generator=g)
    for a, b, c in zip(torch.autograd.grad(ref, (x, off, w), gy), torch.autograd.grad(ours, (x, off, w), gy),
                       torch.autograd.grad(plain, (x, off, w), gy)):
        assert (a - b).abs().max() < 1e-11 and (a - c).abs().max() < 1e-11


def test_deformable_lka_identity_and_bare_forms():
    m = _perturb(DeformableLKA(8))
    x = torch.randn(2, 8, 6, 5)
    assert m.init_identity() and torch.equal(m(x), x)
    bare = DeformableLKA(8, wrapped=False)
    assert not bare.init_identity() and not hasattr(bare, "proj_1")
    assert bare(x).shape == x.shape


def test_deformable_lka_half_and_bfloat16_backward():
    """fp16 forward (val.py --half) and a bf16 autocast training step: finite, gradients in the parameters' dtype."""
    m = DeformableLKA(8).train()
    x = torch.randn(2, 8, 10, 9, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    y.float().square().mean().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for p in m.parameters())
    with torch.no_grad():
        assert torch.isfinite(m.half()(10 * x.detach().half())).all()


# --- HiLo ---------------------------------------------------------------------------------------------------------


def test_hilo_training_step_stores_no_lofi_map():
    """P3-like 48 x 48 map: no tensor of the size of the Lo-Fi maps (7 heads x N x N / 4) is allocated."""
    m = HiLo(32).train()
    x = torch.randn(1, 32, 48, 48, requires_grad=True)
    with Ops() as ops:
        m(x).square().mean().backward()
    assert FLASH_CPU in ops.names
    assert ops.largest * 8 <= 7 * 2304 * 576, ops.largest


def test_hilo_working_set_estimate_matches_the_measured_peak(monkeypatch):
    from tools.measure import peak_memory_mb

    monkeypatch.setattr(sdpa, "EXPLICIT_MAP_ELEMENTS", 0)
    torch.manual_seed(0)
    m = HiLo(64).train()
    x = torch.randn(1, 64, 30, 20, requires_grad=True)
    measured = peak_memory_mb(lambda: m(x).square().mean().backward(), "cpu") * 2**20 / 4
    assert 0.8 <= measured / m.attention_map_elements(30, 20) <= 1.25


def test_hilo_head_split_window_one_and_identity():
    m = HiLo(64)
    assert (m.l_heads, m.h_heads) == (7, 1)  # int(8 * 0.9) Lo-Fi heads, as the official code
    full = HiLo(64, window_size=1)  # plain multi-head self-attention: every head Lo-Fi, no pooling
    assert (full.l_heads, full.h_heads) == (8, 0) and not hasattr(full, "h_qkv")
    hifi = HiLo(64, alpha=0.0)
    assert (hifi.l_heads, hifi.h_heads) == (0, 8) and not hasattr(hifi, "l_q")
    x = torch.randn(2, 64, 5, 7)
    for mod in (m, full, hifi):
        _perturb(mod)
        assert mod(x).shape == x.shape
        assert mod.init_identity() and torch.equal(mod(x), x)
    assert HiLo(24, num_heads=16).build_notes == ["heads 16 -> 12 (C=24)"]


# --- MSDA ---------------------------------------------------------------------------------------------------------


def _msda_reference(m: MSDA, x: torch.Tensor) -> torch.Tensor:
    """MSDA written out head by head with ``F.unfold`` neighbourhoods (zero padded) and an explicit softmax."""
    b, c, h, w = x.shape
    t = m.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    q, k, v = m.qkv(t).split(c, 1)
    kk, d = m.k * m.k, m.d
    rates = [r for r, n in zip(m.dilation, m.heads) for _ in range(n)]  # the rate of every head, in channel order
    heads = []
    for i, r in enumerate(rates):
        sl = slice(i * d, (i + 1) * d)
        unfold = lambda z: F.unfold(z[:, sl], m.k, dilation=r, padding=r * (m.k - 1) // 2).reshape(b, d, kk, h * w)
        logits = (q[:, sl].reshape(b, d, 1, h * w) * unfold(k)).sum(1) * d**-0.5  # (B, k^2, N)
        heads.append((logits.softmax(1).unsqueeze(1) * unfold(v)).sum(2).reshape(b, d, h, w))
    out = torch.cat(heads, 1)
    return x + m.proj(out.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("c, kwargs, split", [(32, {}, [3, 3, 2]), (40, {"num_heads": 5, "dilation": (1, 3)}, [3, 2]),
                                              (24, {"kernel_size": 5, "dilation": (2,)}, [8])],
                         ids=["8-heads-over-3-rates", "5-heads-over-2-rates", "one-rate-5x5"])
def test_msda_head_split_equals_per_head_dilated_attention(c, kwargs, split):
    """float64: uneven head splits (where the official code asserts) are per-head SWDA with each head's rate; maps
    smaller than the dilated window (5 x 4 with rate 3: a 7 x 7 span) included."""
    m = _perturb(MSDA(c, **kwargs)).double()
    assert m.heads == split and m.build_notes == []
    for shape in ((2, c, 9, 11), (1, c, 5, 4)):
        x = torch.randn(shape, dtype=torch.float64)
        with torch.no_grad():
            assert torch.allclose(m(x), _msda_reference(m, x), atol=1e-12, rtol=0)


def test_msda_identity_and_clamps():
    m = _perturb(MSDA(16))
    x = torch.randn(2, 16, 6, 7)
    assert m.init_identity() and torch.equal(m(x), x)
    small = MSDA(2)
    assert small.heads == [1, 1] and small.dilation == (1, 2)
    assert small.build_notes == ["heads 8 -> 2 (C=2)", "dilation (1, 2, 3) -> (1, 2) (2 heads)"]
    with pytest.raises(ValueError, match="odd kernel_size"):
        MSDA(16, kernel_size=4)


def test_deformable_lka_propagates_nan_instead_of_indexing_out_of_range():
    """NaN offsets (a diverged model; ultralytics' GFLOPs probe feeds torch.empty, whatever the memory held) read
    padding: the output is NaN, as any layer's, not an IndexError from a NaN cast to int64."""
    m = DeformableLKA(16).eval()
    with torch.no_grad():
        assert m(torch.full((1, 16, 9, 7), float("nan"))).isnan().all()
        assert m(torch.randn(1, 16, 9, 7)).isfinite().all()


def test_model_gflops_are_probed_on_zeros():
    """The GFLOPs of the model summary and docs/modules.md do not depend on what memory held (DeformableLKA inside)."""
    from models.yolo import build_model, model_flops

    model = build_model("yolov5n-deformablelka.yaml")
    assert model_flops(model, 320) == model_flops(model, 320) > 0
