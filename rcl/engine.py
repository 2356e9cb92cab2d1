"""The training engine: data for a run, loaders, one epoch, and one inference pass.

Nothing here writes files or decides anything after training: ``rcl.train`` drives these pieces
and ``rcl.posthoc`` analyses what they produced. ``infer`` runs the model over a split once and
returns both the logits and the penultimate features the unfamiliar-image detector needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, WeightedRandomSampler

from rcl import data as rdata
from rcl.config import TrainConfig
from rcl.data.sampling import sample_weights
from rcl.data.votes import run_votes
from rcl.labels.noise import apply_label_noise
from rcl.labels.review import apply_label_corrections, corrections_summary
from rcl.losses import check_soft_targets, loss_spec, make_loss
from rcl.models import place_batch
from rcl.severity import severity_matrix, validate_matrix
from rcl.taxonomy import Taxonomy

SPLITS = ("train", "val", "test")


@dataclass
class RunData:
    """Decoded images and labels for each split, ready for loaders."""

    taxonomy: Taxonomy
    images: np.ndarray  # (N, S, S, 3) uint8, all readable samples
    labels: np.ndarray  # (N,) int64
    ids: np.ndarray  # (N,) str, sample ids (paths relative to the dataset root)
    splits: dict[str, np.ndarray]  # indices into images for train/val/test
    info: dict  # what config.json records about the dataset
    label_noise: dict | None = None  # the flips applied to train labels (label_noise.json), if any
    label_corrections: dict | None = None  # reviewed labels applied in every split (label_corrections.json), if any
    groups: np.ndarray | None = None  # (N,) patient/lesion id or None per sample (folds keep groups whole)
    votes: np.ndarray | None = None  # (N, K) several annotators' vote counts, when the data has them
    targets: np.ndarray | None = None  # (N, K) float32 soft training targets (vote shares), when used


def load_run_data(config: TrainConfig) -> RunData:
    """Dataset → readable samples → leakage-safe splits (the data issue's guarantees)."""
    table = rdata.load_dataset(config.data, preset=config.preset, taxonomy=config.resolved_taxonomy(),
                               malignant=config.malignant, label_columns=config.label_columns)
    if table.votes is not None and config.targets == "soft":
        check_soft_targets(config.loss)  # before any image is decoded
    if config.limit is not None and config.limit < len(table.samples):
        table = rdata.subsample(table, config.limit, seed=config.seed)
    prepared = rdata.prepare(table, config.image_size)
    table = replace(table, samples=prepared.samples)
    splits = rdata.make_splits(table, config.val_fraction, config.test_fraction, seed=config.seed)
    dropped = {"exact": 0, "near": 0}
    if config.drop_duplicates:
        splits, dropped = rdata.drop_cross_split_duplicates(table, splits, prepared.images)
    samples = prepared.samples
    # Reviewed labels first, in every split and after the split (the same images as a run without
    # them); then injected noise, on the train split only, flips the reviewed labels.
    labels, corrected = apply_label_corrections(samples["label"].to_numpy(), samples["id"].to_numpy(),
                                                config.label_corrections, table.taxonomy)
    labels, noise = apply_label_noise(labels, samples["id"].to_numpy(), splits["train"],
                                      config.label_noise, table.taxonomy, config.seed)
    # several annotators: soft targets from the votes, after every step that changes a label
    votes, targets, annotators = run_votes(table, labels, config.targets)
    info = {
        "name": table.name,
        "layout": table.layout,
        "root": str(table.root),
        "synthetic": table.synthetic,
        "sizes": {s: int(len(idx)) for s, idx in splits.items()},
        "train_class_counts": np.bincount(labels[splits["train"]],
                                          minlength=table.taxonomy.num_classes).tolist(),
        "skipped_files": [list(item) for item in (table.skipped + prepared.skipped)][:200],
        "dropped_duplicates": dropped["exact"],
        "dropped_near_duplicates": dropped["near"],
        "warnings": table.warnings + prepared.warnings,
        **({"label_corrections": corrections_summary(corrected)} if corrected else {}),
    }
    if annotators is not None:
        info["annotators"] = annotators
    return RunData(
        taxonomy=table.taxonomy,
        images=prepared.images,
        labels=labels.astype(np.int64),
        ids=samples["id"].to_numpy().astype(str),
        splits=splits,
        info=info,
        label_noise=noise,
        label_corrections=corrected,
        groups=samples["group"].to_numpy(),
        votes=votes,
        targets=targets,
    )


def build_matrix(config: TrainConfig, taxonomy: Taxonomy) -> np.ndarray:
    """The run's severity matrix: the config's explicit one, else α/β over the data's taxonomy."""
    if config.matrix is not None:
        try:
            return validate_matrix(config.matrix, taxonomy)
        except ValueError as exc:
            raise ValueError(f"the severity matrix does not fit the data's classes: {exc}") from exc
    return severity_matrix(taxonomy, config.alpha, config.beta)


def build_loss(config: TrainConfig, matrix: np.ndarray, class_counts) -> nn.Module:
    """The config's loss, given what its registry entry says it takes."""
    spec = loss_spec(config.loss)
    params = dict(config.loss_params)
    if spec.takes_matrix:
        params.setdefault("matrix", matrix)
    if spec.takes_class_counts:
        params.setdefault("class_counts", class_counts)
    return make_loss(spec.name, **params)


class Precision:
    """Mixed precision only where it helps and is safe: CUDA (bf16 if supported, else fp16 + scaler)."""

    def __init__(self, device: torch.device, enabled: bool):
        self.enabled = enabled and device.type == "cuda"
        self.dtype = torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)
        self.device_type = device.type

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.") if self.enabled else "float32"


