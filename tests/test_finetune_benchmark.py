"""benchmarks/finetune_start.py end to end on tiny synthetic runs, so the script cannot rot."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import finetune_start  # noqa: E402

pytestmark = pytest.mark.slow


def test_each_method_fine_tunes_the_ce_run_of_its_seed_the_librarys_way(tmp_path):
    from rcl.config import TrainConfig
    from rcl.train import run_training

    starts = tmp_path / "ablation"
    run_training(TrainConfig(data="synthetic", model="small_cnn", image_size=32, epochs=1, limit=150, max_steps=2,
                             device="cpu", seed=0, name="CE-seed0"), starts / "CE-seed0")
    out = tmp_path / "finetune.md"
    finetune_start.main(["--from", str(starts), "--seeds", "0", "--runs", str(tmp_path / "runs"), "--out", str(out)])
    trained = sorted(p.name for p in (tmp_path / "runs").iterdir() if (p / "metrics.json").is_file())
    assert trained == sorted(f"{m}-{s}-seed0" for m in finetune_start.METHODS for s in finetune_start.SCHEDULES)
    config = json.loads((tmp_path / "runs" / "RCL-Proposed-ft6-lr3e-4-seed0" / "config.json").read_text())["train"]
    assert config["weights"] == str((starts / "CE-seed0" / "model.safetensors").resolve())
    assert (config["loss"], config["alpha"], config["beta"], config["epochs"], config["lr"]) == ("rcl", 5, 20, 6, 3e-4)
    assert (config["limit"], config["model"], config["image_size"]) == (150, "small_cnn", 32)  # the start's recipe
    text = out.read_text()
    assert "| RCL-Proposed | scratch | | | not finished (RCL-Proposed-seed0) |" in text
    assert "| RCL-Proposed | CE model | 6 | 0.0003 |" in text and "Verdict**: not measured yet" in text

    with pytest.raises(SystemExit, match="CE-seed1 is not a finished run"):
        finetune_start.main(["--from", str(starts), "--seeds", "1", "--runs", str(tmp_path / "runs"), "--out", str(out)])
