"""The label-issue finder: out-of-fold probabilities, ranked with cleanlab's confident learning.

How it works:

1. **Out-of-fold probabilities.** The labels checked are a run's train split (the labels a model
   learns from; with ``label_noise`` the same flips ``rcl train`` would make with that seed). They
   are cut into K stratified folds that keep a patient's or lesion's images together; K models,
   each trained on K−1 folds with the project's own loop (:func:`rcl.train.train_one_epoch`, any
   registry loss and model, a fixed number of epochs: no held-out data is used to pick a
   checkpoint), predict the fold they never saw. No sample is judged by a model that learnt it.
2. **Which labels are issues:** :func:`cleanlab.filter.find_label_issues` with
   ``prune_by_noise_rate`` (confident learning, Northcutt et al. 2021). It counts a sample as
   confidently another class only above that class's own mean self-confidence, so a dominant
   class (nevi are two thirds of HAM10000) does not swamp the rare ones, and it flags as many
   samples per class pair as the estimated joint of given and true labels says are wrong.
3. **In which order:** suspected **misses** (given a benign label, the suggested label
   malignant) first, then everything else flagged; inside each block by
   :func:`cleanlab.rank.get_label_quality_scores` with ``self_confidence`` (the out-of-fold
   probability of the given label; lower = more suspect; a reviewer reads it as "the fold models
   gave this label 3%"). Over three seeds with 10% injected miss flips on the synthetic set it put
   the most flips among the first k/2 suspects (where a review starts) and was within one flip of
   the best at k; ranking misses by the out-of-fold P(malignant) (``p_malignant``) did worst.
   Figures in docs/LABELS.md; ``--rank`` picks another score.

``suggested`` is the most probable class other than the given one. ``from_run`` ranks a
finished run's stored validation and test probabilities instead: those samples were never
trained on, so they are out-of-sample too, but the train split cannot be checked that way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from rcl.config import TrainConfig
from rcl.taxonomy import Taxonomy
from rcl.text import plural

FILTER_BY = "prune_by_noise_rate"
RANK_METHOD = "self_confidence"
# cleanlab's label-quality scores, and "p_malignant": suspected misses by the out-of-fold probability
# of the malignant superclass (the error that matters is benign-for-malignant, whichever class).
RANK_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy", "p_malignant")
# What `rcl label-issues` trains when not told otherwise (measured in docs/LABELS.md).
# Fold models are a screening tool that should take minutes on any machine, so unless asked
# otherwise they are the small CPU network at 32 px (where the figures in docs/LABELS.md were
# measured), not the device's full training default.
FINDER_DEFAULTS = {"folds": 3, "epochs": 10, "model": "cnn4", "image_size": 32}


@dataclass
class OutOfFold:
    """Out-of-sample probabilities for the samples checked, with their given labels."""

    probs: np.ndarray  # (N, K)
    labels: np.ndarray  # (N,) given labels (noisy where noise was injected)
    ids: np.ndarray  # (N,) sample ids
    taxonomy: Taxonomy
    source: str  # what the probabilities come from, in words
    noise: dict | None = None  # the injection record (rcl.labels.noise), if any


def fold_indices(labels: np.ndarray, groups, folds: int, seed: int) -> list[np.ndarray]:
    """Held-out positions of each of ``folds`` stratified folds; a group never straddles two."""
    from sklearn.model_selection import StratifiedGroupKFold

    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be a whole number >= 2, got {folds!r}")
    n = labels.size
    if n < folds:
        raise ValueError(f"folds={folds} needs at least {folds} samples, got {n}")
    keys = np.array([f"\x00{i}" if g is None or g != g else str(g) for i, g in enumerate(
        groups if groups is not None else [None] * n)])
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [held for _, held in splitter.split(np.zeros(n), labels, keys)]


def out_of_fold(config: TrainConfig, folds: int = 3, callback: Callable[[dict], None] | None = None) -> OutOfFold:
    """Train ``folds`` models on the run's train split and predict each held-out fold."""
    import torch

    from rcl.calibration import softmax
    from rcl.engine import (
        Precision,
        build_loss,
        build_matrix,
        load_run_data,
        make_loader,
        predict_logits,
        train_one_epoch,
    )
    from rcl.models import make_model, pick_device

    emit = callback or (lambda event: None)
    config.check()
    data = load_run_data(config)
    train = data.splits["train"]
    labels = data.labels[train]
    taxonomy = data.taxonomy
    device = pick_device(config.device)
    precision = Precision(device, config.amp)
    matrix = build_matrix(config, taxonomy)
    probs = np.zeros((train.size, taxonomy.num_classes), np.float32)
    held_out = fold_indices(labels, None if data.groups is None else data.groups[train], folds, config.seed)
    for fold, held in enumerate(held_out):
        fit = np.setdiff1d(np.arange(train.size), held)
        fold_data = replace(data, splits={"train": train[fit], "val": train[held], "test": train[:0]})
        counts = np.bincount(data.labels[train[fit]], minlength=taxonomy.num_classes).tolist()
        loss_fn = build_loss(config, matrix, counts).to(device)
        torch.manual_seed(config.seed * 100 + fold)
        model = make_model(config.model, taxonomy.num_classes, pretrained=config.pretrained,
                           weights=config.weights, image_size=config.image_size).to(device)
        generator = torch.Generator().manual_seed(config.seed * 100 + fold)
        loader = make_loader(fold_data, "train", config, device, generator)
        steps = len(loader) if config.max_steps is None else min(len(loader), config.max_steps)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps * config.epochs))
        for epoch in range(config.epochs):
            loss = train_one_epoch(model, loader, loss_fn, optimizer, scheduler, device, precision,
                                   max_steps=config.max_steps)
            emit({"kind": "fold_epoch", "fold": fold + 1, "folds": folds, "epoch": epoch + 1,
                  "epochs": config.epochs, "train_loss": loss})
        logits = predict_logits(model, make_loader(fold_data, "val", config, device), device, precision)
        probs[held] = softmax(logits)
    source = (f"out-of-fold probabilities of {folds} {config.model} models ({config.loss}, "
              f"{plural(config.epochs, 'epoch')}) on the train split")
    return OutOfFold(probs, labels, data.ids[train], taxonomy, source, data.label_noise)


