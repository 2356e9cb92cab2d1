"""Safety and accuracy metrics (SPEC "Metrics"): CER, F1-macro, accuracy, error tiers, Pareto front.

Small pure functions on label arrays, in the style of scikit-learn: validate strictly, then
compute. Counting that scikit-learn already does (confusion matrix, F1) is delegated to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

from rcl.taxonomy import Taxonomy

TIERS = ("correct", "visual_ambiguity", "type_1", "type_2")
TIER_LABELS = {
    "correct": "Correct",
    "visual_ambiguity": "Visual ambiguity (safe)",
    "type_1": "Type I (false alarm)",
    "type_2": "Type II (fatal miss)",
}


def as_labels(values, taxonomy: Taxonomy, what: str = "labels") -> np.ndarray:
    """Class indices from indices or class names, validated against the taxonomy."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{what} is empty: nothing to evaluate")
    if array.dtype.kind in "USO":  # names, possibly mixed with indices
        array = np.array(
            [v if isinstance(v, (int, np.integer)) else taxonomy.index(str(v)) for v in np.asarray(values, dtype=object)],
            dtype=np.int64,
        )
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(f"{what} must be whole class indices, got non-integer values")
    elif array.dtype.kind not in "iub":
        raise ValueError(f"{what} must be class indices or names, got dtype {array.dtype}")
    array = array.astype(np.int64)
    k = taxonomy.num_classes
    bad = (array < 0) | (array >= k)
    if bad.any():
        raise ValueError(
            f"{what} contain {int(array[bad][0])}, out of range for {k} classes of {taxonomy.name!r} (0..{k - 1})"
        )
    return array


def error_tiers(y_true: np.ndarray, y_pred: np.ndarray, taxonomy: Taxonomy) -> np.ndarray:
    """Per sample, the index into ``TIERS`` (labels already validated).

    With ordered superclasses: an over-call (predicted superclass above the truth's) is Type I, an
    under-call Type II, a different class in the same superclass a visual ambiguity.
    """
    s = np.asarray(taxonomy.superclass)
    true_s, pred_s = s[y_true], s[y_pred]
    return np.select(
        [y_true == y_pred, true_s == pred_s, pred_s > true_s],
        [0, 1, 2],
        default=3,
    )


def tier_matrix(taxonomy: Taxonomy) -> np.ndarray:
    """K × K: the tier index of every (true, predicted) cell, for colouring a confusion matrix."""
    k = taxonomy.num_classes
    true, pred = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    return error_tiers(true.ravel(), pred.ravel(), taxonomy).reshape(k, k)


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate`` returns. ``cer`` and ``sensitivity`` are ``None`` when no sample is malignant,
    ``specificity`` is ``None`` when none is benign: undefined, never 0."""

    n: int
    cer: float | None
    f1_macro: float
    accuracy: float
    sensitivity: float | None
    specificity: float | None
    tiers: dict[str, int]
    confusion: list[list[int]]
    classes: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


def evaluate(y_true, y_pred, taxonomy: Taxonomy) -> Evaluation:
    """CER, F1-macro, accuracy, superclass sensitivity/specificity, tier counts and confusion.

    ``CER`` = Type II errors / samples whose true class is critical (malignant). F1-macro averages
    over the classes present in ``y_true`` or ``y_pred`` (scikit-learn's convention), so a test
    split that lacks a rare class is not charged a zero for it.
    """
    y_true = as_labels(y_true, taxonomy, "y_true")
    y_pred = as_labels(y_pred, taxonomy, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} samples but y_pred has {y_pred.size}")
    tiers = np.bincount(error_tiers(y_true, y_pred, taxonomy), minlength=len(TIERS))
    critical = np.asarray(taxonomy.is_critical)
    true_critical, pred_critical = critical[y_true], critical[y_pred]
    n_critical = int(true_critical.sum())
    n_benign = int(y_true.size - n_critical)
    # Type II counts under-calls of any critical truth; with two superclasses that is exactly
    # "malignant predicted benign". Sensitivity is at the superclass level: still called critical.
    caught = int((true_critical & pred_critical).sum())
    cleared = int((~true_critical & ~pred_critical).sum())
    return Evaluation(
        n=int(y_true.size),
        cer=_ratio(int(tiers[3]), n_critical),
        f1_macro=float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        accuracy=float((y_true == y_pred).mean()),
        sensitivity=_ratio(caught, n_critical),
        specificity=_ratio(cleared, n_benign),
        tiers={name: int(count) for name, count in zip(TIERS, tiers)},
        confusion=confusion_matrix(y_true, y_pred, labels=np.arange(taxonomy.num_classes)).tolist(),
        classes=list(taxonomy.classes),
    )


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the (CER, F1) points no other point dominates (lower CER, higher F1), by CER.

    A point is dominated when another is at least as good on both and better on one. Points with
    an undefined CER (``None``/NaN) or F1 are never on the front.
    """
    array = np.array(
        [[math.nan if v is None else float(v) for v in p] for p in points], dtype=np.float64
    ).reshape(-1, 2)
    valid = np.flatnonzero(np.isfinite(array).all(axis=1))
    if valid.size == 0:
        return []
    cer, f1 = array[valid, 0], array[valid, 1]
    order = np.lexsort((-f1, cer))  # CER ascending, then F1 descending
    front: list[int] = []
    best_f1, best_cer = -math.inf, math.nan
    for i in order:
        if f1[i] > best_f1:
            front.append(int(valid[i]))
            best_f1, best_cer = f1[i], cer[i]
        elif f1[i] == best_f1 and cer[i] == best_cer:
            front.append(int(valid[i]))  # an exact tie is not dominated
    return front
