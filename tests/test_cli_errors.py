"""Bad input ends in one clear line naming the flag or file and what to do; no traceback; no run folder left.

Most cases call the scripts' own functions in this process (fast); one case per script runs the script itself to
show what a user sees on the terminal.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def refusal(run) -> str:
    """The message of the SystemExit that ``run()`` ends with; it must be one line starting with 'error:'."""
    with pytest.raises(SystemExit) as stop:
        run()
    message = str(stop.value.code)
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in message, message
    return message


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """A finished 1-epoch run (in this process, no plots)."""
    import train
    from models.engine.trainer import AttentionTrainer

    project = tmp_path_factory.mktemp("runs")
    opt = train.parse_opt(["--cfg", "yolov5n.yaml", "--data", tiny_data, "--epochs", "1", "--img", "64",
                           "--batch-size", "8", "--workers", "0", "--project", str(project)])
    trainer = AttentionTrainer(overrides={**train.build_overrides(opt), "plots": False})
    trainer.train()
    return trainer, project / "exp"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    (d / "corrupt.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"conv.weight": torch.zeros(2, 2)}, d / "state_dict.pt")
    (d / "no_train.yaml").write_text("val: images/val\nnames: {0: a}\n")
    return d


def train_refusal(tmp_path, *argv) -> str:
    import train

    project = tmp_path / "runs"
    message = refusal(lambda: train.build_overrides(train.parse_opt([*argv, "--project", str(project)])))
    assert not project.exists() or not any(project.iterdir()), f"{argv} left {list(project.iterdir())}"
    return message


CFG = ["--cfg", "yolov5n.yaml", "--img", "64"]


@pytest.mark.parametrize("argv, expected", [
    (["--data", "nothere.yaml"], "--data nothere.yaml: no such file"),
    (["--data", "coco128.yaml"], "--data coco128.yaml: an ultralytics dataset that is downloaded on first use, which "
                                 "needs internet once"),
    (["--epochs", "0"], "--epochs 0: must be at least 1"),
    (["--batch-size", "0"], "--batch-size 0: give a number of images per batch (1 or more), or -1 for AutoBatch"),
    (["--workers", "-1"], "--workers -1: must be 0 or more"),
    (["--device", "7"], "--device 7: this machine has"),
    (["--device", "cuda"], "--device cuda: this machine has"),
    (["--device", "banana"], "--device banana: not a device; write cpu, a GPU index (0)"),
], ids=["missing-data", "offline-coco128", "epochs-0", "batch-0", "workers-neg", "device-7", "device-cuda",
        "device-banana"])
def test_train_bad_flags(argv, expected, tiny_data, tmp_path):
    if argv[0] != "--data":
        argv = [*argv, "--data", tiny_data]
    if "--device" in argv and torch.cuda.is_available():
        pytest.skip("the device messages are for machines without that GPU")
    assert expected in train_refusal(tmp_path, *CFG, *argv)


def test_train_bad_dataset_yaml_names_the_key(files, tmp_path):
    message = train_refusal(tmp_path, *CFG, "--data", str(files / "no_train.yaml"))
    assert f"--data {files / 'no_train.yaml'}:" in message and "'train:' key missing" in message


def test_resume_bad_files(files, tmp_path):
    corrupt = train_refusal(tmp_path, "--resume", str(files / "corrupt.pt"))
    assert corrupt.startswith(f"error: --resume {files / 'corrupt.pt'}") and "not found" not in corrupt
    assert "not a readable checkpoint" in corrupt
    plain = train_refusal(tmp_path, "--resume", str(files / "state_dict.pt"))
    assert "no model (a plain state_dict or another file)" in plain and "--weights" in plain
    missing = train_refusal(tmp_path, "--resume", str(files / "nothere.pt"))
    assert "file not found" in missing


def test_weights_plain_state_dict(files, tiny_data, tmp_path):
    message = train_refusal(tmp_path, *CFG, "--data", tiny_data, "--weights", str(files / "state_dict.pt"))
    assert message.startswith(f"error: --weights {files / 'state_dict.pt'}") and "found keys ['conv.weight']" in message


def test_resume_a_finished_run_or_a_loose_file(trained, tmp_path):
    _, exp = trained
    done = train_refusal(tmp_path, "--resume", str(exp / "weights/last.pt"))
    assert "this run finished (1 epoch); nothing to resume" in done and "--weights" in done
    from models.weights.checkpoint import read_checkpoint

    ckpt = read_checkpoint(str(exp / "weights/last.pt"))  # made unfinished: epoch 1 of 3, with optimizer state
    ckpt.update(epoch=0, optimizer={"state": {}, "param_groups": []}, train_args={**ckpt["train_args"], "epochs": 3})
    loose = tmp_path / "last.pt"
    torch.save(ckpt, loose)
    assert "not inside a run folder (<run>/weights/last.pt)" in train_refusal(tmp_path, "--resume", str(loose))


def test_training_prints_its_plan_with_a_time_estimate(trained):
    trainer, _ = trained
    plan = trainer.print_plan()
    assert plan.startswith("plan: 1 epoch x 2 batches of 8 images at 64 px on CPU; one training step takes ")
    assert plan.endswith("of training plus validation")


def test_val_bad_flags(trained, tiny_data, tmp_path):
    import val

    _, exp = trained
    weights = str(exp / "weights/best.pt")
    project = tmp_path / "val"

    def val_refusal(*argv):
        message = refusal(lambda: val.main(val.parse_opt(["--weights", weights, "--project", str(project), *argv])))
        assert not project.exists()
        return message

    assert "--device banana: not a device" in val_refusal("--data", tiny_data, "--device", "banana")
    assert "--batch-size 0: must be 1 or more" in val_refusal("--data", tiny_data, "--batch-size", "0")
    assert "--data nothere.yaml: no such file" in val_refusal("--data", "nothere.yaml")
    assert "the YAML has no 'test:' entry" in val_refusal("--data", tiny_data, "--task", "test")


def test_val_and_detect_use_the_current_half_precision_name(trained, tiny_data, tmp_path, caplog):
    import detect
    import val

    _, exp = trained
    weights = str(exp / "weights/best.pt")
    val.main(val.parse_opt(["--weights", weights, "--data", tiny_data, "--img", "64", "--project", str(tmp_path)]))
    detect.main(detect.parse_opt(["--weights", weights, "--img", "64", "--project", str(tmp_path)]))
    assert "all" in caplog.text and "deprecated" not in caplog.text


def test_detect_names_a_glob_the_shell_expanded(tmp_path):
    import detect

    images = [tmp_path / f"{k}.jpg" for k in range(3)]
    for p in images:
        p.write_bytes(b"")
    argv = ["--weights", "best.pt", "--source", *map(str, images)]  # what `--source dir/*.jpg` unquoted becomes
    message = refusal(lambda: detect.parse_opt(argv))
    assert "--source got 3 files" in message and "your shell expanded a glob" in message
    assert f"--source '{tmp_path}/*.jpg'" in message
    assert "the pattern matches no file" in refusal(lambda: detect.check_source(str(tmp_path / "*.png")))
    assert "no such file or folder" in refusal(lambda: detect.check_source(str(tmp_path / "nothere.jpg")))


def test_corrupt_images_and_labels_are_summarised_and_a_corrupt_jpeg_is_called_corrupt(tiny_data, tmp_path):
    import shutil

    import yaml
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    from data.datasets import readable_image_errors, scan_problems

    root = tmp_path / "bad"
    shutil.copytree(Path(tiny_data).parent / "images", root / "images")
    shutil.copytree(Path(tiny_data).parent / "labels", root / "labels", ignore=shutil.ignore_patterns("*.cache"))
    (root / "images/train/000000.jpg").write_bytes(b"garbage, not a JPEG")
    (root / "labels/train/000001.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    d = {**yaml.safe_load(Path(tiny_data).read_text()), "path": str(root)}
    (root / "bad.yaml").write_text(yaml.safe_dump(d))
    readable_image_errors()
    data = check_det_dataset(str(root / "bad.yaml"))
    YOLODataset(img_path=data["train"], imgsz=64, data=data, augment=False)
    line = scan_problems(data["train"], prefix="train: ")
    assert line.startswith("data: train: 2 images skipped, corrupt image or label (see the scan warnings above): ")
    assert "000000.jpg (not a readable image (corrupt" in line and "pi_heif" not in line
    assert "000001.jpg (Label class 7 exceeds dataset class count 5" in line
    assert scan_problems(check_det_dataset(tiny_data)["val"]) is None


def test_unexpected_failures_are_one_line_unless_verbose():
    import tools.common as common
    from types import SimpleNamespace

    def fails(opt):
        raise RuntimeError("Dataset 'x' error ❌\nsecond line")

    message = refusal(lambda: common.run_cli(fails, SimpleNamespace(verbose=False)))
    assert message == "error: RuntimeError: Dataset 'x' error second line (run with --verbose for the traceback)"
    with pytest.raises(RuntimeError):
        common.run_cli(fails, SimpleNamespace(verbose=True))


@pytest.mark.parametrize("argv, expected", [
    (["train.py", "--cfg", "yolov5n.yaml", "--data", "nothere.yaml"], "error: --data nothere.yaml: no such file"),
    (["val.py", "--weights", "w.pt", "--device", "banana"], "error: --device banana: not a device"),
    (["detect.py", "--weights", "w.pt", "--source", "README.md", "LICENSE"], "your shell expanded a glob"),
], ids=["train", "val", "detect"])
def test_what_the_terminal_shows(argv, expected, tmp_path):
    out = subprocess.run([sys.executable, *argv, "--project", str(tmp_path / "runs")], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and expected in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "runs").exists()
