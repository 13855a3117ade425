"""docs/peers.md is what tools/gen_peer_table.py renders from docs/peers/*.json, and the data is sound."""

import pytest


def test_peers_doc_is_up_to_date():
    from tools import gen_peer_table

    assert gen_peer_table.main(["--check"]) == 0, "run python tools/gen_peer_table.py"


def test_reference_records_source_commit_and_counts_for_every_yaml():
    from tools.gen_peer_table import exact, load

    models = load()["models"]
    assert len(models) >= 140
    for e in models:
        assert e["repo"] in ("ultralytics/yolov5", "WongKinYiu/yolov7") and len(e["commit"]) == 40
        assert e["yaml"].endswith(".yaml") and ("params" in e["peer"] or "error" in e["peer"])
    readable = [e for e in models if "params" in e["peer"]]
    assert all(exact(e) and e["outputs"]["equal"] for e in readable)
    v3 = next(e for e in models if e["release"] == "v3.1" and e["yaml"] == "models/yolov5s.yaml")
    assert v3["peer"]["params"] == 7_468_157  # YOLOv5 v3.1 yolov5s, BottleneckCSP with YOLOv5's Bottleneck


def test_check_fails_on_a_stale_doc(tmp_path):
    from tools import gen_peer_table

    stale = tmp_path / "peers.md"
    stale.write_text("old\n")
    assert gen_peer_table.main(["--check", "--output", str(stale)]) == 1


def test_yoloair_family_records_peer_counts_and_the_differences():
    from tools.gen_peer_table import SOURCES, exact, load

    models = load(SOURCES[1])["models"]
    assert len(models) == 21 and {e["repo"] for e in models} == {"iscyy/yoloair"}
    for e in models:
        assert len(e["commit"]) == 40 and e["yaml"].startswith("configs/attention/")
        assert ("params" in e["peer"] and "attention" in e["peer"]) or "error" in e["peer"]
        assert "params" in e["ours"] or "error" in e["ours"]
    built = {e["yaml"].split("/")[-1]: e for e in models if "params" in e["peer"]}
    assert len(built) == 13
    differ = {k: e["ours"]["params"] - e["peer"]["params"] for k, e in built.items() if not exact(e)}
    # under `dialect: yoloair` every module YOLOAir builds is built as YOLOAir's (the ports' modules are forms here)
    assert differ == {}
    assert all(e["keys"] == {"dialect": "yoloair"} for e in models)


TINY = """# written here in YOLOAir's (YOLOv5's) format
nc: 2
depth_multiple: 0.33
width_multiple: 0.25
anchors:
  - [10,13, 16,30, 33,23]
backbone:
  [[-1, 1, Conv, [64, 6, 2, 2]],
   [-1, 1, Conv, [128, 3, 2]],
   [-1, 1, SOCA, [128]],
   [-1, 1, SEAttention, [128]],
  ]
head:
  [[[-1], 1, Detect, [nc, anchors]]]
"""


def test_measure_builds_each_entry_with_its_keys(tmp_path, one_thread):
    import json

    from tools import gen_peer_table

    (tmp_path / "peer" / "cfg").mkdir(parents=True)
    (tmp_path / "peer" / "cfg" / "tiny.yaml").write_text(TINY)
    (tmp_path / "peer" / "cfg" / "bad.yaml").write_text(TINY.replace("SEAttention, [128]", "DANet, [512, 512, false]"))
    base = {"repo": "x/air", "release": "main", "commit": "0" * 40, "family": "air", "peer": {"error": "E: e"},
            "ours": {}}
    data = {"record": {"fields": ["params", "attention"], "error_chars": 400}, "models": [
        {**base, "yaml": "cfg/tiny.yaml"}, {**base, "yaml": "cfg/tiny.yaml", "keys": {"dialect": "yoloair"}},
        {**base, "yaml": "cfg/bad.yaml"}]}
    path, doc = tmp_path / "air.json", tmp_path / "peers.md"
    path.write_text(json.dumps(data))
    assert gen_peer_table.main(["--measure", f"x/air@main={tmp_path / 'peer'}", "--data", str(path),
                                "--output", str(doc)]) == 0
    plain, dialect, bad = json.loads(path.read_text())["models"]
    # without the key, YOLOAir's SEAttention [128] is refused: yoloair2 reads the width as its reduction
    assert plain["ours"]["error"].startswith("ConfigError: cfg/tiny.yaml: layer 3 (SEAttention): SEAttention [128] "
                                             "means different modules")
    assert [t for _, t, _ in dialect["ours"]["attention"]] == ["SOCA (YOLOAir)", "SEAttention -> SE"]
    assert dialect["ours"]["attention"][0][2] == 32 * 4 + 4 + 4 * 32 + 32  # YOLOAir's SOCA at C=32: reduction 8
    assert bad["ours"]["error"].startswith("ConfigError: cfg/bad.yaml: layer 3 (DANet)")
    text = doc.read_text()
    assert "| `cfg/tiny.yaml` | fails |" in text and "ours: ConfigError: layer 3 (DANet): DANet was given" in text
