"""The ablation runner as a user drives it: baseline + variants x seeds, a table with noise flags, plots, resumable."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

ARGS = ["--scale", "n", "--variants", "se", "--epochs", "1", "--img", "64", "--batch-size", "8", "--seeds", "0", "1",
        "--workers", "0"]


def read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def ablation(tiny_data, tmp_path_factory):
    from tools import ablate

    project = tmp_path_factory.mktemp("ablate")
    assert ablate.main(["--name", "tiny", "--project", str(project), "--data", tiny_data, *ARGS]) == 0
    return project, project / "tiny"


def test_every_variant_and_seed_trains_in_its_own_folder(ablation):
    _, root = ablation
    for run in ("baseline-s0", "se-s0", "baseline-s1", "se-s1"):
        assert (root / run / "weights" / "best.pt").is_file(), run
        assert (root / run / "results.csv").is_file(), run
    runs = read(root / "runs.csv")
    assert sorted((r["variant"], r["seed"]) for r in runs) == [("baseline", "0"), ("baseline", "1"), ("se", "0"), ("se", "1")]
    # identical settings apart from the model: same data, epochs, image size and seed per pair
    args = {run: json.loads((root / run / "ablate_done.json").read_text()) for run in ("baseline-s1", "se-s1")}
    assert args["baseline-s1"]["seed"] == args["se-s1"]["seed"] == 1
    assert args["se-s1"]["cfg"] == "yolov5n-se.yaml"


def test_table_has_mean_std_noise_flag_and_costs(ablation):
    _, root = ablation
    md = (root / "ablation.md").read_text()
    assert "| baseline |" in md and "| se |" in md
    assert " ± " in md  # two seeds: mean ± std
    assert "noise" in md
    from tools.ablate_report import noise_verdict

    rows = {r["variant"]: r for r in read(root / "ablation.csv")}
    runs = read(root / "runs.csv")
    per_seed = {v: [float(r["mAP50-95"]) for r in runs if r["variant"] == v] for v in ("se", "baseline")}
    d, bound, verdict = noise_verdict(per_seed["se"], per_seed["baseline"])
    assert rows["baseline"]["noise_mAP50-95"] == "baseline"
    assert rows["se"]["noise_mAP50-95"] == verdict  # the table states the verdict of the runs it lists
    assert float(rows["se"]["d_mAP50-95"]) == pytest.approx(d, abs=1e-6)
    assert rows["se"]["n"] == "2"
    assert int(rows["se"]["params"]) > int(rows["baseline"]["params"]) > 0
    assert float(rows["se"]["gflops"]) > 0 and float(rows["se"]["latency_ms"]) > 0
    assert float(rows["baseline"]["latency_ratio"]) == pytest.approx(1.0)


def test_plots_are_written(ablation):
    _, root = ablation
    for name in ("map_vs_gflops.png", "map_vs_latency.png", "training_curves.png"):
        p = root / name
        assert p.is_file() and p.stat().st_size > 5000, name


def test_rerun_skips_finished_runs(ablation, tiny_data, capsys):
    from tools import ablate

    project, root = ablation
    stamp = {run: (root / run / "results.csv").stat().st_mtime_ns for run in ("baseline-s0", "se-s1")}
    capsys.readouterr()
    ablate.main(["--name", "tiny", "--project", str(project), "--data", tiny_data, "--no-latency", *ARGS])
    out = capsys.readouterr().out
    assert out.count("finished earlier, skipped") == 4
    assert "training yolov5n" not in out
    assert stamp == {run: (root / run / "results.csv").stat().st_mtime_ns for run in stamp}


def test_unknown_variant_and_runner_owned_flags_are_refused(tiny_data, tmp_path):
    from tools import ablate

    with pytest.raises(SystemExit, match="NoSuchGate"):
        ablate.main(["--variants", "NoSuchGate", "--project", str(tmp_path), "--data", tiny_data])
    with pytest.raises(SystemExit):
        ablate.main(["--variants", "se", "--cfg", "yolov5s.yaml", "--project", str(tmp_path)])
    assert not any(tmp_path.iterdir())  # nothing trained, no run folder


@pytest.mark.slow
def test_interrupted_variant_resumes(tiny_data, tmp_path, monkeypatch):
    from models.engine.trainer import AttentionTrainer
    from tools import ablate

    save = AttentionTrainer.save_model

    def save_then_stop(self):
        out = save(self)
        if self.epoch == 0 and self.save_dir.name == "se-s0":
            raise KeyboardInterrupt("simulated interruption")
        return out

    args = ["--name", "r", "--project", str(tmp_path), "--data", tiny_data, "--scale", "n", "--variants", "se",
            "--epochs", "2", "--img", "64", "--batch-size", "8", "--workers", "0", "--no-latency"]
    monkeypatch.setattr(AttentionTrainer, "save_model", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        ablate.main(args)
    monkeypatch.setattr(AttentionTrainer, "save_model", save)
    run = tmp_path / "r" / "se-s0"
    assert (run / "weights" / "last.pt").is_file() and not (run / "ablate_done.json").exists()
    ablate.main(args)
    assert [int(float(r["epoch"])) for r in read(run / "results.csv")] == [1, 2]
    assert (run / "ablate_done.json").is_file()


def test_finished_runs_are_not_reused_under_other_settings(ablation, tiny_data):
    from tools import ablate

    project, _ = ablation
    changed = list(ARGS)
    changed[ARGS.index("--epochs") + 1] = "2"
    with pytest.raises(SystemExit, match="other settings.*epochs"):
        ablate.main(["--name", "tiny", "--project", str(project), "--data", tiny_data, *changed])


@pytest.mark.parametrize("seed", range(40))
def test_noise_verdict_is_welchs_test_at_5_percent(seed):
    """Our verdict agrees with scipy's Welch t-test (two-sided, unequal variances) on random seed samples."""
    import numpy as np
    from scipy import stats

    from tools.ablate_report import noise_verdict

    rng = np.random.default_rng(seed)
    n_v, n_b = rng.integers(2, 6, size=2)
    base = list(rng.normal(0.30, 0.02, n_b))
    variant = list(rng.normal(0.30 + rng.choice([0.0, 0.01, 0.03, 0.08]), rng.uniform(0.002, 0.04), n_v))
    d, bound, verdict = noise_verdict(variant, base)
    p = stats.ttest_ind(variant, base, equal_var=False).pvalue
    assert d == pytest.approx(np.mean(variant) - np.mean(base))
    if abs(p - 0.05) > 1e-9:
        assert verdict == ("outside noise" if p < 0.05 else "inside noise"), (p, d, bound)


def test_noise_verdict_with_one_seed_says_unverified():
    from tools.ablate_report import noise_verdict

    assert noise_verdict([0.5], [0.3, 0.31])[2] == "one seed: unverified"
    d, bound, verdict = noise_verdict([0.31, 0.31], [0.30, 0.30])  # no spread at all: any difference is real
    assert (verdict, bound) == ("outside noise", 0.0) and d == pytest.approx(0.01)
