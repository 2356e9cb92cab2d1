"""The training engine, in the shape of torchvision's reference scripts.

``train_one_epoch`` runs one pass; ``predict_logits`` runs inference; ``run_training`` is ``main``:
it loads the data, trains with AdamW and cosine annealing, keeps the checkpoint chosen by the
run's selection rule on validation, stops early, and writes the run folder (docs/ARCHITECTURE.md).

Reproducible on CPU: every epoch re-seeds torch from ``(seed, epoch)``, so a run resumed from
``last.pt`` follows exactly the path of one that never stopped. On a GPU: autocast (bf16 where
supported, else fp16 with a gradient scaler), channels-last memory and cuDNN autotuning.
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

import rcl
from rcl import data as rdata
from rcl.calibration import apply_temperature, expected_calibration_error, fit_temperature, softmax
from rcl.config import SYNTHETIC, TrainConfig
from rcl.decision import fit_referral, redecide, referral_report, scaled_matrix, tune_decision_scale
from rcl.labels.noise import NOISE_FILE, apply_label_noise
from rcl.losses import COST_SENSITIVE_LOSSES, make_loss
from rcl.metrics import evaluate
from rcl.models import make_model, pick_device, read_state_dict
from rcl.ood import OOD_FILE, extract_features, fit_mahalanobis
from rcl.runs import read_history
from rcl.selection import select_epoch
from rcl.severity import cost_matrix, severity_matrix, validate_matrix
from rcl.taxonomy import Taxonomy
from rcl.uncertainty import bootstrap_ci

Callback = Callable[[dict], None]
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
    groups: np.ndarray | None = None  # (N,) patient/lesion id or None per sample (folds keep groups whole)


def load_run_data(config: TrainConfig) -> RunData:
    """Dataset → readable samples → leakage-safe splits (the data issue's guarantees)."""
    table = rdata.load_dataset(config.data, preset=config.preset, taxonomy=config.resolved_taxonomy())
    if config.limit is not None and config.limit < len(table.samples):
        table = rdata.subsample(table, config.limit, seed=config.seed)
    prepared = rdata.prepare(table, config.image_size)
    table = replace(table, samples=prepared.samples)
    splits = rdata.make_splits(table, config.val_fraction, config.test_fraction, seed=config.seed)
    dropped = 0
    if config.drop_duplicates:
        splits, dropped = rdata.drop_cross_split_duplicates(table, splits)
    samples = prepared.samples
    labels, noise = apply_label_noise(samples["label"].to_numpy(), samples["id"].to_numpy(), splits["train"],
                                      config.label_noise, table.taxonomy, config.seed)
    info = {
        "name": table.name,
        "layout": table.layout,
        "root": str(table.root),
        "synthetic": table.synthetic,
        "sizes": {s: int(len(idx)) for s, idx in splits.items()},
        "train_class_counts": np.bincount(labels[splits["train"]],
                                          minlength=table.taxonomy.num_classes).tolist(),
        "skipped_files": [list(item) for item in (table.skipped + prepared.skipped)][:200],
        "dropped_duplicates": int(dropped),
    }
    return RunData(
        taxonomy=table.taxonomy,
        images=prepared.images,
        labels=labels,
        ids=samples["id"].to_numpy().astype(str),
        splits=splits,
        info=info,
        label_noise=noise,
        groups=samples["group"].to_numpy(),
    )


def build_matrix(config: TrainConfig, taxonomy: Taxonomy) -> np.ndarray:
    if config.matrix is not None:
        try:
            return validate_matrix(config.matrix, taxonomy)
        except ValueError as exc:
            raise ValueError(f"the severity matrix does not fit the data's classes: {exc}") from exc
    return severity_matrix(taxonomy, config.alpha, config.beta)


def build_loss(config: TrainConfig, taxonomy: Taxonomy, matrix: np.ndarray, class_counts) -> nn.Module:
    name = config.loss.lower().replace("-", "_")
    params = dict(config.loss_params)
    if name in ("rcl", "expected_risk"):
        params.setdefault("matrix", matrix)
    elif name == "wce":
        params.setdefault("class_counts", class_counts)
    return make_loss(name, **params)


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


def train_one_epoch(model, loader, loss_fn, optimizer, scheduler, device, precision: Precision,
                    on_step: Callable[[int, float], None] | None = None, max_steps: int | None = None) -> float:
    """One pass over ``loader``; returns the mean training loss. ``scheduler`` steps per batch."""
    model.train()
    total, count = 0.0, 0
    channels_last = device.type == "cuda"
    for step, (images, targets) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = targets.to(device, non_blocking=True)
        with precision.autocast():
            loss = loss_fn(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        precision.scaler.scale(loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()
        scheduler.step()
        value = loss.item()
        if not math.isfinite(value):
            raise RuntimeError(f"training diverged: the loss became {value} at step {step}; lower --lr")
        total += value * len(targets)
        count += len(targets)
        if on_step is not None:
            on_step(step, value)
    return total / max(count, 1)


@torch.no_grad()
def predict_logits(model, loader, device, precision: Precision | None = None) -> np.ndarray:
    """Logits for every sample of ``loader`` in order, as float32 numpy."""
    model.eval()
    out = []
    for images, _ in loader:
        images = images.to(device, non_blocking=True)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        if precision is not None:
            with precision.autocast():
                logits = model(images)
        else:
            logits = model(images)
        out.append(logits.float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def make_loader(run_data: RunData, split: str, config: TrainConfig, device: torch.device,
                generator: torch.Generator | None = None, training: bool | None = None) -> DataLoader:
    """Shuffled and augmented for training (the train split by default), else in order, plain."""
    index = run_data.splits[split]
    training = split == "train" if training is None else training
    dataset = rdata.ImageArrayDataset(run_data.images, run_data.labels, train=training, indices=index)
    return DataLoader(
        dataset,
        batch_size=config.batch_size if training else config.batch_size * 2,
        shuffle=training,
        drop_last=training and len(index) > config.batch_size,
        generator=generator,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=config.num_workers > 0,
    )


def split_metrics(logits: np.ndarray, labels: np.ndarray, taxonomy: Taxonomy, costs: np.ndarray) -> dict:
    """Evaluation of argmax predictions plus the mean decision cost under the run's matrix."""
    predictions = logits.argmax(axis=1)
    result = evaluate(labels, predictions, taxonomy).to_dict()
    result["expected_cost"] = float(costs[labels, predictions].mean())
    return result


def make_run_id(config: TrainConfig) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    tag = config.name or f"{config.loss}-{config.model}-s{config.seed}"
    return f"{stamp}-{''.join(c if c.isalnum() or c in '-_.' else '-' for c in tag)}-{random.randbytes(2).hex()}"


def versions() -> dict:
    import timm

    return {"rcl": rcl.__version__, "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _write_atomic(path: Path, text: str) -> None:
    """A reader (the app, a job monitor) sees the old file or the new one, never half of one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _write_json(path: Path, data) -> None:
    _write_atomic(path, json.dumps(data, indent=2, default=float))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_training(config: TrainConfig, out_dir: str | Path, callback: Callback | None = None) -> dict:
    """Train, select, evaluate and write the run folder at ``out_dir``; return ``metrics.json``'s content.

    If ``out_dir/last.pt`` exists from an interrupted run with the same config, training resumes.
    """
    config.check()
    emit = callback or (lambda event: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    precision = Precision(device, config.amp)

    _seed_everything(config.seed)
    run_data = load_run_data(config)
    taxonomy = run_data.taxonomy
    matrix = build_matrix(config, taxonomy)
    costs = cost_matrix(matrix)
    class_counts = run_data.info["train_class_counts"]
    loss_fn = build_loss(config, taxonomy, matrix, class_counts).to(device)

    torch.manual_seed(config.seed)
    model = make_model(config.model, taxonomy.num_classes, pretrained=config.pretrained, weights=config.weights,
                       image_size=config.image_size)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)

    generator = torch.Generator().manual_seed(config.seed)
    loaders = {split: make_loader(run_data, split, config, device, generator if split == "train" else None)
               for split in SPLITS}
    steps_per_epoch = len(loaders["train"])
    if config.max_steps is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps)
    total_steps = max(1, steps_per_epoch * config.epochs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)

    run_config = {
        "train": config.to_dict(),
        "taxonomy": taxonomy.to_dict(),
        "matrix": matrix.tolist(),
        "dataset": run_data.info,
        "device": str(device),
        "precision": precision.name,
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write_json(out / "config.json", run_config)
    if run_data.label_noise is not None:
        _write_json(out / NOISE_FILE, run_data.label_noise)

    history: list[dict] = []
    epoch_logits: dict[str, list[np.ndarray]] = {"val": [], "test": []}
    start_epoch = 0
    resume_path = out / "last.pt"
    if resume_path.exists():
        state = torch.load(resume_path, map_location="cpu", weights_only=True)
        if state.get("config") == json.dumps(config.to_dict(), sort_keys=True):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch = int(state["epoch"])
            history = read_history(out)[:start_epoch]
            with np.load(out / "epochs.npz") as saved:
                for split in epoch_logits:
                    epoch_logits[split] = list(saved[f"{split}_logits"][:start_epoch])

    emit({"kind": "start", "epochs": config.epochs, "total_steps": total_steps, "device": str(device),
          "sizes": run_data.info["sizes"], "resumed_from_epoch": start_epoch})
    best = select_epoch(history, config.select, config.cer_cap, config.f1_floor) if history else None
    global_step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, config.epochs):
        # Re-seeding per epoch makes augmentation and shuffling independent of where a run resumed.
        torch.manual_seed(config.seed * 1000 + epoch)
        generator.manual_seed(config.seed * 1000 + epoch)
        began = time.perf_counter()

        def on_step(step: int, loss: float, epoch=epoch) -> None:
            emit({"kind": "step", "epoch": epoch + 1, "epochs": config.epochs,
                  "step": epoch * steps_per_epoch + step + 1, "total_steps": total_steps, "loss": loss})

        train_loss = train_one_epoch(model, loaders["train"], loss_fn, optimizer, scheduler, device, precision,
                                     on_step, config.max_steps)
        global_step += steps_per_epoch
        row = {"epoch": epoch + 1, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0]}
        for split in ("val", "test"):
            logits = predict_logits(model, loaders[split], device, precision)
            epoch_logits[split].append(logits)
            if split == "val":
                labels = run_data.labels[run_data.splits["val"]]
                metrics = split_metrics(logits, labels, taxonomy, costs)
                row.update(val_loss=float(loss_fn(torch.from_numpy(logits).to(device),
                                                  torch.from_numpy(labels).to(device)).item()),
                           val_cer=metrics["cer"], val_f1_macro=metrics["f1_macro"],
                           val_accuracy=metrics["accuracy"], val_expected_cost=metrics["expected_cost"])
        row["seconds"] = round(time.perf_counter() - began, 3)
        history.append(row)
        _write_atomic(out / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        np.savez(out / "epochs.npz", **{f"{s}_logits": np.stack(v) for s, v in epoch_logits.items()})

        chosen = select_epoch(history, config.select, config.cer_cap, config.f1_floor)
        if chosen != best:
            best = chosen
            save_weights(model, out / "model.safetensors")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch + 1,
                    "config": json.dumps(config.to_dict(), sort_keys=True)}, resume_path)
        emit({"kind": "epoch", **row, "epochs": config.epochs, "step": global_step, "total_steps": total_steps,
              "selected_epoch": best + 1})
        if config.patience is not None and len(history) - 1 - best >= config.patience:
            emit({"kind": "message", "message": f"early stop: no better epoch in {config.patience} epochs"})
            break

    metrics = finish_run(out, config, run_data, model, device, matrix, history, best)
    emit({"kind": "end", "metrics": {s: {k: metrics[s][k] for k in ("cer", "f1_macro", "accuracy")}
                                     for s in ("val", "test")}})
    return metrics


def save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)


REFERRAL_TARGET_CER = 0.05


def decision_defaults(config: TrainConfig, taxonomy: Taxonomy, matrix: np.ndarray, val: dict, test: dict) -> dict:
    """Calibration and the default decision rules, fitted on validation only (test is reported).

    - temperature scaling of the logits (decisions use calibrated probabilities);
    - the default Bayes decision: the raw matrix for a plain loss; for a cost-sensitive loss (RCL,
      expected risk) the costs are already in the training, so applying them again at decision
      time double-counts them: the default is then the matrix scaled (``1 + s·(M − 1)``) by the
      factor tuned on validation for the best F1 at a CER no worse than argmax's;
    - a referral band on P(malignant) for a 5% CER target on the accepted cases.
    Each part that the validation split cannot support (e.g. no malignant case) is left out with
    the reason, never guessed.
    """
    extras: dict = {}
    temperature = fit_temperature(val["logits"], val["labels"])
    val_probs, test_probs = apply_temperature(val["logits"], temperature), apply_temperature(test["logits"], temperature)
    extras["calibration"] = {
        "temperature": temperature,
        "val_ece": {"raw": expected_calibration_error(val["probs"], val["labels"]),
                    "calibrated": expected_calibration_error(val_probs, val["labels"])},
        "test_ece": {"raw": expected_calibration_error(test["probs"], test["labels"]),
                     "calibrated": expected_calibration_error(test_probs, test["labels"])},
    }
    cost_sensitive = config.loss in COST_SENSITIVE_LOSSES
    decision = {"cost_sensitive_training": cost_sensitive, "scale": 1.0, "rule": "bayes (raw matrix)"}
    argmax_cer = evaluate(val["labels"], val["logits"].argmax(axis=1), taxonomy).cer
    if cost_sensitive and argmax_cer is not None:
        tuned = tune_decision_scale(val_probs, val["labels"], taxonomy, matrix, target_cer=argmax_cer)
        decision.update(scale=tuned["scale"], rule="bayes (scale tuned on validation)", target_val_cer=argmax_cer,
                        note="trained with a cost-sensitive loss: the raw matrix at decision time would apply the "
                             "costs twice, so the decision uses the scale tuned on validation")
    decision_matrix = scaled_matrix(matrix, decision["scale"])
    decision["test"] = redecide(test_probs, test["labels"], taxonomy, decision_matrix).to_dict()
    extras["decision"] = decision
    try:
        rule = fit_referral(val_probs, val["labels"], taxonomy, REFERRAL_TARGET_CER, decision_matrix)
        extras["referral"] = {"rule": rule.to_dict(),
                              "test": referral_report(rule, test_probs, test["labels"], taxonomy)}
    except ValueError as exc:
        extras["referral"] = {"unavailable": str(exc)}
    return extras


def finish_run(out: Path, config: TrainConfig, run_data: RunData, model, device, matrix, history,
               best) -> dict:
    """Reload the selected checkpoint and write predictions and metrics from it.

    Predictions come from the saved weights through the same path ``rcl evaluate`` uses, so
    reloading the checkpoint reproduces them exactly.
    """
    model.load_state_dict(read_state_dict(out / "model.safetensors"))
    taxonomy = run_data.taxonomy
    arrays, metrics, features = {}, {}, {}
    for split in SPLITS:
        loader = make_loader(run_data, split, config, device, training=False)
        features[split] = extract_features(model, loader, device)
        if split == "train":
            continue
        index = run_data.splits[split]
        logits = predict_logits(model, loader, device)
        labels = run_data.labels[index]
        arrays.update({f"{split}_logits": logits.astype(np.float32), f"{split}_probs": softmax(logits).astype(np.float32),
                       f"{split}_labels": labels, f"{split}_ids": run_data.ids[index]})
        metrics[split] = split_metrics(logits, labels, taxonomy, cost_matrix(matrix))
    np.savez_compressed(out / "predictions.npz", **arrays)
    metrics["test"]["ci"] = bootstrap_ci(arrays["test_labels"], arrays["test_logits"].argmax(axis=1), taxonomy,
                                         seed=config.seed)
    val = {k.removeprefix("val_"): v for k, v in arrays.items() if k.startswith("val_")}
    test = {k.removeprefix("test_"): v for k, v in arrays.items() if k.startswith("test_")}
    metrics.update(decision_defaults(config, taxonomy, matrix, val, test))
    detector = fit_mahalanobis(features["train"], run_data.labels[run_data.splits["train"]]).calibrate(features["val"])
    detector.save(out / OOD_FILE)
    metrics["ood"] = {"method": "mahalanobis", "threshold": detector.threshold, "flag_rate": detector.flag_rate,
                      "val_flagged": float(detector.flag(features["val"]).mean()),
                      "test_flagged": float(detector.flag(features["test"]).mean())}
    metrics.update(
        selected_epoch=best + 1,
        epochs_run=len(history),
        select=config.select,
        loss=config.loss,
        model=config.model,
        data=run_data.info["name"],
        synthetic=run_data.info["synthetic"],
        seconds=round(sum(r["seconds"] for r in history), 2),
    )
    _write_json(out / "metrics.json", metrics)
    (out / "last.pt").unlink(missing_ok=True)  # finished: the resume state is no longer needed
    return metrics


__all__ = ["SYNTHETIC", "run_training", "train_one_epoch", "predict_logits", "load_run_data", "make_run_id"]


def evaluate_external(run_dir: str | Path, data: str, preset: str | None = None, batch_size: int = 64,
                      ood_only: bool = False) -> dict:
    """A trained run on another dataset (e.g. the official ISIC 2018 test set).

    Every readable sample of ``data`` is predicted; its labels are read through the run's own
    taxonomy, so class names must match it (aliases allowed). Returns a ``metrics.json``-shaped
    dict with the external set under ``"test"``, plus the share of images the run's detector
    flags as unfamiliar. With ``ood_only`` the data may have any classes (e.g. MRI shown to a
    dermoscopy model): only the unfamiliar share is reported.
    """
    from rcl.runs import load_model

    if not Path(data).expanduser().exists():
        raise ValueError(f"dataset {str(data)!r} does not exist")
    loaded = load_model(run_dir)
    if ood_only and loaded.ood is None:
        raise ValueError(f"{run_dir} has no unfamiliar-image detector (ood.npz): retrain it with this version")
    try:
        table = rdata.load_dataset(data, preset=preset, taxonomy=None if ood_only else loaded.taxonomy)
    except ValueError as exc:
        if not ood_only:
            raise ValueError(f"{exc} (to measure only how unfamiliar the images are to this model, add --ood-only)") from exc
        # The labels play no part in an unfamiliarity score: any class names will do.
        table = rdata.load_dataset(data, malignant=[])
    prepared = rdata.prepare(table, loaded.image_size)
    labels = prepared.samples["label"].to_numpy().astype(np.int64)
    dataset = rdata.ImageArrayDataset(prepared.images, labels, train=False)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    device = torch.device("cpu")
    result = {"run": str(loaded.source), "data": str(data), "n": int(len(labels)),
              "skipped_files": [list(s) for s in (table.skipped + prepared.skipped)][:200]}
    if not ood_only:
        logits = predict_logits(loaded.model, loader, device)
        result["test"] = split_metrics(logits, labels, loaded.taxonomy, cost_matrix(loaded.matrix))
    if loaded.ood is not None:
        flagged = loaded.ood.flag(extract_features(loaded.model, loader, device))
        result["ood"] = {"method": "mahalanobis", "flagged_share": float(flagged.mean()),
                         "flagged": int(flagged.sum()), "n": int(flagged.size),
                         "expected_share_in_distribution": loaded.ood.flag_rate}
    return result
