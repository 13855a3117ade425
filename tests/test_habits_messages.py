"""A YOLOv5 user's mistakes get one actionable line: a row inserted by hand without shifting ``from``, a checkpoint
that would run code opened through ultralytics' API, bad arguments, inputs and datasets; and what is left behind by
an interruption is never mistaken for a result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.registry import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BASE = (ROOT / "configs" / "yolov5.yaml").read_text()
SPPF = "  - [-1, 1, SPPF, [1024, 5]] # 9\n"
pytestmark = pytest.mark.usefixtures("one_thread")


def run(*args: str, cwd=ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out.stderr, out.stderr[-3000:]
    return lines[0]


def yaml_with(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- item 2: a row inserted by hand without shifting 'from' ----------------------------------------------------------


def test_a_hand_inserted_row_with_stale_from_is_refused_with_the_rows_to_write(tiny_data, tmp_path):
    """CBAM added after SPPF, head indices kept: it would build and train a different network (Detect on the Concats)."""
    cfg = yaml_with(tmp_path, "yolov5s-cbam-mine.yaml", BASE.replace(SPPF, SPPF + "  - [-1, 1, CBAM, [1024]]\n"))
    out = run("train.py", "--cfg", str(cfg), "--data", tiny_data, "--epochs", "1", "--img", "64",
              "--project", str(tmp_path / "runs"))
    line = one_line_error(out)
    assert "the 'from' indices were not shifted after a row was inserted by hand" in line
    assert ("Fix: layer 20 (Concat): from [-1, 14] -> [-1, 15]; layer 23 (Concat): from [-1, 10] -> [-1, 11]; "
            "layer 25 (Detect): from [17, 20, 23] -> [18, 21, 24]") in line and "tools/insert.py" in line
    assert not (tmp_path / "runs").exists()


def test_the_rows_it_names_build_the_network_the_insertion_tool_builds(tmp_path):
    from models.surgery.insertion import insert
    from models.yolo import build_model

    fixed = BASE.replace(SPPF, SPPF + "  - [-1, 1, CBAM, [1024]]\n").replace("[[-1, 14], 1, Concat", "[[-1, 15], 1, Concat") \
        .replace("[[-1, 10], 1, Concat", "[[-1, 11], 1, Concat").replace("[[17, 20, 23], 1, Detect", "[[18, 21, 24], 1, Detect")
    ours = build_model(str(yaml_with(tmp_path, "yolov5n-fixed.yaml", fixed)))  # comments still stale: no complaint
    tool = insert(str(ROOT / "configs" / "yolov5n.yaml"), ["CBAM@backbone_end"]).cfg
    assert [m.f for m in ours.model] == [m.f for m in build_model(tool).model]


def test_stale_comments_inside_the_backbone_and_without_comments(tmp_path, caplog):
    from models.yolo import build_model

    p4 = BASE.replace("  - [-1, 9, C3, [512]] # 6\n", "  - [-1, 9, C3, [512]] # 6\n  - [-1, 1, CBAM, [512]] # 7 at P4\n")
    with pytest.raises(ConfigError, match=r"from layer 8 on.*layer 20 \(Concat\): from \[-1, 14\] -> \[-1, 15\]"):
        build_model(str(yaml_with(tmp_path, "yolov5n-p4.yaml", p4)))
    bare = "\n".join(x.split("#")[0].rstrip() for x in BASE.replace(SPPF, SPPF + "  - [-1, 1, CBAM, [1024]]\n").splitlines())
    build_model(str(yaml_with(tmp_path, "yolov5n-bare.yaml", bare)))  # no comments: the dead layer is a warning
    assert "layer(s) 24 (C3): output read by no later row" in caplog.text and "tools/insert.py" in caplog.text


# --- item 8: the Python API never runs a checkpoint's payload once the project is imported ---------------------------


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    from tests.test_checkpoint import MARKER, payloads, plant, reference, save_ours

    root = tmp_path_factory.mktemp("evil")
    good = save_ours(root / "best.pt", reference("yolov5n-cbam.yaml"))
    return {"good": good, "evil": plant(root / "evil.pt", payloads(root / MARKER)["posix.system"], good),
            "marker": root / MARKER}


def test_ultralytics_yolo_refuses_a_payload_once_the_project_is_imported(evil):
    script = ("import sys; sys.path.insert(0, sys.argv[3])\n"
              "import offline; offline.configure()\n"
              "import models\n"
              "from ultralytics import YOLO\n"
              "print(type(YOLO(sys.argv[1]).model).__name__)\n"
              "try:\n"
              "    YOLO(sys.argv[2])\n"
              "except Exception as e:\n"
              "    print(type(e).__name__, e)\n")
    out = run("-c", script, str(evil["good"]), str(evil["evil"]), str(ROOT), cwd=evil["good"].parent)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not evil["marker"].exists(), "the payload ran"
    first, second = out.stdout.strip().splitlines()[-2:]
    assert first == "AttentionDetectionModel"
    assert second.startswith("UnsafeCheckpointError") and "'posix.system'" in second and "refused to load" in second


def test_heatmap_refuses_a_payload_in_one_line(evil, tmp_path):
    out = run("tools/heatmap.py", "--weights", str(evil["evil"]), "--img", "64", "--project", str(tmp_path / "h"))
    assert "refused to load" in one_line_error(out) and not evil["marker"].exists()
    assert not (tmp_path / "h").exists()


# --- item 9: one actionable line for each ---------------------------------------------------------------------------


@pytest.mark.parametrize("row, expected", [
    ("[-1, 1, GAM, [1024, [[16]]]]", "layer 10 (GAM): reduction is a list, but GAM takes a number there (default 4)"),
    ("[-1, 1, GAM, [None]]", "layer 10 (GAM): reduction is no value (None), but GAM takes a number there"),
    ("[-1, 1, GAM, [1024, abc]]", "layer 10 (GAM): reduction is the text 'abc', but GAM takes a number there"),
    ("[-1, 1, GAM, [1024, 0]]", "layer 10 (GAM): reduction is 0, which GAM divides by (default 4; it must be 1 or"),
    ("[-1, 1, CBAM, [1024, [[16]]]]", "layer 10 (CBAM): reduction is a list, but CBAM takes a number there"),
    ("[-1, 1, CBAM, [1024, abc]]", "layer 10 (CBAM): reduction is the text 'abc', but CBAM takes a number there"),
    ("[-1, 1, CBAM, [1024, 0]]", "layer 10 (CBAM): reduction is 0, which CBAM divides by"),
    ("[-1, 1, SimAM, [1024, None]]", "layer 10 (SimAM): the module was built but fails on its input 1x256x8x8"),
    ("[-1, 1, CBAM, " + "[" * 5000 + "]" * 5000 + "]", "nested more than 32 levels deep, which no model YAML needs"),
], ids=["nested-list", "none", "text", "zero", "cbam-list", "cbam-text", "cbam-zero", "runs-but-fails", "5000-deep"])
def test_bad_arguments_name_the_argument_and_what_goes_there(row, expected, tmp_path):
    from models.yolo import build_model

    text = BASE.replace(SPPF, SPPF + f"  - {row} # 10\n")
    for k in range(10, 25):  # shift the head as tools/insert.py would: only the argument is wrong
        text = text.replace(f"# {k}\n", f"# {k + 1}\n", 1)
    text = text.replace("[[-1, 14], 1, Concat", "[[-1, 15], 1, Concat").replace("[[-1, 10], 1, Concat", "[[-1, 11], 1, Concat") \
        .replace("[[17, 20, 23], 1, Detect", "[[18, 21, 24], 1, Detect")
    with pytest.raises(ConfigError) as e:
        build_model(str(yaml_with(tmp_path, "yolov5n-bad.yaml", text)))
    assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_an_empty_backbone_says_what_to_write(tmp_path):
    from models.yolo import build_model

    head = BASE.split("\nhead:", 1)[1]
    for backbone in ("backbone:\n", "backbone: []\n"):
        with pytest.raises(ConfigError, match=r"'backbone' is empty: list its layers under 'backbone:', one row "
                                              r"'- \[from, number, module, args\]' a line"):
            build_model(str(yaml_with(tmp_path, "yolov5n-empty.yaml", "nc: 5\n" + backbone + "head:" + head)))


def test_a_single_image_tensor_is_told_to_add_the_batch_dimension():
    import torch

    from models.yolo import build_model

    with pytest.raises(ValueError, match=r"a tensor \(batch, 3, height, width\); got one of shape \(3, 64, 64\): one "
                                         r"image \(C, H, W\) becomes a batch of one with x\[None\]"):
        build_model("yolov5n.yaml").eval()(torch.rand(3, 64, 64))


def test_a_dataset_folder_without_readable_images_is_named(tiny_data, tmp_path):
    import shutil

    import yaml

    from data.datasets import DataError, check_dataset

    d = yaml.safe_load(Path(tiny_data).read_text())
    for what in ("empty", "not-images"):
        root = tmp_path / what
        shutil.copytree(Path(d["path"]) / "images" / "train", root / "images" / "train")
        (root / "images" / "val").mkdir(parents=True)
        if what == "not-images":
            for k in range(40):  # files named like images: ultralytics' error listed each, with colour codes
                (root / "images" / "val" / f"notes{k}.jpg").write_text("not an image\n" * 100)
        (tmp_path / f"{what}.yaml").write_text(yaml.safe_dump({**d, "path": str(root)}))
        with pytest.raises(DataError) as e:
            check_dataset(str(tmp_path / f"{what}.yaml"), split="val")
        message = str(e.value)
        assert "\x1b[" not in message and len(message.replace(str(tmp_path), "<tmp>")) < 300, message
        assert ("the folder holds no images; put the val images there" if what == "empty" else
                "none of its 40 image file(s) is a readable image (e.g. notes") in message, message


def test_one_line_errors_carry_no_terminal_colour_codes():
    import tools.common as common

    e = RuntimeError("No valid images found in x.cache. \x1b[34m\x1b[1mval: \x1b[0mnotes.jpg: ignoring")
    assert common.one_line(e) == "RuntimeError: No valid images found in x.cache. val: notes.jpg: ignoring"


def test_the_final_strip_names_the_file_it_wrote_and_hides_its_temporary(tmp_path, caplog):
    import torch

    from models.engine.run_folder import atomic_strip_optimizer, temporary
    from models.yolo import build_model

    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save({"model": build_model("yolov5n.yaml").half(), "ema": None, "optimizer": {}, "epoch": 0,
                "train_args": {}}, weights / "last.pt")
    atomic_strip_optimizer(weights / "last.pt")
    assert f"Optimizer stripped from {weights / 'last.pt'}, " in caplog.text and ".tmp" not in caplog.text
    assert temporary(weights / "best.pt").name == ".best.pt.tmp"


def test_a_killed_final_strip_leaves_nothing_once_the_weights_are_used(tmp_path):
    """The kill leaves a hidden temporary; val.py/detect.py/export.py reading that run's weights remove it."""
    import tools.common as common

    weights = tmp_path / "exp" / "weights"
    weights.mkdir(parents=True)
    (weights / "best.pt").write_bytes(b"x")
    (weights / ".best.pt.tmp").write_bytes(b"half a checkpoint")
    assert sorted(p.name for p in weights.iterdir() if not p.name.startswith(".")) == ["best.pt"]
    common.check_weights(str(weights / "best.pt"))
    assert sorted(p.name for p in weights.iterdir()) == ["best.pt"]


