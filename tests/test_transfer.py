"""Pretrained weights across inserted/removed layers: structural alignment, the report, identity start."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path

import pytest
import torch
from ultralytics.utils.torch_utils import intersect_dicts

from models.parse.read import load_config
from models.yolo import build_model
from models.weights.transfer import transfer_weights
from models.surgery.insertion import insert, insert_layers

ROOT = Path(__file__).resolve().parents[1]

# A YOLOv7-style chain of identical 3x3 convs (an ELAN's inner path): a name-based loader shifts weights by one.
CHAIN = {
    "nc": 3,
    "depth_multiple": 1.0,
    "width_multiple": 1.0,
    "backbone": [
        [-1, 1, "Conv", [16, 3, 2]],  # 0
        [-1, 1, "Conv", [32, 3, 2]],  # 1
        [-1, 1, "Conv", [32, 3, 1]],  # 2
        [-1, 1, "Conv", [32, 3, 1]],  # 3
        [-1, 1, "Conv", [32, 3, 1]],  # 4
        [-1, 1, "Conv", [32, 3, 1]],  # 5
        [[-1, -3, -4], 1, "Concat", [1]],  # 6
        [-1, 1, "Conv", [64, 3, 2]],  # 7
        [-1, 1, "Conv", [64, 3, 2]],  # 8
    ],
    "head": [[[6, 7, 8], 1, "Detect", ["nc"]]],
}


pytestmark = pytest.mark.usefixtures("one_thread")


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A stand-in for trained weights: every tensor perturbed (a fresh Detect head outputs constants)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point:
                if name.endswith("running_var"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=g))
                else:
                    t.add_(0.05 * torch.randn(t.shape, generator=g))
    return model


def predict(model, x):
    model.eval()
    with torch.no_grad():
        y = model(x)
    return y[0] if isinstance(y, (tuple, list)) else y


def layer_sd(model, i: int) -> dict:
    return model.model[i].state_dict()


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_yolov5s_into_yolov5s_cbam_moves_every_layer_after_the_insertion():
    base = randomise(build_model("yolov5s.yaml"))
    new = build_model("yolov5s-cbam.yaml")
    report = transfer_weights(new, base, verbose=False)
    assert str(report) == "transferred 427/437 tensors from pretrained model; new layers: 10 CBAM; skipped: none"
    assert report.mapping == {**{i: i for i in range(10)}, **{i: i + 1 for i in range(10, 25)}}
    for b, n in report.mapping.items():
        assert same_tensors(layer_sd(base, b), layer_sd(new, n)), (b, n)
    assert "10-24 -> 11-25" in report.details()
    # a loader matching key names keeps only what precedes the insertion (and the head, which happens to fit)
    by_name = intersect_dicts(base.state_dict(), new.state_dict())
    assert len(by_name) < 300


def test_never_loads_a_same_shaped_neighbour():
    base = randomise(build_model(CHAIN), seed=1)
    result = insert_layers(CHAIN, ["SimAM@3"])  # inside the chain of identical convs 2..5
    new = build_model(result.cfg)
    report = transfer_weights(new, base, verbose=False)
    assert report.new_layers == [(4, "SimAM")]
    for b in (4, 5):  # base 4 and 5 are now 5 and 6
        assert same_tensors(layer_sd(base, b), layer_sd(new, b + 1))
        # ... where a name-based loader would have put base 5 into new 5: same shapes, different layer
    assert all(layer_sd(base, 5)[k].shape == v.shape for k, v in layer_sd(new, 5).items())
    assert not same_tensors(layer_sd(base, 5), layer_sd(new, 5))


def test_removed_layers_are_reported_and_the_rest_still_lines_up():
    base = randomise(build_model("yolov5n-cbam.yaml"))
    new = build_model("yolov5n.yaml")
    report = transfer_weights(new, base, verbose=False)
    assert report.removed == [(10, "CBAM")]
    assert report.transferred == report.total == len(new.state_dict())
    assert "skipped: base 10 CBAM (no place in this model)" in str(report)
    x = torch.rand(1, 3, 64, 64)
    assert not torch.equal(predict(new, x), predict(build_model("yolov5n.yaml"), x))


def test_a_layer_whose_input_changed_is_not_loaded():
    d = deepcopy(CHAIN)
    d["backbone"][5] = [-2, 1, "Conv", [32, 3, 1]]  # same shapes as before, but reads layer 3 instead of 4
    base = randomise(build_model(CHAIN))
    new = build_model(d)
    report = transfer_weights(new, base, verbose=False)
    assert 5 not in report.mapping  # not the same layer any more
    assert (5, "Conv") in report.new_layers and (5, "Conv") in report.removed and (5, "Conv") in report.not_identity
    assert {0, 1, 2, 3, 4, 6, 7, 8, 9} <= set(report.mapping)  # everything else, the layers after it included
    assert same_tensors(layer_sd(base, 7), layer_sd(new, 7))


def test_identity_start_reproduces_the_pretrained_predictions():
    base = randomise(build_model("yolov5n.yaml"))
    x = torch.rand(2, 3, 96, 96)
    expected = predict(base, x)
    cfg = insert("yolov5n.yaml", ["GCBlock@backbone_end", "CBAM@neck_outputs"], identity_blend=True).cfg
    new = build_model(cfg)
    report = transfer_weights(new, base, identity_init=True, verbose=False)
    assert report.identity == [(10, "GCBlock"), *((i, "ResidualBlend(CBAM)") for i in (25, 26, 27))]
    assert torch.equal(predict(new, x), expected)
    # without the identity start the same model predicts something else
    other = build_model(cfg)
    with torch.no_grad():
        for i in (10, 25, 26, 27):
            for p in other.model[i].parameters():
                p.add_(0.1)
    transfer_weights(other, base, identity_init=False, verbose=False)
    assert not torch.allclose(predict(other, x), expected)


def test_modules_that_cannot_start_as_identity_are_named():
    base = randomise(build_model("yolov5n.yaml"))
    new = build_model("yolov5n-cbam.yaml")
    report = transfer_weights(new, base, identity_init=True, verbose=False)
    assert report.not_identity == [(10, "CBAM")]
    assert "cannot start as the identity" in report.details() and "--identity-blend" in report.details()


def test_c3_weights_move_into_c3att_and_the_block_starts_as_that_c3():
    base = randomise(build_model("yolov5n.yaml"))
    d = load_config("yolov5n.yaml")
    d["backbone"][4] = [-1, 6, "C3Att", [256, {"attention": "SE", "blend": True}]]
    d["head"][3] = [-1, 3, "C3Att", [512, False, "GCBlock"]]
    new = build_model(d)
    report = transfer_weights(new, base, verbose=False)
    assert [(i, t, b) for i, t, _, _, b, _ in report.partial] == [(4, "C3Att(SE)", 4), (13, "C3Att(GCBlock)", 13)]
    assert report.identity == [(4, "C3Att(SE)"), (13, "C3Att(GCBlock)")]
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(predict(new, x), predict(base, x))


def test_ultralytics_yolov5s_checkpoint_transfers_fully(tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    theirs = randomise(DetectionModel("yolov5s.yaml", verbose=False))
    ckpt = tmp_path / "yolov5su.pt"
    torch.save({"model": deepcopy(theirs).half(), "train_args": {}}, ckpt)  # ultralytics' checkpoint layout
    ours = build_model("yolov5s.yaml")
    report = transfer_weights(ours, str(ckpt), verbose=False)
    assert str(report) == "transferred 427/427 tensors from yolov5su.pt; new layers: none; skipped: none"
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(predict(ours, x), predict(theirs.half().float(), x))


def test_new_class_count_keeps_the_class_branch_hidden_layers():
    base = randomise(build_model("yolov5n.yaml"))  # 80 classes: class branch 80 wide
    new = build_model("yolov5n.yaml", nc=5)  # 5 classes: 64 wide as built
    report = transfer_weights(new, base, verbose=False)
    assert "class branch rebuilt" in report.details()
    assert report.total - report.transferred == 6  # the three class-logit convs (weight, bias)
    assert {k for _, _, k, _ in report.skipped_tensors} == {f"cv3.{i}.2.{p}" for i in range(3) for p in ("weight", "bias")}


def test_yolov7_tiny_into_yolov7_tiny_cbam():
    base = randomise(build_model("yolov7-tiny.yaml"))
    new = build_model("yolov7-tiny-cbam.yaml")
    report = transfer_weights(new, base, verbose=False)
    assert str(report).startswith("transferred ") and "new layers: 38 CBAM; skipped: none" in str(report)
    assert report.total - report.transferred == sum(1 for _ in new.model[38].state_dict())
    assert report.mapping[77] == 78  # the anchor-based head, anchors included
    assert same_tensors(layer_sd(base, 77), layer_sd(new, 78))


# ----------------------------------------------------------------------------------------------------------------------
# End to end: checkpoints in the trainer's own save format, transferred by train.py's own code path


@pytest.fixture(scope="module")
def saved_base(tiny_data, tmp_path_factory) -> dict[str, Path]:
    """best.pt of yolov5n-anchor and yolov7-tiny as a training run leaves it: written by AttentionTrainer.save_model
    (EMA in fp16, optimizer, train_args) after the trainer's own set-up, then stripped as at the end of training."""
    from ultralytics.utils.torch_utils import strip_optimizer

    from models.engine.trainer import AttentionTrainer

    project = tmp_path_factory.mktemp("base")
    out = {}
    for cfg in ("yolov5n-anchor.yaml", "yolov7-tiny.yaml"):
        trainer = AttentionTrainer(overrides={"model": str(ROOT / "configs" / cfg), "data": tiny_data, "epochs": 1,
                                              "imgsz": 64, "batch": 8, "workers": 0, "project": str(project),
                                              "name": Path(cfg).stem, "plots": False})
        trainer._setup_train()
        trainer.epoch, trainer.metrics, trainer.fitness, trainer.best_fitness = 0, {}, 0.0, 0.0
        trainer.save_model()
        strip_optimizer(trainer.best)
        out[cfg] = trainer.best
    return out


