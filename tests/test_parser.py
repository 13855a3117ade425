"""The YAML parser: registry lookup, channel inference and checks, safe arguments, clear errors."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from models.registry import LAYERS
from models.parse.read import load_config
from models.parse.build import parse_model
from models.registry import ConfigError
from models.yolo import build_model


def base_dict(scale="s") -> dict:
    d = load_config("yolov5.yaml")
    d["scale"] = scale
    d["yaml_file"] = "test.yaml"
    return d


def with_row(d: dict, index: int, row: list) -> dict:
    """Insert a row after backbone layer ``index - 1`` (only valid for index <= len(backbone))."""
    d = copy.deepcopy(d)
    d["backbone"].insert(index, row)
    return d


def test_yolov5s_matches_ultralytics_yolov5su_exactly():
    from ultralytics.nn.tasks import DetectionModel

    ours = build_model("yolov5s.yaml")
    theirs = DetectionModel("yolov5s.yaml", verbose=False)
    assert sum(p.numel() for p in ours.parameters()) == 9_153_152
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    theirs.load_state_dict(a)
    ours.eval(), theirs.eval()
    x = torch.rand(1, 3, 128, 96)
    with torch.no_grad():
        ya, yb = ours(x), theirs(x)
    ya, yb = (ya[0] if isinstance(ya, (list, tuple)) else ya), (yb[0] if isinstance(yb, (list, tuple)) else yb)
    torch.testing.assert_close(ya, yb)


def test_scale_letter_picks_scale_from_name():
    n, s = build_model("yolov5n-cbam.yaml"), build_model("yolov5s-cbam.yaml")
    assert n.model[10].type == "CBAM"
    assert n.model[10].channel.mlp[0].in_channels == 256  # 1024 * 0.25
    assert s.model[10].channel.mlp[0].in_channels == 512  # 1024 * 0.50


def test_classic_depth_width_yaml(tmp_path):
    d = base_dict()
    d.pop("scales"), d.pop("scale")
    d.update(depth_multiple=0.33, width_multiple=0.5)
    f = tmp_path / "classic.yaml"
    f.write_text(yaml.safe_dump({k: v for k, v in d.items() if k != "yaml_file"}))
    assert sum(p.numel() for p in build_model(str(f)).parameters()) == 9_153_152


def test_attention_row_nominal_channels_scaled_and_checked():
    d = with_row(base_dict(), 10, [-1, 1, "CBAM", [1024]])
    d["head"][-1][0] = [18, 21, 24]
    for row in d["head"]:
        if row[2] == "Concat" and row[0][1] >= 10:
            row[0][1] += 1
    layers, _ = parse_model(d, verbose=False)
    assert layers[10].channel.mlp[0].in_channels == 512


def test_attention_row_without_channels_and_with_mapping():
    d = with_row(base_dict(), 9, [-1, 1, "CBAM", [{"reduction": 8, "kernel_size": 3}]])
    d["backbone"].pop()  # drop SPPF so indices stay valid
    layers, _ = parse_model(d, verbose=False)
    cbam = layers[9]
    assert cbam.channel.mlp[0].out_channels == 512 // 8 and cbam.spatial.conv.kernel_size == (3, 3)
    d = with_row(base_dict(), 9, [-1, 1, "SE", []])
    d["backbone"].pop()
    assert parse_model(d, verbose=False)[0][9].fc1.in_channels == 512


def test_channel_mismatch_error_names_layer_module_numbers_and_fix():
    d = with_row(base_dict(), 9, [-1, 1, "CBAM", [512]])  # after C3 1024*0.5 = 512 real, YAML says 512 -> 256
    d["backbone"].pop()
    with pytest.raises(ConfigError) as e:
        parse_model(d, verbose=False)
    msg = str(e.value)
    for part in ("test.yaml", "layer 9", "CBAM", "512", "256", "has 512 channels", "write 1024"):
        assert part in msg, (part, msg)


def test_bad_hyperparameter_name_is_reported():
    d = with_row(base_dict(), 9, [-1, 1, "CBAM", [1024, {"ratio": 8}]])
    d["backbone"].pop()
    with pytest.raises(ConfigError, match=r"layer 9 \(CBAM\).*ratio.*accepts: reduction, kernel_size"):
        parse_model(d, verbose=False)


def test_unknown_module_lists_closest_names():
    d = with_row(base_dict(), 9, [-1, 1, "CBAN", []])
    d["backbone"].pop()
    with pytest.raises(ConfigError, match=r"layer 9 \(CBAN\): unknown layer 'CBAN'. Did you mean: CBAM"):
        parse_model(d, verbose=False)


def test_registry_unknown_message_names_the_closest_few_not_the_registry():
    with pytest.raises(KeyError) as e:
        LAYERS.get("CBAMs")
    msg = e.value.args[0]
    assert msg.startswith("unknown layer 'CBAMs'. Did you mean: CBAM, BAM")  # the closest first (CAFM may follow)
    assert "Registered" not in msg and "ShuffleAttention" not in msg and "docs/modules.md" in msg
    with pytest.raises(KeyError, match=r"unknown layer 'Nope'\. All names: docs/modules.md, docs/aliases.md"):
        LAYERS.get("Nope")


def test_unknown_names_of_all_rows_are_reported_before_anything_is_built():
    d = with_row(base_dict(), 9, [-1, 1, "CBAN", []])
    d["backbone"].pop()
    d["head"][0][2] = "Convv"  # typos in the head too; the bad row 12 ('from' 99) is not reached
    d["head"][2] = [99, 1, "Concat", [1]]
    d["head"][3] = [-1, 3, "C3x3", [512]]
    with pytest.raises(ConfigError) as e:
        parse_model(d, verbose=False)
    lines = str(e.value).splitlines()
    assert lines[0] == "test.yaml: 3 layer names are not provided here:"
    assert "layer 9 (CBAN): unknown layer 'CBAN'. Did you mean: CBAM" in lines[1]
    assert "layer 10 (Convv): unknown layer 'Convv'. Did you mean: Conv" in lines[2]
    assert "layer 13 (C3x3): unknown layer 'C3x3'. Did you mean: C3x, C3" in lines[3]


@pytest.mark.parametrize(
    "field,value",
    [
        ("module", "__import__('os').system('touch {marker}')"),
        ("arg", "__import__('os').system('touch {marker}')"),
        ("arg", "exec('open(\"{marker}\", \"w\")')"),
        ("module", "os.system"),
    ],
)
def test_code_in_yaml_is_rejected_and_not_executed(tmp_path, field, value):
    marker = tmp_path / "pwned"
    value = value.format(marker=marker)
    row = [-1, 1, value, []] if field == "module" else [-1, 1, "nn.Upsample", [None, 2, value]]
    d = with_row(base_dict(), 9, row)
    d["backbone"].pop()
    with pytest.raises(ConfigError):
        parse_model(d, verbose=False)
    assert not marker.exists()


def test_from_index_out_of_range():
    d = base_dict()
    d["head"][2][0] = [-1, 30]
    with pytest.raises(ConfigError, match=r"layer 12 \(Concat\): 'from' index 30 points to layer 30"):
        parse_model(d, verbose=False)


def test_activation_whitelist():
    from models.registry.values import parse_activation

    act = parse_activation("nn.LeakyReLU(0.1)")
    assert isinstance(act, torch.nn.LeakyReLU) and act.negative_slope == 0.1
    for bad in ("nn.Module()", "os.system('x')", "nn.LeakyReLU(__import__('os'))"):
        with pytest.raises(ValueError):
            parse_activation(bad)


def test_missing_config_names_the_closest_ones():
    with pytest.raises(FileNotFoundError, match=r"not found .*Closest: yolov5-\w+\.yaml") as e:
        load_config("yolov5s-cbma.yaml")
    assert "yolov5-cbam.yaml" in str(e.value).split("Closest:")[1]


def test_summary_printed_with_layer_table(capsys):
    from ultralytics.utils import LOGGER

    records = []

    class H:
        level = 0

        def handle(self, r):
            records.append(r.getMessage())

    import logging

    h = logging.Handler()
    h.emit = lambda r: records.append(r.getMessage())
    LOGGER.addHandler(h)
    try:
        build_model("yolov5s-cbam.yaml", verbose=True)
    finally:
        LOGGER.removeHandler(h)
    text = "\n".join(records)
    assert "CBAM" in text and "summary" in text and "GFLOPs" in text and "parameters" in text


def test_clamped_group_counts_are_reported_in_the_summary():
    import logging

    from ultralytics.utils import LOGGER

    d = {"nc": 2, "yaml_file": "tiny.yaml", "backbone": [[-1, 1, "Conv", [40, 3, 2]], [-1, 1, "ShuffleAttention", []]],
         "head": [[-1, 1, "Conv", [16, 1, 1]]]}
    records = []
    h = logging.Handler()
    h.emit = lambda r: records.append(r.getMessage())
    LOGGER.addHandler(h)
    try:
        layers, _ = parse_model(d, verbose=True)
    finally:
        LOGGER.removeHandler(h)
    notes = getattr(layers[1], "build_notes", [])
    assert notes, "ShuffleAttention's default G=64 does not divide C/2=20: it must clamp and say so"
    assert any(n in r for r in records for n in notes)
