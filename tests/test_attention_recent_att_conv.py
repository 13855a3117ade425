"""SCSA, CAFM, MSCA, SEAM, MultiSEAM: the behaviour the shared matrix does not cover (forms, the official codes'
grids on small and odd maps, identity starts, YOLO-FaceV2's YAML rows)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.attention.cafm import CAFM
from models.attention.msca import MSCA
from models.attention.scsa import SCSA
from models.attention.seam import SEAM, MultiSEAM

pytestmark = pytest.mark.usefixtures("one_thread")


def randomised(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (zero-initialised layers included), in eval mode and float64."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m.double().eval()


# --- SCSA: the 7x7 pooling of the channel self-attention ---------------------------------------------------------


def test_scsa_full_form_counts_every_pixel_and_official_form_drops_the_remainder():
    x = torch.randn(2, 8, 20, 12, dtype=torch.float64)
    full, official = SCSA(8), SCSA(8, form="official")
    # full: 3 x 2 windows, the last row/column partial (means of the pixels they hold)
    want = torch.stack([torch.stack([x[..., r:r + 7, c:c + 7].mean((2, 3)) for c in (0, 7)], -1)
                        for r in (0, 7, 14)], -2)
    torch.testing.assert_close(full._pool(x), want, rtol=0, atol=1e-12)
    # official: AvgPool2d(7, 7) (floor): rows 14-19 and columns 7-11 left out
    torch.testing.assert_close(official._pool(x), F.avg_pool2d(x, 7, 7), rtol=0, atol=0)


@pytest.mark.parametrize("h, w", [(1, 1), (5, 3), (6, 14)])
def test_scsa_sides_shorter_than_the_window_are_one_window_in_both_forms(h, w):
    """Where the official AvgPool2d(7, 7) raises (a side under 7), that side is one window of its whole length."""
    x = torch.randn(1, 8, h, w, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="too small"):
        F.avg_pool2d(x, 7, 7)
    want = torch.stack([x[..., :, c:c + 7].mean((2, 3)) for c in range(0, w, 7)], -1)[..., None, :]
    for form in ("full", "official"):
        torch.testing.assert_close(SCSA(8, form=form)._pool(x), want, rtol=0, atol=1e-12)


def test_scsa_forms_agree_on_multiples_of_the_window_and_global_pooling():
    x = torch.randn(2, 16, 14, 21, dtype=torch.float64)
    a, b = randomised(SCSA(16, num_heads=2)), randomised(SCSA(16, num_heads=2, form="official"))
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=1e-12)
    g = randomised(SCSA(16, window_size=-1))
    torch.testing.assert_close(g._pool(x), x.mean((2, 3), keepdim=True), rtol=0, atol=0)


def test_scsa_channel_count_and_head_clamp():
    with pytest.raises(ValueError, match="divisible by 4"):
        SCSA(18)
    m = SCSA(20, num_heads=8)
    assert m.num_heads == 5 and m.build_notes == ["num_heads 8 -> 5 (C=20)"]


# --- CAFM: the two groupings of the local branch, the identity start ---------------------------------------------


def _local_reach(form: str) -> int:
    """Pixels of the local branch's output that change when the input changes at one pixel, outside the 5 x 5
    neighbourhood a 3x3 depthwise conv followed by a 3x3 conv can reach."""
    m = randomised(CAFM(16, num_heads=2, wrapped=False, form=form))
    x = torch.randn(1, 16, 9, 11, dtype=torch.float64)
    y = x.clone()
    y[..., 4, 5] += 1.0
    with torch.no_grad():
        changed = (m._local(m.qkv_dwconv(m.qkv(x))) - m._local(m.qkv_dwconv(m.qkv(y)))).abs().amax(1)[0] > 1e-12
    changed[2:7, 3:8] = False
    return int(changed.sum())


def test_cafm_paper_form_local_branch_is_a_convolution_official_form_mixes_positions():
    assert _local_reach("paper") == 0
    assert _local_reach("official") > 0  # the channel-major buffer read as pixels: far positions mix


def test_cafm_forms_share_the_global_branch():
    x = torch.randn(2, 16, 6, 10, dtype=torch.float64)
    a, b = randomised(CAFM(16, num_heads=4)), randomised(CAFM(16, num_heads=4, form="official"))
    for m in (a, b):
        torch.nn.init.zeros_(m.dep_conv.weight), torch.nn.init.zeros_(m.dep_conv.bias)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    assert not torch.allclose(a(x), x)


@pytest.mark.parametrize("module", [CAFM, MSCA])
def test_residual_forms_start_as_the_identity_and_bare_forms_cannot(module):
    x = torch.randn(2, 16, 7, 5)
    m = randomised(module(16)).float()
    assert m.init_identity() is True
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)
    assert module(16, wrapped=False).init_identity() is False


def test_msca_bare_form_is_an_unbounded_gate_on_x():
    m = randomised(MSCA(8, wrapped=False))
    x = torch.randn(1, 8, 9, 6, dtype=torch.float64)
    torch.testing.assert_close(m(x), m.msca.gate(x) * x, rtol=0, atol=0)
    with pytest.raises(ValueError, match="odd"):
        MSCA(8, kernel_sizes=(7, 10))


# --- SEAM / MultiSEAM ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [SEAM, MultiSEAM])
def test_seam_gates_only_amplify(module):
    m = randomised(module(16, reduction=4))
    x = torch.randn(2, 16, 12, 9, dtype=torch.float64)
    gate = m.channel_gate(x)
    assert gate.shape == (2, 16, 1, 1) and bool(((gate > 1) & (gate < np.e)).all())
    torch.testing.assert_close(m(x), x * gate, rtol=0, atol=0)
    assert m.init_identity() is False


def test_multiseam_forms_agree_where_every_patch_size_divides_the_map():
    x = torch.randn(2, 8, 8, 12, dtype=torch.float64)
    a = randomised(MultiSEAM(8, patch_size=(2, 4), reduction=4, form="full"))
    b = randomised(MultiSEAM(8, patch_size=(2, 4), reduction=4))
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_multiseam_full_form_pads_to_whole_patches_and_official_form_floors():
    m = randomised(MultiSEAM(8, reduction=4))
    x = torch.randn(1, 8, 13, 9, dtype=torch.float64)
    with torch.no_grad():
        for branch in m.branches:
            p = branch.patch
            padded = F.pad(x, (0, -9 % p, 0, -13 % p))
            torch.testing.assert_close(branch(x, floor=False), branch(padded, floor=True), rtol=0, atol=0)
            cropped = x[..., : 13 // p * p, : 9 // p * p]
            torch.testing.assert_close(branch(x, floor=True), branch(cropped, floor=False), rtol=0, atol=0)


def test_multiseam_runs_on_maps_smaller_than_a_patch():
    """The official strided patch conv raises below p pixels; both forms pad such a side to one patch."""
    m = MultiSEAM(8, reduction=4).train()
    x = torch.randn(1, 8, 3, 5)
    with pytest.raises(RuntimeError):
        F.conv2d(x, torch.randn(8, 8, 6, 6), stride=6)
    for form in ("full", "official"):
        m.form = form
        assert m(x).shape == x.shape


def test_yolo_facev2_rows_build_the_same_modules():
    """YOLO-FaceV2 writes [c2, n, reduction] for SEAM and [c2, depth, kernel_size, patch_size, reduction] for
    MultiSEAM; after the channel count the order is ours too."""
    from models.parse.build import parse_model

    d = {"nc": 1, "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "SEAM", [64, 1, 8]],
                               [-1, 1, "MultiSEAM", [64, 1, 3, [6, 7, 8], 16]]], "head": []}
    layers, _ = parse_model(d, 3, verbose=False)
    seam, multi = layers[1], layers[2]
    assert isinstance(seam, SEAM) and len(seam.mixers) == 1 and seam.gate.fc1.out_features == 8
    assert isinstance(multi, MultiSEAM) and multi.patch_size == (6, 7, 8) and multi.gate.fc1.out_features == 4


# --- exported graphs on the sizes the official codes cannot run ---------------------------------------------------


@pytest.mark.parametrize("name, module", [("SCSA-official", SCSA(16, form="official")),
                                          ("MultiSEAM-official", MultiSEAM(16, form="official")),
                                          ("MultiSEAM", MultiSEAM(16))])
def test_dynamic_onnx_export_on_maps_under_one_window(name, module):
    ort = pytest.importorskip("onnxruntime")
    m = module.eval()
    f = io.BytesIO()
    torch.onnx.export(m, (torch.randn(1, 16, 16, 16),), f, input_names=["x"], output_names=["y"], opset_version=17,
                      dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}}, dynamo=False)
    sess = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    for h, w in [(1, 1), (5, 9), (7, 14), (20, 12), (13, 31)]:
        x = torch.randn(1, 16, h, w)
        with torch.no_grad():
            ref = m(x).numpy()
        out = sess.run(None, {"x": x.numpy()})[0]
        assert np.abs(out - ref).max() <= 1e-4 + 1e-4 * float(np.abs(ref).max()), f"{name} at {h}x{w}"
