"""``run_training``: one training run, top to bottom (the shape of torchvision's reference scripts).

It loads the data, trains with AdamW and cosine annealing, keeps the checkpoint chosen by the
run's selection rule on validation, stops early, runs the selected model once over every split,
stores the arrays, and lets ``rcl.posthoc`` fit and measure everything else from them.

The run folder is written as a unit (docs/ARCHITECTURE.md, "Run folders"): training happens in the
hidden sibling ``.<name>.partial/`` and replaces the target only on success; a target that is a
complete run is refused unless ``overwrite``; an interrupted run resumes from the partial
folder's ``last.pt`` when its config is the same.

Reproducible on CPU: every epoch re-seeds torch from ``(seed, epoch)``, so a resumed run follows
exactly the path of one that never stopped. Channels-last memory on CPU and GPU (``rcl.models.place``);
on a GPU also autocast (bf16 where supported, else fp16 with a gradient scaler) and cuDNN autotuning.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

import rcl
from rcl import paths, posthoc
from rcl.atomic import save_npz, write_json, write_text, write_with
from rcl.calibration import softmax
from rcl.config import TrainConfig
from rcl.data.splits import SPLITS
from rcl.engine import (
    Precision,
    build_loss,
    build_matrix,
    infer,
    load_run_data,
    make_averaged,
    make_loader,
    predict_logits,
    train_one_epoch,
)
from rcl.errors import DataWarning, UserError
from rcl.fine_tune import check_start_split
from rcl.labels.noise import NOISE_FILE
from rcl.labels.review import CORRECTIONS_FILE
from rcl.metrics import argmax_metrics
from rcl.models import make_model, pick_device, place, read_checkpoint, read_state_dict
from rcl.runs import read_history
from rcl.selection import select_epoch
from rcl.severity import cost_matrix

Callback = Callable[[dict], None]
# Files a training run produces; anything else in a target folder (a job's train.log) is kept.
RUN_FILES = ("config.json", NOISE_FILE, CORRECTIONS_FILE, "history.jsonl", "epochs.npz", paths.RUN_WEIGHTS, "last.pt",
             "predictions.npz", posthoc.FEATURES_FILE, "ood.npz", paths.COMPLETE_MARKER)


def make_run_id(config: TrainConfig) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    tag = config.name or f"{config.loss}-{config.model}-s{config.seed}"
    return f"{stamp}-{''.join(c if c.isalnum() or c in '-_.' else '-' for c in tag)}-{random.randbytes(2).hex()}"


def versions() -> dict:
    import timm

    return {"rcl": rcl.__version__, "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_with(path, lambda tmp: save_file(state, str(tmp)))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_folder(out: Path, config: TrainConfig, overwrite: bool) -> Path:
    """The partial folder to train in: refuses a complete target without ``overwrite``, keeps a
    partial folder whose ``last.pt`` has the same config (to resume), clears any other."""
    if paths.is_complete(out) and not overwrite:
        raise ValueError(f"{out} already holds a finished run: pass --overwrite to replace it, or choose another --out")
    partial = paths.partial_dir(out)
    if partial.exists() and _resume_state(partial, config) is None:
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    return partial


def _resume_state(partial: Path, config: TrainConfig) -> dict | None:
    path = partial / "last.pt"
    if not path.is_file():
        return None
    try:
        state = read_checkpoint(path)
    except UserError:  # a damaged checkpoint is no state to resume from: start afresh, and say so
        warnings.warn(f"the resume checkpoint {path} is damaged: training starts again from epoch 1", DataWarning,
                      stacklevel=2)
        return None
    return state if state.get("config") == json.dumps(config.to_dict(), sort_keys=True) else None


def _restart_if_reviews_changed(partial: Path, corrections: dict) -> None:
    """A review file is appended to while runs train: resuming on other labels than the first
    epochs saw would not equal an uninterrupted run, so a changed file restarts training."""
    earlier = partial / CORRECTIONS_FILE
    if (partial / "last.pt").is_file() and earlier.is_file() \
            and json.loads(earlier.read_text()).get("sha256") != corrections["sha256"]:
        warnings.warn(f"the review file {corrections['file']} changed since this run started: training starts "
                      "again from epoch 1 on the labels it holds now", DataWarning, stacklevel=2)
        (partial / "last.pt").unlink()


def publish(partial: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``partial`` folder; files of ``out`` that training does not
    produce (a job's ``train.log`` and ``job_config.json``) move into the new folder."""
    old = out.parent / f".{out.name}.replaced"
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.replace(out, old)
    os.replace(partial, out)
    if old.exists():
        for item in old.iterdir():
            if item.name not in RUN_FILES and not (out / item.name).exists():
                os.replace(item, out / item.name)
        shutil.rmtree(old, ignore_errors=True)


