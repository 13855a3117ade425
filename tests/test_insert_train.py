"""train.py --weights base.pt --attention CBAM@backbone_end: a variant trained without writing a YAML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def make_base_checkpoint(path: Path) -> None:
    """A yolov5n checkpoint in the layout our runs write (the model object, half precision)."""
    from models.yolo import build_model

    model = build_model("yolov5n.yaml", nc=5)
    torch.save({"model": model.half(), "train_args": {}}, path)


def test_train_with_inserted_attention_transfers_and_saves_model_yaml(tiny_data, tmp_path):
    base = tmp_path / "base.pt"
    make_base_checkpoint(base)
    out = run("train.py", "--weights", str(base), "--attention", "CBAM@backbone_end", "--data", tiny_data,
              "--epochs", "1", "--img", "64", "--batch-size", "8", "--workers", "0",
              "--project", str(tmp_path / "runs"), "--name", "exp")
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "transferred 427/437 tensors from base.pt; new layers: 10 CBAM; skipped: none" in log, log[-4000:]
    assert "cannot start as the identity" in log and "10 CBAM" in log  # CBAM is a sigmoid gate: named, not hidden
    exp = tmp_path / "runs" / "exp"
    model_yaml = exp / "model.yaml"
    assert model_yaml.is_file()
    from models.parse.read import load_config
    from models.yolo import build_model

    d = load_config(model_yaml)
    assert d["scale"] == "n" and d["backbone"][-1] == [-1, 1, "CBAM", []]
    assert "# 10 CBAM inserted at backbone_end" in model_yaml.read_text()
    from ultralytics.nn.tasks import load_checkpoint

    trained, _ = load_checkpoint(str(exp / "weights" / "last.pt"))
    assert [m.type for m in trained.model][9:12] == ["SPPF", "CBAM", "Conv"]
    assert len(trained.model) == len(build_model(model_yaml).model)


def test_bad_insertion_stops_before_any_run_folder(tiny_data, tmp_path):
    base = tmp_path / "base.pt"
    make_base_checkpoint(base)
    out = run("train.py", "--weights", str(base), "--attention", "CBAM@p9", "--data", tiny_data, "--epochs", "1",
              "--project", str(tmp_path / "runs"), "--name", "exp")
    assert out.returncode != 0
    assert "--attention" in out.stderr and "CBAM@p9" in out.stderr and "p5 (layer 9)" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


def test_run_yaml_survives_the_ddp_launcher_deleting_the_run_folder(tiny_data, tmp_path):
    """ultralytics' DDP launcher removes the run folder before the workers build the model from args.model."""
    import shutil as _shutil

    from models.engine.trainer import AttentionTrainer
    from train import build_overrides, parse_opt

    opt = parse_opt(["--cfg", "yolov5n.yaml", "--attention", "SE@backbone_end", "--data", tiny_data, "--img", "64",
                     "--epochs", "1", "--device", "cpu", "--project", str(tmp_path), "--name", "ddp"])
    overrides = build_overrides(opt)
    save_dir = Path(overrides["save_dir"])
    assert (save_dir / "model.yaml").is_file()
    assert save_dir not in Path(overrides["model"]).parents
    _shutil.rmtree(save_dir)  # what generate_ddp_command does
    trainer = AttentionTrainer(overrides=overrides)
    trainer.run_callbacks("on_pretrain_routine_start")
    assert (save_dir / "model.yaml").is_file()
    model = trainer.get_model(cfg=trainer.args.model, verbose=False)
    assert model.model[10].type == "SE"