def make_loader(run_data: RunData, split: str, config: TrainConfig, device: torch.device,
                generator: torch.Generator | None = None, training: bool | None = None) -> DataLoader:
    """Shuffled (or drawn by ``config.sampling``) and augmented for training (the train split by
    default), else in order, plain. A training loader yields the soft targets when the run has
    them, else the labels. A drawn epoch has as many images as the split, drawn with replacement."""
    index = run_data.splits[split]
    training = split == "train" if training is None else training
    targets = run_data.targets if training and run_data.targets is not None else run_data.labels
    dataset = rdata.ImageArrayDataset(run_data.images, targets, train=training, indices=index,
                                      augment=config.augment)
    weights = sample_weights(run_data.labels[index], config.resolved_sampling()) if training else None
    sampler = None if weights is None else WeightedRandomSampler(torch.from_numpy(weights), len(index),
                                                                 replacement=True, generator=generator)
    return DataLoader(
        dataset,
        batch_size=config.batch_size if training else config.batch_size * 2,
        shuffle=training and sampler is None,
        sampler=sampler,
        drop_last=training and len(index) > config.batch_size,
        generator=generator,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=config.num_workers > 0,
    )


def make_averaged(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and BatchNorm statistics (``decay`` per
    step), or None. Averaging the last few hundred steps smooths the noise of small-batch updates,
    so the checkpoint chosen on validation depends less on the luck of its last batches."""
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def train_one_epoch(model, loader, loss_fn, optimizer, scheduler, device, precision: Precision,
                    on_step: Callable[[int, float], None] | None = None, max_steps: int | None = None,
                    averaged: AveragedModel | None = None) -> float:
    """One pass over ``loader``; returns the mean training loss. ``scheduler`` steps per batch, and
    so does the weight average ``averaged`` when there is one (``make_averaged``)."""
    model.train()
    total, count = 0.0, 0
    for step, (images, targets) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        images = place_batch(images, device)
        targets = targets.to(device, non_blocking=True)
        with precision.autocast():
            loss = loss_fn(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        precision.scaler.scale(loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()
        scheduler.step()
        if averaged is not None:
            averaged.update_parameters(model)
        value = loss.item()
        if not math.isfinite(value):
            raise RuntimeError(f"training diverged: the loss became {value} at step {step}; lower --lr")
        total += value * len(targets)
        count += len(targets)
        if on_step is not None:
            on_step(step, value)
    return total / max(count, 1)


@torch.no_grad()
def infer(model, loader, device, precision: Precision | None = None,
          features: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """One pass over ``loader`` in order: float32 logits and (``features``) pooled penultimate
    features, both as numpy. The backbone runs once per batch; only the small head runs twice."""
    model.eval()
    logits_out, features_out = [], []
    for images, _ in loader:
        images = place_batch(images, device)
        with precision.autocast() if precision is not None else torch.autocast(device.type, enabled=False):
            trunk = model.forward_features(images)
            logits_out.append(model.forward_head(trunk).float().cpu())
            if features:
                features_out.append(model.forward_head(trunk, pre_logits=True).float().cpu())
    if not logits_out:
        return np.zeros((0, 0), np.float32), (np.zeros((0, 0), np.float32) if features else None)
    logits = torch.cat(logits_out).numpy()
    return logits, (torch.cat(features_out).numpy() if features else None)


def predict_logits(model, loader, device, precision: Precision | None = None) -> np.ndarray:
    """Logits for every sample of ``loader`` in order, as float32 numpy."""
    return infer(model, loader, device, precision, features=False)[0]
