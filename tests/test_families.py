"""ultralytics' newer families build here exactly as ultralytics builds them.

The parametrisation walks the installed package's ``cfg/models`` folders (tools/families.py), so a YAML or family that
appears with an ultralytics upgrade is tested (or fails by name) without an edit here:

- every detection YAML x every scale it defines: the same layers as ultralytics' parser (types, ``from``, state-dict
  keys and shapes, saved outputs), built on the meta device;
- every detection YAML at its first scale: the whole ``DetectionModel`` built both ways from one seed has the same
  parameter count and keys, and with ultralytics' weights ours gives bit-equal outputs in eval and train mode
  (every scale: ``-m slow``, or ``python tools/families.py``);
- the end-to-end heads (YOLOv10's v10Detect, YOLO26's Detect with ``end2end``) give ultralytics' loss;
- every other YAML's head is a known head of another task.
"""

from __future__ import annotations

import pytest
import torch

from tools.families import (CFG_MODELS, build_pair, compare, detection_yamls, label, layer_problems, same_outputs,
                            scales_of, unclassified_yamls)

pytestmark = pytest.mark.usefixtures("one_thread")

YAMLS = detection_yamls()
PAIRS = [(p, s) for p in YAMLS for s in scales_of(p)]
FIRST = [(p, scales_of(p)[0]) for p in YAMLS]


def ids(pairs):
    return [label(p, s) for p, s in pairs]


def test_the_walk_finds_every_family_the_issue_names():
    """v3, v5, v6, v8 (p2/p6/ghost), v9, v10, 11, 12, 26 (p2/p6): if ultralytics moves its folders, this says so."""
    families = {p.parent.name for p in YAMLS}
    assert {"v3", "v5", "v6", "v8", "v9", "v10", "11", "12", "26"} <= families, families
    names = {p.stem for p in YAMLS}
    assert {"yolov8-p2", "yolov8-p6", "yolov8-ghost", "yolo26-p2", "yolo26-p6", "yolov9e", "yolov10n"} <= names
    assert len(PAIRS) >= 84


def test_every_installed_yaml_has_a_known_head():
    """A head that is neither a detection head nor a known head of another task fails here, by file."""
    assert unclassified_yamls() == [], [f"{p.relative_to(CFG_MODELS)}: {h}" for p, h in unclassified_yamls()]


@pytest.mark.parametrize("path, scale", PAIRS, ids=ids(PAIRS))
def test_layers_are_ultralytics_layers(path, scale):
    assert layer_problems(path, scale) == []


@pytest.mark.parametrize("path, scale", FIRST, ids=ids(FIRST))
def test_model_is_ultralytics_model(path, scale):
    c = compare(path, scale)
    assert (c.params, c.keys, c.eval, c.train) == (c.params_ultralytics, True, True, True), c


@pytest.mark.slow
@pytest.mark.parametrize("path, scale", PAIRS, ids=ids(PAIRS))
def test_model_is_ultralytics_model_at_every_scale(path, scale):
    assert compare(path, scale).exact


def _batch(nc: int) -> dict:
    g = torch.Generator().manual_seed(3)
    return {"img": torch.rand(2, 3, 64, 96, generator=g), "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
            "cls": torch.tensor([[0.0], [min(5, nc - 1)], [1.0]]),
            "bboxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.6, 0.5, 0.3, 0.2], [0.5, 0.5, 0.4, 0.6]])}


@pytest.mark.parametrize("stem, e2e", [("yolov10n", True), ("yolo26", True), ("yolo11", False)])
def test_loss_is_ultralytics_loss(stem, e2e):
    """The end-to-end heads train with ultralytics' end-to-end loss (one-to-many and one-to-one branches)."""
    from ultralytics.cfg import get_cfg

    path = next(p for p in YAMLS if p.stem == stem)
    theirs, ours = build_pair(path, scales_of(path)[0])
    ours.load_state_dict(theirs.state_dict())
    for m in (theirs, ours):
        assert (getattr(m.model[-1], "one2one_cv2", None) is not None) is e2e
    losses = []
    for m in (theirs, ours):
        m.args = get_cfg()
        m.train()
        loss, items = m.loss(_batch(m.yaml["nc"]))
        losses.append((loss.detach(), items))
    assert type(ours.criterion) is type(theirs.criterion)
    assert same_outputs(losses[0], losses[1])
    assert torch.isfinite(losses[1][0]).all() and losses[1][0].sum() > 0


@pytest.mark.slow
def test_families_doc_is_current():
    """docs/families.md is generated from these comparisons (minutes: every YAML x scale built twice)."""
    from tools import gen_families

    assert gen_families.main(["--check"]) == 0, "docs/families.md is out of date: run python tools/gen_families.py"
