"""The typed configuration of one training run, serialised to ``config.json`` beside every run.

Plain values only (nanoGPT style): a run folder's ``config.json`` is enough to reproduce it with
``rcl train --config RUN/config.json``. ``check()`` validates everything that can be checked
without touching the data, so a background job with a bad config fails at submission.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from rcl.losses import LOSSES
from rcl.selection import SELECTION_RULES
from rcl.severity import PROPOSED_ALPHA, PROPOSED_BETA, validate_matrix
from rcl.taxonomy import Taxonomy, preset

SYNTHETIC = "synthetic"


@dataclass
class TrainConfig:
    # data
    data: str = SYNTHETIC  # a dataset folder or CSV, or "synthetic" for the bundled default
    preset: str | None = None  # built-in taxonomy; None: detected from the layout
    taxonomy: dict | None = None  # a custom taxonomy (Taxonomy.to_dict()), overrides preset
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    limit: int | None = None  # use at most this many samples (stratified), for quick runs
    drop_duplicates: bool = True  # drop test/val images whose content also appears in train
    # loss and severity
    loss: str = "ce"
    alpha: float = PROPOSED_ALPHA
    beta: float = PROPOSED_BETA
    matrix: list[list[float]] | None = None  # explicit severity matrix; overrides alpha/beta
    loss_params: dict = field(default_factory=dict)  # e.g. {"gamma": 2} for focal
    # model
    model: str = "small_cnn"
    pretrained: bool = False
    weights: str | None = None  # local checkpoint/safetensors file, for offline machines
    image_size: int = 64
    # optimisation
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    patience: int | None = 5  # early stopping on the selection score; None: never stop early
    select: str = "f1"  # checkpoint selection rule on validation
    cer_cap: float | None = None  # for select="f1_cer_cap"
    f1_floor: float | None = None  # for select="cer_f1_floor"
    max_steps: int | None = None  # stop after this many optimiser steps (smoke tests)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    amp: bool = True  # mixed precision when on a GPU (never on CPU)
    num_workers: int = 0
    name: str | None = None  # a label for tables and plots
    # label quality
    label_noise: str | None = None  # "KIND:RATE" flips of train labels (rcl.labels.noise), e.g. "miss:0.1"

    def check(self) -> TrainConfig:
        """Raise ``ValueError`` naming the first bad field; return self."""
        if self.data != SYNTHETIC and not Path(self.data).expanduser().exists():
            raise ValueError(f"dataset {self.data!r} does not exist (give a folder, a CSV, or 'synthetic')")
        if self.loss.lower().replace("-", "_") not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSSES)}")
        taxonomy = self.resolved_taxonomy()
        if self.matrix is not None:
            if taxonomy is None:
                raise ValueError("an explicit --matrix needs --preset or --taxonomy so its classes are known")
            validate_matrix(self.matrix, taxonomy)
        for name in ("alpha", "beta", "lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name, low in (("epochs", 1), ("batch_size", 1), ("image_size", 16)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1")
        if self.select not in SELECTION_RULES:
            raise ValueError(f"unknown selection rule {self.select!r}; choose one of: {', '.join(SELECTION_RULES)}")
        if self.select == "f1_cer_cap" and self.cer_cap is None:
            raise ValueError("select=f1_cer_cap needs cer_cap (e.g. 0.1)")
        if self.select == "cer_f1_floor" and self.f1_floor is None:
            raise ValueError("select=cer_f1_floor needs f1_floor (e.g. 0.5)")
        if self.weights is not None and not Path(self.weights).expanduser().is_file():
            raise ValueError(f"weights file {self.weights!r} does not exist")
        from rcl.labels.noise import parse_noise

        parse_noise(self.label_noise)
        from rcl.models import check_model_name  # torch/timm import only when checking

        check_model_name(self.model)
        return self

    def resolved_taxonomy(self) -> Taxonomy | None:
        """The taxonomy named by the config, or None when it comes from the data's layout."""
        if self.taxonomy is not None:
            return Taxonomy.from_dict(self.taxonomy)
        if self.preset is not None:
            return preset(self.preset)
        if self.data == SYNTHETIC:
            return preset("isic2018")
        return None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {str(path)!r} is not valid JSON: {exc}") from exc
        # A run folder's config.json nests the train config under "train".
        return cls.from_dict(data.get("train", data))
