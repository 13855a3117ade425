"""Multi-GPU: ultralytics' DDP launcher pickles our trainer; the file it writes must rebuild *our* trainer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_ddp_file_reconstructs_our_trainer(tiny_data, tmp_path):
    from ultralytics.utils.dist import generate_ddp_file

    from models.engine.trainer import AttentionTrainer

    trainer = AttentionTrainer(
        overrides={"model": "yolov5n-cbam.yaml", "data": tiny_data, "imgsz": 64, "epochs": 1, "device": "cpu",
                   "project": str(tmp_path), "name": "ddp", "plots": False}
    )
    file = Path(generate_ddp_file(trainer))
    try:
        text = file.read_text()
        assert 'state["trainer"](' in text and "trainer.train()" in text
        # Run the launcher's own loading code in a fresh interpreter, stopping before train().
        probe = text.replace("trainer.train()", "print('TRAINER', type(trainer).__module__, type(trainer).__name__); "
                             "m = trainer.get_model(cfg=trainer.args.model, verbose=False); print('MODEL', type(m).__name__)")
        script = tmp_path / "probe_ddp.py"
        script.write_text(probe)
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "TRAINER models.engine.trainer AttentionTrainer" in out.stdout
        assert "MODEL AttentionDetectionModel" in out.stdout
    finally:
        file.unlink(missing_ok=True)
        file.with_suffix(".pt").unlink(missing_ok=True)
