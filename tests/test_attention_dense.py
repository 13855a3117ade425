"""dense_attention_check: finds dense attention modules, sizes their maps at imgsz, reports over-budget ones."""

from __future__ import annotations

import importlib

import torch
from torch import nn

from models.engine.checks import dense_attention_check
from models.attention.bot_mhsa import BoTMHSA
from models.attention.criss_cross import CrissCross
from models.attention.danet import DANet
from models.attention.non_local import NonLocal


def _down(c1, c2):
    return nn.Sequential(nn.Conv2d(c1, c2, 3, 2, 1), nn.SiLU())


class Nested(nn.Module):
    """A layer that hides its dense module one level down (like an attention inside a C3 block)."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)
        self.attn = BoTMHSA(c)

    def forward(self, x):
        return self.attn(self.conv(x))


class StandIn(nn.Module):
    """Detector-like: layers in ``self.model`` (nn.Sequential) tagged with ``.i`` and ``.type``."""

    def __init__(self):
        super().__init__()
        layers = [
            _down(3, 16),  # 0  P1/2
            _down(16, 16),  # 1  P2/4
            NonLocal(16),  # 2  at P2: 160x160 at 640 -> over budget
            _down(16, 32),  # 3  P3/8
            Nested(32),  # 4  BoTMHSA at P3 (nested) -> over budget
            CrissCross(32),  # 5  sparse: never reported
            _down(32, 32),  # 6  P4/16
            _down(32, 32),  # 7  P5/32
            DANet(32),  # 8  at P5: fine
        ]
        for i, m in enumerate(layers):
            m.i, m.type = i, type(m).__name__
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def test_reports_only_dense_modules_over_budget():
    model = StandIn().train()
    assert dense_attention_check(model, 640, batch=16, budget_gib=2.0) == []  # O(N C) working sets since SDPA
    msgs = dense_attention_check(model, 640, batch=16, budget_gib=0.05)
    assert len(msgs) == 2, msgs
    nl = next(m for m in msgs if "NonLocal" in m)
    assert "layer 2 (NonLocal)" in nl and "160x160" in nl and "stride 4" in nl
    assert "0.10 GiB" in nl  # 8 C N = 8 * 16 * 25600 elements * 16 * 2 bytes
    bot = next(m for m in msgs if "BoTMHSA" in m)
    assert "layer 4 (Nested)" in bot and "80x80" in bot and "1.15 GiB" in bot  # 9 * 4 heads * 6400 * (8 + 160) ...
    for m in msgs:
        assert "P5" in m and "CrissCross" in m and "working set" in m and "N^2" in m
    assert all(mod.training for mod in model.modules())  # train mode restored


def test_budget_batch_and_non_square_sizes():
    model = StandIn()
    assert dense_attention_check(model, 640, budget_gib=100.0) == []
    assert dense_attention_check(model, 320, batch=1, budget_gib=0.05) == []
    msgs = dense_attention_check(model, (640, 384), batch=16, budget_gib=0.02, dtype_bytes=4)
    assert any("160x96" in m for m in msgs) and any("80x48" in m for m in msgs)


def test_plain_sequential_and_no_dense_modules():
    seq = nn.Sequential(_down(3, 8), _down(8, 8), _down(8, 16), DANet(16))  # stride 8, no .i tags
    msgs = dense_attention_check(seq, 1280, batch=8, budget_gib=0.02)
    assert len(msgs) == 1 and "DANet" in msgs[0] and "160x160" in msgs[0] and "layer 3 (DANet)" in msgs[0]
    assert "0.07 GiB" in msgs[0]  # (11 * 16 * 25600 + 2 * 16^2) * 8 * 2 bytes
    assert dense_attention_check(nn.Sequential(_down(3, 8), CrissCross(8)), 1280, budget_gib=0.0) == []


def test_module_already_at_p5_gets_other_advice():
    seq = nn.Sequential(*[_down(3 if i == 0 else 8, 8) for i in range(5)], NonLocal(8))  # stride 32
    msgs = dense_attention_check(seq, 2560, batch=64, budget_gib=0.01)
    assert len(msgs) == 1 and "80x80" in msgs[0] and "already at P5" in msgs[0] and "CrissCross" in msgs[0]


def test_eval_mode_and_parameters_untouched():
    model = StandIn().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dense_attention_check(model, 640)
    assert not any(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# --------------------------------------------------------------- SDPA: equal to the explicit map, without it

import pytest  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import models.attention._sdpa as sdpa  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # small modules: one thread, no spin-waiting on a loaded CPU
from models.attention.biformer import BiLevelRoutingAttention  # noqa: E402
from models.attention.dat import DAttention  # noqa: E402

FLASH_CPU = "aten._scaled_dot_product_flash_attention_for_cpu.default"


def softmax_reference(q, k, v, scale, *widths_differ):
    """The textbook formula with the (Nq x Nk) map stored: softmax over keys of scale * q k^T, times v."""
    return torch.softmax(scale * q @ k.transpose(-1, -2), -1) @ v


class Ops(TorchDispatchMode):
    """Names of the aten ops run, and the largest tensor any of them produced (elements)."""

    def __init__(self):
        super().__init__()
        self.names, self.largest = set(), 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.names.add(str(func))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def _perturbed(m: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if torch.count_nonzero(p) == 0 or p.numel() == 1:
                p.copy_(0.5 * torch.randn_like(p))
    return m.double().train()


def _run(m: nn.Module, x: torch.Tensor):
    """Output, and the gradients of x and of every parameter, for one random output gradient."""
    x = x.clone().requires_grad_(True)
    y = m(x)
    grads = torch.autograd.grad(y, [x, *m.parameters()], torch.randn_like(y, generator=None), allow_unused=True)
    return [y.detach(), *(g for g in grads if g is not None)]


def _assert_all_close(got: list, want: list) -> None:
    """fp64 rounding, relative to the largest value of all: some gradients (key biases) are 0 up to rounding."""
    scale = max(1.0, *(t.abs().max().item() for t in want))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12 * scale)


SDPA_CASES = [  # (class, kwargs, input shape)
    (NonLocal, {}, (2, 16, 9, 7)), (NonLocal, {"form": "official"}, (2, 16, 9, 7)),
    (DANet, {}, (2, 16, 6, 10)), (DAttention, {}, (2, 32, 7, 9)), (DAttention, {"form": "official"}, (2, 32, 7, 9)),
    (BiLevelRoutingAttention, {"n_win": 3, "num_heads": 4, "topk": 3}, (2, 16, 8, 7)),
    (BiLevelRoutingAttention, {"n_win": 3, "num_heads": 4, "topk": 3, "qk_dim": 8}, (1, 16, 8, 7)),
    (BoTMHSA, {"num_heads": 2, "rel_size": 4}, (2, 16, 5, 7)),
]
SDPA_IDS = ["-".join([cls.__name__, *(f"{k}={v}" for k, v in kw.items())]) for cls, kw, _ in SDPA_CASES]


@pytest.mark.parametrize("cls, kwargs, shape", SDPA_CASES, ids=SDPA_IDS)
def test_fused_attention_equals_the_explicit_softmax_in_fp64(cls, kwargs, shape, monkeypatch):
    """The forward through the fused kernel (forced on every map size) gives the output and gradients of the same
    forward with the textbook softmax(q k^T) v in its place, to fp64 rounding; and the fused kernel was dispatched
    (not SDPA's math path, which stores the map)."""
    monkeypatch.setattr(sdpa, "EXPLICIT_MAP_ELEMENTS", 0)  # small maps on CPU would take the explicit form
    monkeypatch.setattr(sdpa, "EXPLICIT_MAP_ELEMENTS_LEAN", 0)
    torch.manual_seed(0)
    m = _perturbed(cls(shape[1], **kwargs))
    x = torch.randn(shape, dtype=torch.float64)
    torch.manual_seed(2)
    with Ops() as ops:
        fused = _run(m, x)
    assert FLASH_CPU in ops.names, sorted(ops.names)
    module = importlib.import_module(cls.__module__)
    for fn in ("fused_attention", "attend"):
        if hasattr(module, fn):
            monkeypatch.setattr(module, fn, softmax_reference)
    torch.manual_seed(2)
    explicit = _run(m, x)
    assert len(fused) == len(explicit)
    _assert_all_close(fused, explicit)


def test_bot_folded_relative_logits_equal_the_explicit_bias(monkeypatch):
    """BoTMHSA's relative logits folded into q and k ([q, l_h, l_w] . [k, onehot(x'), onehot(y')]) equal the explicit
    q.k + l_h[x'] + l_w[y'] map (which test_attention_self checks against the pairwise definition), values and
    gradients, in fp64; and the explicit form is what small CPU maps and exports take."""
    torch.manual_seed(0)
    m = _perturbed(BoTMHSA(16, num_heads=2, rel_size=4))
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    with Ops() as ops:
        torch.manual_seed(2)
        explicit = _run(m, x)  # 35 x 35 maps: explicit on CPU
    assert FLASH_CPU not in ops.names
    monkeypatch.setattr(sdpa, "EXPLICIT_MAP_ELEMENTS", 0)
    with Ops() as ops:
        torch.manual_seed(2)
        folded = _run(m, x)
    assert FLASH_CPU in ops.names
    _assert_all_close(folded, explicit)


def test_explicit_form_only_for_small_maps_of_unequal_widths():
    x = torch.zeros(1)
    assert sdpa.explicit_is_faster(x, 64, 400, 400, True)  # BoTMHSA at P5 of 640, batch 16, 4 heads
    assert not sdpa.explicit_is_faster(x, 64, 400, 400, widths_differ=False)
    assert not sdpa.explicit_is_faster(x, 4, 1600, 1600, True)  # BoTMHSA at 40x40: fused (0.75x the time)
    assert sdpa.explicit_is_faster(x, 16, 1600, 1600, True, lean=True)  # DANet at 40x40, batch 16: 41 M elements
    assert not sdpa.explicit_is_faster(x, 1, 6400, 6400, True, lean=True)  # DANet at P3 (80x80)
    assert not sdpa.explicit_is_faster(x, 32, 1600, 1600, True, lean=True)  # 82 M elements in all
    assert not sdpa.explicit_is_faster(x.to("meta"), 1, 400, 400, True)  # not CPU: the fused kernels take E != Ev


MEMORY_CASES = [  # (module, input) at sizes where the explicit maps would be >= 8x any tensor of the fused forward
    (lambda: NonLocal(16), (1, 16, 80, 80), 6400 * 1600),  # P3 of a 640 input
    (lambda: NonLocal(16, form="official"), (1, 16, 80, 80), 6400 * 1600),
    (lambda: DANet(8), (1, 8, 64, 64), 4096 * 4096),  # beyond the lean explicit form's 2^22 elements
    (lambda: BoTMHSA(16), (1, 16, 24, 32), 4 * 768 * 768),
    (lambda: DAttention(16), (1, 16, 48, 48), 8 * 2304 * 2304),
    (lambda: BiLevelRoutingAttention(16), (1, 16, 56, 56), 49 * 8 * 64 * 4 * 64),  # P x heads x n_tok x topk*n_tok
]


@pytest.mark.parametrize("make, shape, map_elements", MEMORY_CASES,
                         ids=["NonLocal", "NonLocal-official", "DANet", "BoTMHSA", "DAttention", "BiLevelRouting"])
def test_training_step_allocates_no_attention_map(make, shape, map_elements):
    """Forward and backward in training mode: no tensor of the size of the explicit attention maps (BiFormer: nor
    the P-times expanded gradient of the routed-region gather)."""
    torch.manual_seed(0)
    m = make().train()
    x = torch.randn(shape, requires_grad=True)
    with Ops() as ops:
        m(x).square().mean().backward()
    assert FLASH_CPU in ops.names
    assert ops.largest * 8 <= map_elements, f"largest tensor {ops.largest:,} elements, the maps {map_elements:,}"


ESTIMATE_CASES = [(NonLocal, 32, 20, 36), (DANet, 32, 24, 30), (BoTMHSA, 32, 16, 40), (DAttention, 32, 30, 20)]


@pytest.mark.parametrize("cls, c, h, w", ESTIMATE_CASES, ids=[c[0].__name__ for c in ESTIMATE_CASES])
def test_working_set_estimate_matches_the_measured_peak(cls, c, h, w, monkeypatch):
    """What the dense-memory warning sizes (``attention_map_elements``) is the module's measured forward+backward peak
    (fp32, fused path) within 25%."""
    from tools.measure import peak_memory_mb

    monkeypatch.setattr(sdpa, "EXPLICIT_MAP_ELEMENTS", 0)
    monkeypatch.setattr(sdpa, "EXPLICIT_MAP_ELEMENTS_LEAN", 0)
    torch.manual_seed(0)
    m = cls(c).train()
    x = torch.randn(1, c, h, w, requires_grad=True)
    measured = peak_memory_mb(lambda: m(x).square().mean().backward(), "cpu") * 2**20 / 4
    estimate = m.attention_map_elements(h, w)
    assert 0.8 <= measured / estimate <= 1.25, (measured, estimate)