def from_run(run) -> OutOfFold:
    """A finished run's stored validation and test probabilities (temperature-calibrated)."""
    parts = [(run.calibrated_probs(split), run.predictions(split)) for split in ("val", "test")]
    return OutOfFold(
        probs=np.concatenate([p for p, _ in parts]),
        labels=np.concatenate([s["labels"] for _, s in parts]).astype(np.int64),
        ids=np.concatenate([s["ids"] for _, s in parts]).astype(str),
        taxonomy=run.taxonomy,
        source=f"run {run.id}: its stored validation and test probabilities (the train split cannot be "
               "checked from a run: its predictions there are in-sample and are not stored)",
    )


def rank_label_issues(oof: OutOfFold, method: str = RANK_METHOD) -> dict:
    """Flag and rank suspect labels; with an injection record, score the ranking against it.

    Returns ``{"source", "method", "n", "flagged", "misses", "rows", "noise"?, "precision"?}``;
    ``rows`` lists the flagged samples in review order: misses first, then by score.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    if method not in RANK_METHODS:
        raise ValueError(f"rank method must be one of {', '.join(RANK_METHODS)}, got {method!r}")
    taxonomy, labels, probs = oof.taxonomy, oof.labels, oof.probs
    flagged = find_label_issues(labels, probs, filter_by=FILTER_BY)
    critical = np.asarray(taxonomy.is_critical)
    others = probs.copy()
    others[np.arange(labels.size), labels] = -1
    suggested = others.argmax(axis=1)
    is_miss = ~critical[labels] & critical[suggested]
    p_malignant = probs[:, critical].sum(axis=1)
    if method == "p_malignant":
        scores = np.where(is_miss, 1 - p_malignant, get_label_quality_scores(labels, probs, method="self_confidence"))
    else:
        scores = get_label_quality_scores(labels, probs, method=method)
    order = np.lexsort((scores, ~(flagged & is_miss), ~flagged))
    rows = [{"id": oof.ids[i], "given": taxonomy.classes[labels[i]], "suggested": taxonomy.classes[suggested[i]],
             "score": round(float(scores[i]), 4), "p_malignant": round(float(p_malignant[i]), 4),
             "is_miss": bool(is_miss[i])} for i in order[: int(flagged.sum())]]
    result = {"source": oof.source, "method": f"cleanlab find_label_issues({FILTER_BY}), ranked by {method}",
              "n": int(labels.size), "flagged": int(flagged.sum()), "misses": int((flagged & is_miss).sum()),
              "rows": rows}
    if oof.noise is not None:
        result["noise"] = {k: oof.noise[k] for k in ("spec", "rule", "seed", "eligible", "flipped")}
        result["precision"] = ranking_precision(oof.ids[order], flagged[order], {s["id"] for s in oof.noise["samples"]})
    return result


def ranking_precision(ranked_ids: np.ndarray, flagged: np.ndarray, truth: set[str]) -> dict:
    """How well a ranking finds known flips: precision@k at k = number of flips (and at k/2: are the
    first suspects a reviewer sees mostly flips?), and precision/recall of the flagged set."""
    hits = np.isin(ranked_ids, list(truth))
    k = len(truth)
    n_flagged = int(flagged.sum())
    return {"k": k, "precision_at_k": float(hits[:k].mean()) if k else None,
            "precision_at_half_k": float(hits[: max(1, k // 2)].mean()) if k else None,
            "flagged_precision": float(hits[flagged].mean()) if n_flagged else None,
            "flagged_recall": float(hits[flagged].sum() / k) if k else None}
