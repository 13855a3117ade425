"""Never lose a run: kill -9 and a full disk at the worst moments, two runs at once, resuming a copy.

Each fault is injected where it hurts most: during the end-of-training strip of best.pt/last.pt, during a
checkpoint write after the epoch's results.csv row, and as ENOSPC (a writer that fails half-way) while writing
results.csv, the checkpoints and the final strip. Afterwards every file a user keeps must load or parse, hold a
consistent state, and no temporary may be left behind.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--cfg", "yolov5n.yaml", "--img", "64", "--batch-size", "8", "--workers", "0"]


def epochs_in(run: Path) -> list[int]:
    with open(run / "results.csv", newline="") as f:
        return [int(float(r["epoch"])) for r in csv.DictReader(f)]


def temporaries(run: Path) -> list[Path]:
    return sorted(run.rglob("*.tmp"))


def checkpoint(path: Path) -> dict:
    """The checkpoint through the project's restricted reader, with its model rebuilt (it must load)."""
    from models.weights.checkpoint import model_from_checkpoint, read_checkpoint

    ckpt = read_checkpoint(str(path))
    model_from_checkpoint(ckpt, str(path))
    return ckpt


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- faults in a separate process, killed with SIGKILL ----------------------------------------------------------

FAULTY_TRAIN = """
import os, sys, time, pathlib
sys.path.insert(0, {root!r})
import tools.common
import train

marker = pathlib.Path(os.environ["MARKER"])
if os.environ["FAULT"] == "strip":  # the end-of-training strip writes half a file, then hangs
    import ultralytics.utils.torch_utils as tu

    def slow_strip(f, s="", updates=None):
        pathlib.Path(s or f).write_bytes(b"half a checkpoint")
        marker.write_text("stripping")
        time.sleep(300)

    tu.strip_optimizer = slow_strip
else:  # the second checkpoint write (epoch 2's last.pt, after its results.csv row) writes half, then hangs
    write_bytes, calls = pathlib.Path.write_bytes, []

    def slow_write(self, data):
        if self.name.lstrip(".").startswith("last.pt"):
            calls.append(self)
            if len(calls) == 2:
                write_bytes(self, data[: len(data) // 2])
                marker.write_text("saving")
                time.sleep(300)
        return write_bytes(self, data)

    pathlib.Path.write_bytes = slow_write
train.main(train.parse_opt(sys.argv[1:]))
"""


