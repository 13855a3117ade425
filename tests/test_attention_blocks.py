"""Attention inside blocks (C3Att, ELANAtt) chosen by name in the YAML row, and the identity start of every module."""

from __future__ import annotations

import pytest
import torch

from models.layers.attention_blocks import ResidualBlend
from models.registry.protocol import init_identity
from models.registry import attention_specs
from models.registry import ConfigError
from models.yolo import build_model

SPECS = {s.name: s for s in attention_specs()}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(rows: list, head_from=(-1,)) -> dict:
    return {"nc": 3, "depth_multiple": 1.0, "width_multiple": 1.0,
            "backbone": [[-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]], *rows,
                         [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [64, 3, 2]]],
            "head": [[[-3, -2, -1], 1, "Detect", ["nc"]]]}


@pytest.mark.parametrize("args, attention, shortcut", [
    ([64, "CBAM"], "CBAM", True),
    ([64, False, "SE"], "SE", False),
    ([64, False, {"attention": "CBAM", "reduction": 2}], "CBAM", False),
])
def test_c3att_rows_name_the_attention(args, attention, shortcut):
    m = build_model(tiny([[-1, 2, "C3Att", args]])).model[2]
    assert type(m).__name__ == "C3Att" and m.attention == attention and len(m.m) == 2
    assert all(type(b.att).__name__ == attention for b in m.m) and m.m[0].add is shortcut
    if isinstance(args[-1], dict):
        assert m.m[0].att.channel.mlp[0].out_channels == 32 // 2  # the default reduction 16 would give 8


@pytest.mark.parametrize("args, message", [
    ([64, "CBAMM"], "unknown layer 'CBAMM'"),
    ([64, "Conv"], "not an attention module"),
    ([64, False], "name the attention module"),
    ([64, "SE", {"attention": "CBAM"}], "'attention' given twice"),
    ([64, {"attention": "SE", "reductoin": 8}], "bad arguments for SE"),
])
def test_c3att_bad_rows_fail_with_the_layer_and_the_reason(args, message):
    with pytest.raises(ConfigError) as e:
        build_model(tiny([[-1, 1, "C3Att", args]]))
    assert "layer 2 (C3Att)" in str(e.value) and message in str(e.value), str(e.value)


def test_c3att_at_identity_computes_what_c3_computes():
    plain = build_model(tiny([[-1, 2, "C3", [64]]])).eval()
    withatt = build_model(tiny([[-1, 2, "C3Att", [64, "GCBlock"]]])).eval()
    withatt.load_state_dict(plain.state_dict(), strict=False)
    assert init_identity(withatt.model[2])
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(plain(x)[0], withatt(x)[0])


ELAN_ROWS = [  # yolov7-tiny's ELAN as rows: a, b, two 3x3 stages on b, Concat [s2, s1, b, a], 1x1
    [-1, 1, "Conv", [32, 1, 1, None, 1, "nn.LeakyReLU(0.1)"]],
    [-2, 1, "Conv", [32, 1, 1, None, 1, "nn.LeakyReLU(0.1)"]],
    [-1, 1, "Conv", [32, 3, 1, None, 1, "nn.LeakyReLU(0.1)"]],
    [-1, 1, "Conv", [32, 3, 1, None, 1, "nn.LeakyReLU(0.1)"]],
    [[-1, -2, -3, -4], 1, "Concat", [1]],
    [-1, 1, "Conv", [64, 1, 1, None, 1, "nn.LeakyReLU(0.1)"]],
]


def test_elanatt_at_identity_computes_what_yolov7s_elan_rows_compute():
    rows = build_model(tiny(ELAN_ROWS)).eval()
    block = build_model(tiny([[-1, 2, "ELANAtt", [64, {"attention": "GCBlock", "e": 0.5, "depth": 1},
                                                   "nn.LeakyReLU(0.1)"]]])).eval()
    elan = block.model[2]
    assert isinstance(elan.cv1.act, torch.nn.LeakyReLU) and len(elan.stages) == 2
    src = rows.state_dict()
    mapping = {"model.2.": "model.2.cv1.", "model.3.": "model.2.cv2.", "model.4.": "model.2.stages.0.0.",
               "model.5.": "model.2.stages.1.0.", "model.7.": "model.2.cv3.", "model.8.": "model.3.",
               "model.9.": "model.4.", "model.10.": "model.5."}
    moved = {}
    for k, v in src.items():
        for a, b in mapping.items():
            if k.startswith(a):
                moved[b + k[len(a):]] = v
    moved.update({k: v for k, v in src.items() if k.startswith(("model.0.", "model.1."))})
    missing = block.load_state_dict(moved, strict=False).missing_keys
    assert missing and all(k.split(".")[2:5:2] == ["stages", "1"] for k in missing), missing  # only the attention
    assert elan.init_identity()
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(rows(x)[0], block(x)[0])


@pytest.mark.parametrize("name", sorted(SPECS))
def test_identity_start_is_exact_natively_or_through_residual_blend(name):
    torch.manual_seed(0)
    m = SPECS[name].cls(24)
    native = init_identity(m)
    if not native:
        m = ResidualBlend(24, name)
        with torch.no_grad():
            m.alpha.fill_(0.5)  # as after some training: not the identity ...
        assert init_identity(m)  # ... until reset
    m.eval()
    x = torch.randn(2, 24, 7, 5)
    with torch.no_grad():
        assert torch.equal(m(x), x), f"{name}: init_identity() returned True but the output is not x"