def run_training(config: TrainConfig, out_dir: str | Path, callback: Callback | None = None,
                 overwrite: bool = False) -> dict:
    """Train, select, analyse and publish the run folder at ``out_dir``; return ``metrics.json``'s content."""
    config.check()
    config.sampling = config.resolved_sampling()  # config.json records what the run did
    emit = callback or (lambda event: None)
    out = Path(out_dir).expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = prepare_folder(out, config, overwrite)
    device = pick_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    precision = Precision(device, config.amp)

    # data, matrix, loss, model
    _seed_everything(config.seed)
    run_data = load_run_data(config)
    check_start_split(config.weights, run_data.info["root"],
                      run_data.ids[np.concatenate([run_data.splits["val"], run_data.splits["test"]])].tolist())
    taxonomy = run_data.taxonomy
    matrix = build_matrix(config, taxonomy)
    costs = cost_matrix(matrix)
    loss_fn = build_loss(config, matrix, run_data.info["train_class_counts"]).to(device)
    torch.manual_seed(config.seed)
    model = make_model(config.model, taxonomy.num_classes, pretrained=config.pretrained, weights=config.weights,
                       image_size=config.image_size)
    place(model, device)
    averaged = make_averaged(model, config.ema)
    kept = model if averaged is None else averaged.module  # the weights evaluated, selected and published

    # loaders and optimiser
    generator = torch.Generator().manual_seed(config.seed)
    loaders = {split: make_loader(run_data, split, config, device, generator if split == "train" else None)
               for split in SPLITS}
    steps_per_epoch = len(loaders["train"])
    if config.max_steps is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps)
    total_steps = max(1, steps_per_epoch * config.epochs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)

    write_json(work / "config.json", {
        "train": config.to_dict(), "taxonomy": taxonomy.to_dict(), "matrix": matrix.tolist(),
        "dataset": run_data.info, "device": str(device), "precision": precision.name, "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    if run_data.label_noise is not None:
        write_json(work / NOISE_FILE, run_data.label_noise)
    if run_data.label_corrections is not None:
        _restart_if_reviews_changed(work, run_data.label_corrections)
        write_json(work / CORRECTIONS_FILE, run_data.label_corrections)

    # resume from the partial folder's last.pt (same config only, checked by prepare_folder)
    history: list[dict] = []
    epoch_logits: dict[str, list[np.ndarray]] = {"val": [], "test": []}
    start_epoch = 0
    state = _resume_state(work, config)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if averaged is not None:
            averaged.load_state_dict(state["averaged"])
        start_epoch = int(state["epoch"])
        history = read_history(work)[:start_epoch]
        with np.load(work / "epochs.npz") as saved:
            for split in epoch_logits:
                epoch_logits[split] = list(saved[f"{split}_logits"][:start_epoch])

    # train
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
                                     on_step, config.max_steps, averaged)
        global_step += steps_per_epoch
        row = {"epoch": epoch + 1, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0]}
        for split in ("val", "test"):
            epoch_logits[split].append(predict_logits(kept, loaders[split], device, precision))
        val_logits, val_labels = epoch_logits["val"][-1], run_data.labels[run_data.splits["val"]]
        metrics = argmax_metrics(val_logits, val_labels, taxonomy, costs)
        val_targets = val_labels if run_data.targets is None else run_data.targets[run_data.splits["val"]]
        row.update(val_loss=float(loss_fn(torch.from_numpy(val_logits).to(device),
                                          torch.from_numpy(val_targets).to(device)).item()),
                   val_cer=metrics["cer"], val_f1_macro=metrics["f1_macro"],
                   val_accuracy=metrics["accuracy"], val_expected_cost=metrics["expected_cost"])
        row["seconds"] = round(time.perf_counter() - began, 3)
        history.append(row)
        write_text(work / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        save_npz(work / "epochs.npz", **{f"{s}_logits": np.stack(v) for s, v in epoch_logits.items()})

        chosen = select_epoch(history, config.select, config.cer_cap, config.f1_floor)
        if chosen != best:
            best = chosen
            save_weights(kept, work / paths.RUN_WEIGHTS)
        checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "epoch": epoch + 1,
                      "config": json.dumps(config.to_dict(), sort_keys=True)}
        if averaged is not None:
            checkpoint["averaged"] = averaged.state_dict()
        write_with(work / "last.pt", lambda tmp, checkpoint=checkpoint: torch.save(checkpoint, tmp))
        emit({"kind": "epoch", **row, "epochs": config.epochs, "step": global_step, "total_steps": total_steps,
              "selected_epoch": best + 1})
        if config.patience is not None and len(history) - 1 - best >= config.patience:
            emit({"kind": "message", "message": f"early stop: no better epoch in {config.patience} epochs"})
            break

    # the selected checkpoint, once over every split: logits and features stored for post-hoc work.
    # Float32 and the same path `rcl evaluate` uses, so reloading the weights reproduces them exactly.
    kept.load_state_dict(read_state_dict(work / paths.RUN_WEIGHTS))
    arrays, features = {}, {}
    for split in SPLITS:
        index = run_data.splits[split]
        logits, features[split] = infer(kept, make_loader(run_data, split, config, device, training=False), device)
        if split != "train":
            arrays.update({f"{split}_logits": logits.astype(np.float32),
                           f"{split}_probs": softmax(logits).astype(np.float32),
                           f"{split}_labels": run_data.labels[index], f"{split}_ids": run_data.ids[index]})
            if run_data.votes is not None:  # the annotators' votes, for the expected CER
                arrays[f"{split}_votes"] = run_data.votes[index]
    posthoc.save_predictions(work, arrays)
    posthoc.save_features(work, features, run_data.labels[run_data.splits["train"]])

    metrics = posthoc.analyse(work)
    metrics.update(selected_epoch=best + 1, epochs_run=len(history), select=config.select, loss=config.loss,
                   model=config.model, data=run_data.info["name"], synthetic=run_data.info["synthetic"],
                   seconds=round(sum(r["seconds"] for r in history), 2))
    (work / "last.pt").unlink(missing_ok=True)  # finished: the resume state is no longer needed
    write_json(work / paths.COMPLETE_MARKER, metrics)
    publish(work, out)
    emit({"kind": "end", "metrics": {s: {k: metrics[s][k] for k in ("cer", "f1_macro", "accuracy")}
                                     for s in ("val", "test")}})
    return metrics


__all__ = ["run_training", "make_run_id", "save_weights", "versions"]
