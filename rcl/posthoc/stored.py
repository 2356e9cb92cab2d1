"""What post-hoc analysis reads: a run folder's stored arrays and its config, nothing else.

``predictions.npz`` holds the selected checkpoint's val/test logits, probabilities, labels and
sample ids; ``features.npz`` the penultimate features (float16) of train/val/test and the train
labels, which the unfamiliar-image detector is fitted on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcl.atomic import save_npz
from rcl.taxonomy import Taxonomy

PREDICTIONS_FILE = "predictions.npz"
FEATURES_FILE = "features.npz"


def save_predictions(run_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    save_npz(Path(run_dir) / PREDICTIONS_FILE, compressed=True, **arrays)


def save_features(run_dir: Path, features: dict[str, np.ndarray], train_labels: np.ndarray) -> None:
    """Penultimate features as float16 (half the disk; distances need no more precision)."""
    arrays = {f"{split}_features": np.asarray(f, dtype=np.float16) for split, f in features.items()}
    save_npz(Path(run_dir) / FEATURES_FILE, compressed=True, train_labels=np.asarray(train_labels), **arrays)


@dataclass
class StoredRun:
    """A run folder's arrays, by split: ``split["val"]["logits"]`` etc."""

    path: Path
    config: dict
    splits: dict[str, dict[str, np.ndarray]]
    features: dict[str, np.ndarray] | None  # train/val/test features and train labels, when stored

    @property
    def taxonomy(self) -> Taxonomy:
        return Taxonomy.from_dict(self.config["taxonomy"])

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.config["matrix"], dtype=np.float64)

    @property
    def train(self) -> dict:
        return self.config["train"]


def load_stored(run_dir: str | Path) -> StoredRun:
    """Read a run folder's config and arrays; ``ValueError`` naming what is missing."""
    path = Path(run_dir)
    for name in ("config.json", PREDICTIONS_FILE):
        if not (path / name).is_file():
            raise ValueError(f"{path} has no {name}: post-hoc analysis needs a run that finished training")
    config = json.loads((path / "config.json").read_text())
    with np.load(path / PREDICTIONS_FILE, allow_pickle=False) as data:
        splits = {split: {k.removeprefix(f"{split}_"): data[k] for k in data.files if k.startswith(f"{split}_")}
                  for split in ("val", "test")}
    features = None
    if (path / FEATURES_FILE).is_file():
        with np.load(path / FEATURES_FILE, allow_pickle=False) as data:
            features = {k: data[k] for k in data.files}
    return StoredRun(path, config, splits, features)