def run_killed(tmp_path: Path, fault: str, args: list[str]) -> None:
    """Run train.py ARGS with FAULT injected and kill -9 it once it is inside the faulty write."""
    script = tmp_path / "faulty_train.py"
    script.write_text(FAULTY_TRAIN.format(root=str(ROOT)))
    marker = tmp_path / f"marker-{fault}"
    env = {**os.environ, "FAULT": fault, "MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, str(script), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while not marker.exists():
            assert proc.poll() is None, f"training ended before the fault:\n{proc.stdout.read()[-3000:]}"
            assert time.time() < deadline, "the fault was never reached"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def test_kill_during_final_strip_leaves_best_and_last_loadable(tiny_data, tmp_path):
    project = tmp_path / "runs"
    run_killed(tmp_path, "strip", [*TINY, "--data", tiny_data, "--epochs", "1", "--project", str(project)])
    exp = project / "exp"
    for name in ("last.pt", "best.pt"):
        ckpt = checkpoint(exp / "weights" / name)  # the file the epoch wrote, untouched by the killed strip
        assert ckpt["epoch"] == 0 and ckpt["optimizer"] is not None, name
    assert epochs_in(exp) == [1]


@pytest.fixture(scope="module")
def killed_mid_save(tiny_data, tmp_path_factory):
    """A 2-epoch run killed while writing epoch 2's last.pt (its results.csv row already written)."""
    tmp = tmp_path_factory.mktemp("killed")
    project = tmp / "runs"
    run_killed(tmp, "save", [*TINY, "--data", tiny_data, "--epochs", "2", "--project", str(project)])
    return project / "exp"


def test_kill_mid_checkpoint_write_keeps_the_previous_epoch(killed_mid_save):
    exp = killed_mid_save
    assert checkpoint(exp / "weights" / "last.pt")["epoch"] == 0  # epoch 1's, whole
    assert checkpoint(exp / "weights" / "best.pt")["epoch"] == 0
    assert [p.name for p in temporaries(exp)] == [".last.pt.tmp"]  # left by the kill, removed on the next start
    assert epochs_in(exp) == [1, 2]


@pytest.fixture(scope="module")
def resumed_copy(killed_mid_save, tmp_path_factory):
    """The killed run copied elsewhere (folder and name differ), then resumed from the copy's last.pt."""
    original = killed_mid_save
    before = tree_digest(original)
    copy = tmp_path_factory.mktemp("copy") / "moved" / "mycopy"
    shutil.copytree(original, copy)
    out = subprocess.run([sys.executable, "train.py", "--resume", str(copy / "weights" / "last.pt")], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return original, before, copy


def test_resume_from_a_copy_continues_in_the_copy_and_leaves_the_original_untouched(resumed_copy):
    original, before, copy = resumed_copy
    assert tree_digest(original) == before  # byte for byte, though the checkpoint records the original's save_dir
    assert checkpoint(copy / "weights" / "last.pt")["epoch"] == -1  # finished (stripped) in the copy
    assert not (copy.parent / "exp").exists() and not (original.parent / "exp2").exists()


def test_kill_then_resume_gives_one_row_per_epoch_and_no_temporaries(resumed_copy):
    _, _, copy = resumed_copy
    assert epochs_in(copy) == [1, 2]  # epoch 2 ran twice (killed before its checkpoint): one row
    assert temporaries(copy) == []


# --- ENOSPC: a writer that fails half-way ------------------------------------------------------------------------


class DiskFull:
    """Fault injector: once ``on``, every file write through Path.write_bytes / torch.save to a path writes half of
    its data and raises OSError(ENOSPC), as a full disk does."""

    def __init__(self, monkeypatch):
        import torch

        self.on, self.failed = False, []
        write_bytes, save = Path.write_bytes, torch.save

        def half_then_enospc(path, data):
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
            self.failed.append(Path(path).name)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        def faulty_write_bytes(path, data):
            return half_then_enospc(path, data) if self.on else write_bytes(path, data)

        def faulty_save(obj, f, *args, **kwargs):
            if self.on and isinstance(f, (str, os.PathLike)):
                import io

                buffer = io.BytesIO()
                save(obj, buffer, *args, **kwargs)
                return half_then_enospc(f, buffer.getvalue())
            return save(obj, f, *args, **kwargs)

        monkeypatch.setattr(Path, "write_bytes", faulty_write_bytes)
        monkeypatch.setattr(torch, "save", faulty_save)


def train_in_process(tiny_data, project, epochs, monkeypatch):
    """train.main as train.py runs it, without plots (they only cost time here)."""
    import train

    build_overrides = train.build_overrides
    monkeypatch.setattr(train, "build_overrides", lambda opt: {**build_overrides(opt), "plots": False})
    return train.main(train.parse_opt([*TINY, "--data", tiny_data, "--epochs", str(epochs), "--project",
                                       str(project)]))


def test_disk_full_during_an_epoch_keeps_results_and_checkpoints_intact(tiny_data, tmp_path, monkeypatch):
    from models.engine.trainer import AttentionTrainer

    disk = DiskFull(monkeypatch)
    save_metrics = AttentionTrainer.save_metrics

    def fill_disk_at_epoch_2(self, metrics):
        disk.on = self.epoch == 1
        return save_metrics(self, metrics)

    monkeypatch.setattr(AttentionTrainer, "save_metrics", fill_disk_at_epoch_2)
    with pytest.raises(SystemExit) as stop:
        train_in_process(tiny_data, tmp_path, 2, monkeypatch)
    disk.on = False
    message = str(stop.value)
    assert message.startswith("error: the disk is full") and "\n" not in message, message
    assert "--resume" in message and "last.pt" in message
    exp = tmp_path / "exp"
    assert disk.failed == [".results.csv.tmp"]  # the first write of epoch 2 failed
    assert epochs_in(exp) == [1]  # intact: epoch 1's row, no half row
    assert checkpoint(exp / "weights" / "last.pt")["epoch"] == 0
    assert checkpoint(exp / "weights" / "best.pt")["epoch"] == 0
    assert temporaries(exp) == []


def test_disk_full_during_a_checkpoint_write_keeps_the_previous_one(tiny_data, tmp_path, monkeypatch):
    from models.engine.trainer import AttentionTrainer

    disk = DiskFull(monkeypatch)
    save_model = AttentionTrainer.save_model

    def fill_disk_at_epoch_2(self):
        disk.on = self.epoch == 1
        return save_model(self)

    monkeypatch.setattr(AttentionTrainer, "save_model", fill_disk_at_epoch_2)
    with pytest.raises(SystemExit, match="disk is full"):
        train_in_process(tiny_data, tmp_path, 2, monkeypatch)
    disk.on = False
    exp = tmp_path / "exp"
    assert disk.failed == [".last.pt.tmp"]
    assert checkpoint(exp / "weights" / "last.pt")["epoch"] == 0
    assert temporaries(exp) == []
    assert epochs_in(exp) == [1, 2]  # epoch 2's row stays; a resume from epoch 1 replaces it (keyed by epoch)


def test_disk_full_during_the_final_strip_warns_and_keeps_both_checkpoints(tiny_data, tmp_path, monkeypatch, caplog):
    from models.engine.trainer import AttentionTrainer

    disk = DiskFull(monkeypatch)
    final_eval = AttentionTrainer.final_eval

    def fill_disk_then_finish(self):
        disk.on = True
        return final_eval(self)

    monkeypatch.setattr(AttentionTrainer, "final_eval", fill_disk_then_finish)
    train_in_process(tiny_data, tmp_path, 1, monkeypatch)  # the run still completes
    disk.on = False
    exp = tmp_path / "exp"
    assert disk.failed == [".last.pt.tmp", ".best.pt.tmp"]
    for name in ("last.pt", "best.pt"):
        ckpt = checkpoint(exp / "weights" / name)
        assert ckpt["epoch"] == 0 and ckpt["optimizer"] is not None  # the epoch's file, not stripped
    assert temporaries(exp) == []
    assert caplog.text.count("Could not strip the optimizer") == 2 and "the disk is full" in caplog.text


def test_stale_temporaries_are_removed_and_only_ours(tmp_path):
    from models.engine.run_folder import remove_stale_temporaries

    (tmp_path / "weights").mkdir()
    ours = [tmp_path / "weights/.last.pt.tmp", tmp_path / "weights/.best.pt.tmp", tmp_path / ".results.csv.tmp",
            tmp_path / ".args.yaml.tmp", tmp_path / "weights/last.pt.tmp", tmp_path / "results.csv.tmp"]  # + older names
    theirs = [tmp_path / "notes.tmp", tmp_path / "weights/last.pt"]
    for p in ours + theirs:
        p.write_text("x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(ours)
    assert all(p.exists() for p in theirs) and not any(p.exists() for p in ours)


def test_results_rewrite_keeps_one_row_per_epoch_up_to_the_checkpoint(tmp_path):
    from models.engine.run_folder import rewrite_results

    f = tmp_path / "results.csv"
    f.write_text("epoch,time,loss\n1,1,0.9\n2,2,0.8\n2,3,0.7\n3,4,0.6\n3,4")  # interrupted appends
    rewrite_results(f, keep_upto=2)  # resumed from epoch 2's checkpoint
    assert f.read_text() == "epoch,time,loss\n1,1,0.9\n2,3,0.7\n"
    rewrite_results(f, "epoch,time,loss", "3,5,0.5", keep_upto=2)
    rewrite_results(f, "epoch,time,loss", "3,6,0.4", keep_upto=2)  # epoch 3 repeated after a failed save
    assert f.read_text() == "epoch,time,loss\n1,1,0.9\n2,3,0.7\n3,6,0.4\n"
    assert not (tmp_path / ".results.csv.tmp").exists()


# --- one run folder per run ---------------------------------------------------------------------------------------

CLAIM = """
import sys, time, pathlib
sys.path.insert(0, {root!r})
import tools.common as common
from models.engine import run_folder
go = pathlib.Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
print(run_folder.save_dir(sys.argv[1], "train", "exp", sys.argv[3] == "exist_ok"), flush=True)
time.sleep(float(sys.argv[4]))
"""


def start_claims(tmp_path, n, exist_ok=False, hold=1.0):
    script = tmp_path / "claim.py"
    script.write_text(CLAIM.format(root=str(ROOT)))
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "runs"), str(go),
                               "exist_ok" if exist_ok else "new", str(hold)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    time.sleep(1.0)  # all started and waiting
    go.write_text("go")
    return procs


def test_concurrent_runs_with_the_same_name_get_distinct_folders(tmp_path):
    procs = start_claims(tmp_path, 6)
    folders = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(Path(f).name for f in folders) == ["exp", "exp2", "exp3", "exp4", "exp5", "exp6"]


def test_exist_ok_into_a_live_run_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
    from models.engine import run_folder

    (holder,) = start_claims(tmp_path, 1, exist_ok=True, hold=120)
    try:
        assert Path(holder.stdout.readline().strip()) == tmp_path / "runs" / "exp"
        with pytest.raises(SystemExit) as refused:
            run_folder.save_dir(str(tmp_path / "runs"), "train", "exp", True)
        message = str(refused.value)
        assert message.startswith("error: --exist-ok:") and f"pid {holder.pid}" in message and "\n" not in message
        # a new run without --exist-ok goes next door, also while the launcher of a DDP run has deleted the folder
        shutil.rmtree(tmp_path / "runs" / "exp")
        assert Path(run_folder.save_dir(str(tmp_path / "runs"), "train", "exp", False)).name == "exp2"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate()
    folder = run_folder.save_dir(str(tmp_path / "runs"), "train", "exp", True)  # the dead holder's lock is stale
    assert Path(folder) == tmp_path / "runs" / "exp"
    lock = run_folder.lock_path(Path(folder))
    assert lock.read_text().split()[0] == str(os.getpid()) and lock.parent.parent == Path(folder).parent
    run_folder.release_run_folder(folder)
    assert not lock.exists()


def test_train_exist_ok_refuses_a_folder_a_live_run_holds(tiny_data, tmp_path):
    import train

    (holder,) = start_claims(tmp_path, 1, exist_ok=True, hold=120)
    try:
        holder.stdout.readline()
        with pytest.raises(SystemExit) as refused:
            train.build_overrides(train.parse_opt([*TINY, "--data", tiny_data, "--project", str(tmp_path / "runs"),
                                                   "--name", "exp", "--exist-ok"]))
        assert "is in use by a run that is still going" in str(refused.value)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate()


# --- the same weights, the same scores ----------------------------------------------------------------------------


def test_validation_nms_has_no_wall_clock_limit(monkeypatch):
    """ultralytics' NMS drops the rest of a batch after 2 + 0.05 * batch seconds, which a busy CPU reaches with an
    untrained model's candidates: epoch metrics (and best.pt) then depended on the machine's load."""
    import torch
    import ultralytics.utils.nms as nms
    from ultralytics.models.yolo.detect import DetectionValidator

    from models.engine.validator import ReproducibleValidator

    clock = iter(range(0, 10**6, 5))  # every reading of the clock is 5 s later: a very busy machine
    monkeypatch.setattr(nms.time, "time", lambda: float(next(clock)))
    preds = torch.zeros(4, 4 + 2, 50)  # batch of 4, 2 classes, 50 candidates each: one box per image survives
    preds[:, :4] = torch.tensor([32.0, 32.0, 8.0, 8.0])[:, None]
    preds[:, 4] = 0.9

    def kept(cls):
        v = cls(args={"conf": 0.25, "iou": 0.6, "task": "detect"})
        v.end2end = False
        return [len(x["conf"]) for x in v.postprocess(preds)]

    assert kept(DetectionValidator) == [1, 0, 0, 0]  # stock: the limit cut the batch short
    assert kept(ReproducibleValidator) == [1, 1, 1, 1]