def test_a_video_is_saved_under_its_own_name(tmp_path):
    import cv2
    import torch

    from data.synthetic import make_image
    from models.yolo import build_model

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 64))
    for k in range(4):
        writer.write(cv2.resize(make_image(k, 128)[0], (96, 64)))
    writer.release()
    torch.save({"model": build_model("yolov5n.yaml", nc=5).half(), "train_args": {"imgsz": 64}}, tmp_path / "w.pt")
    out = run("detect.py", "--weights", str(tmp_path / "w.pt"), "--source", str(video), "--project", str(tmp_path / "d"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "d" / "exp").iterdir()) == ["clip.mp4"]
    cap = cv2.VideoCapture(str(tmp_path / "d" / "exp" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()


def test_ctrl_c_in_the_ablation_runner_is_one_line(tiny_data, tmp_path):
    """Ctrl-C while a run trains: the run stops as train.py does, the runner says how to continue; no traceback."""
    proc = subprocess.Popen([sys.executable, "tools/ablate.py", "--name", "abl", "--project", str(tmp_path),
                             "--data", tiny_data, "--scale", "n", "--variants", "se", "--epochs", "30", "--img", "64",
                             "--workers", "0", "--no-latency"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 400
        while not list(tmp_path.glob("abl/baseline-s0/weights/last.pt")):  # training is under way
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # what the terminal sends to the runner
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 1 and "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("ablation interrupted (Ctrl-C): finished runs are kept"), err[-2000:]
    assert "python train.py --resume" in err  # the run's own line: where it stopped


def test_a_null_hyperparameter_is_the_modules_default(tmp_path):
    """`CBAM [None]`: YAML's null where a hyperparameter goes reads as not given (CBAM's reduction 16)."""
    from models.yolo import build_model

    text = BASE.replace(SPPF, SPPF + "  - [-1, 1, CBAM, [None]] # 10\n")
    for k in range(10, 25):
        text = text.replace(f"# {k}\n", f"# {k + 1}\n", 1)
    text = text.replace("[[-1, 14], 1, Concat", "[[-1, 15], 1, Concat").replace("[[-1, 10], 1, Concat", "[[-1, 11], 1, Concat") \
        .replace("[[17, 20, 23], 1, Detect", "[[18, 21, 24], 1, Detect")
    model = build_model(str(yaml_with(tmp_path, "yolov5n-null.yaml", text)), verbose=False)
    plain = build_model(str(yaml_with(tmp_path, "yolov5n-plain.yaml", text.replace("CBAM, [None]", "CBAM, []"))),
                        verbose=False)
    assert [tuple(v.shape) for v in model.model[10].state_dict().values()] == \
        [tuple(v.shape) for v in plain.model[10].state_dict().values()]
