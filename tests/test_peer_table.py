"""docs/peers.md is what tools/gen_peer_table.py renders from docs/peers/reference.json, and the data is sound."""

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
