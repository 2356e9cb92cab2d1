"""Confusion views: the tiered confusion matrix as a page or card shows it (counts or row shares),
tier totals with their labels, and the fatal misses (Type II) of a run with their images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rcl.metrics import TIERS, error_tiers, tier_matrix
from rcl.runs import Run
from rcl.taxonomy import Taxonomy
from rcl.text import TIER_LABELS


def confusion_view(confusion, taxonomy: Taxonomy, normalise: bool = False) -> dict:
    """What a tiered confusion plot needs: values (counts or row fractions), counts, tier per cell."""
    counts = np.asarray(confusion, dtype=np.int64)
    if counts.shape != (taxonomy.num_classes,) * 2:
        raise ValueError(f"confusion matrix has shape {counts.shape}, expected {taxonomy.num_classes} × "
                         f"{taxonomy.num_classes} for {', '.join(taxonomy.classes)}")
    values = counts.astype(np.float64)
    if normalise:
        totals = values.sum(axis=1, keepdims=True)
        values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    return {"values": values, "counts": counts, "tiers": tier_matrix(taxonomy), "classes": list(taxonomy.classes)}


def tier_totals(tiers: dict) -> list[dict]:
    """Tier counts in a fixed order with their display labels."""
    return [{"tier": TIER_LABELS[t], "key": t, "count": int(tiers.get(t, 0))} for t in TIERS]


def type2_samples(run: Run, split: str = "test", limit: int = 48) -> list[dict]:
    """The malignant samples the model called benign (argmax), with an image path when the file exists."""
    pred = run.predictions(split)
    labels = np.asarray(pred["labels"], dtype=np.int64)
    predicted = np.asarray(pred["probs"]).argmax(axis=1)
    ids = pred.get("ids")
    tiers = error_tiers(labels, predicted, run.taxonomy)
    root = run.config.get("dataset", {}).get("root")
    out = []
    for i in np.flatnonzero(tiers == 3)[:limit]:
        sample_id = str(ids[i]) if ids is not None else str(i)
        path = Path(root) / sample_id if root else None
        out.append({
            "id": sample_id,
            "true": run.taxonomy.classes[labels[i]],
            "predicted": run.taxonomy.classes[predicted[i]],
            "p_predicted": float(pred["probs"][i, predicted[i]]),
            "path": str(path) if path is not None and path.is_file() else None,
        })
    return out



def tier_comparison(tiers: dict, reference: dict) -> list[dict]:
    """The error tiers (no "correct") of a decision beside those of a reference decision: per tier
    ``tier`` (label), ``key``, ``count`` and ``reference``, in a fixed order."""
    return [{**row, "reference": int(reference.get(row["key"], 0))} for row in tier_totals(tiers)
            if row["key"] != "correct"]


def missed_malignant(confusion, taxonomy: Taxonomy) -> tuple[int, int]:
    """``(missed, malignant)``: malignant cases called benign, and all malignant cases, of a
    confusion matrix; CER is their ratio (undefined when ``malignant`` is 0)."""
    view = confusion_view(confusion, taxonomy)
    critical = np.asarray(taxonomy.is_critical)
    counts = view["counts"][critical]
    return int(counts[:, ~critical].sum()), int(counts.sum())


__all__ = ["confusion_view", "missed_malignant", "tier_comparison", "tier_totals", "type2_samples"]