@pytest.mark.parametrize("base_cfg, variant, position, index", [
    ("yolov5n-anchor.yaml", "yolov5n-cbam-anchor.yaml", "backbone_end", 10),
    ("yolov7-tiny.yaml", "yolov7-tiny-cbam.yaml", "37", 38),
])
def test_saved_checkpoint_transfers_every_tensor_into_its_attention_variant(saved_base, tiny_data, tmp_path,
                                                                            base_cfg, variant, position, index):
    """train.py --cfg <variant> --weights best.pt and train.py --weights best.pt --attention CBAM@<position>: every
    tensor of the saved model is transferred (our loader never flips the 'inplace' flags that broke the matching)."""
    import train
    from models.weights.checkpoint import load_model
    from models.engine.trainer import AttentionTrainer

    best = saved_base[base_cfg]
    n_base = len(load_model(best).state_dict())
    n_cbam = len(build_model(variant, nc=5).model[index].state_dict())
    for k, args in enumerate((["--cfg", variant, "--weights", str(best)],
                              ["--weights", str(best), "--attention", f"CBAM@{position}"])):
        opt = train.parse_opt([*args, "--data", tiny_data, "--epochs", "1", "--img", "64", "--project", str(tmp_path),
                               "--name", f"run{k}"])
        trainer = AttentionTrainer(overrides=train.build_overrides(opt))
        trainer.setup_model()
        report = trainer.transfer_report
        assert str(report) == (f"transferred {n_base}/{n_base + n_cbam} tensors from best.pt; new layers: {index} CBAM; "
                               "skipped: none"), args


@pytest.mark.slow
def test_train_cli_transfers_fully_from_a_trained_yolov7_tiny(tiny_data, tmp_path):
    """The path users reported (13/343 tensors): a real run's best.pt into yolov7-tiny-cbam, both through train.py."""
    import subprocess
    import sys

    def train(*args):
        done = subprocess.run([sys.executable, "train.py", *args, "--data", tiny_data, "--epochs", "1", "--img", "64",
                               "--batch-size", "8", "--workers", "0", "--project", str(tmp_path)],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout + done.stderr

    train("--cfg", "yolov7-tiny.yaml", "--name", "base")
    log = train("--cfg", "yolov7-tiny-cbam.yaml", "--weights", str(tmp_path / "base/weights/best.pt"), "--name", "cbam")
    assert "transferred 343/353 tensors from best.pt; new layers: 38 CBAM; skipped: none" in log, log[-3000:]
