"""Helpers shared by the app and browser tests: tiny trained runs and test images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY_LOSSES = (("ce", 0), ("rcl", 1), ("focal", 2))


def make_runs(home: Path, models: Path, cache: Path) -> list[Path]:
    """Train the tiny runs into ``home`` and export the first to ``models/tiny``."""
    from rcl.config import TrainConfig
    from rcl.runs import export_run
    from rcl.train import run_training

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RCL_HOME", str(home))
        mp.setenv("RCL_CACHE", str(cache))
        mp.setenv("RCL_MODELS", str(models))
        out = []
        for loss, seed in TINY_LOSSES:
            config = TrainConfig(data="synthetic", model="small_cnn", epochs=1, image_size=32, limit=300,
                                 max_steps=3, batch_size=16, loss=loss, seed=seed, name=f"tiny-{loss}")
            run_training(config, home / f"run-{seed}-{loss}")
            out.append(home / f"run-{seed}-{loss}")
        export_run(out[0], "tiny", models_root=models)
    return out


def png_bytes(size: int = 64, seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


TEST_METRICS = {"cer": 0.25, "f1_macro": 0.5, "accuracy": 0.75, "n": 8,
                "tiers": {"correct": 6, "visual_ambiguity": 1, "type_1": 0, "type_2": 1}}


def write_run(folder: Path, **train) -> Path:
    """A minimal finished run folder, as the trainer writes it (no weights: listing needs none)."""
    from rcl.taxonomy import preset

    folder.mkdir(parents=True)
    config = {"train": {"loss": "ce", "model": "small_cnn", "seed": 0, "data": "synthetic", **train},
              "taxonomy": preset("isic2018").to_dict(), "dataset": {"name": "synthetic", "synthetic": True}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps({"test": TEST_METRICS, "epochs_run": 1}))
    return folder
