"""Safety and accuracy metrics (docs/FORMULAS.md): CER, F1-macro, accuracy, error tiers, Pareto front,
and the expected CER under several annotators' votes.

Small pure functions on label arrays, in the style of scikit-learn: validate strictly, then
compute. Every number is derived from the K × K confusion counts (one ``np.bincount``): that is
~20× faster than scikit-learn's ``f1_score``/``confusion_matrix`` (whose input checks dominate at
10,000 samples), which matters when the app re-decides under many matrices, and the same
functions work on a stack of confusion matrices for vectorised bootstrap resamples.
F1-macro keeps scikit-learn's convention exactly (see :func:`f1_macro_from_confusion`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from rcl.taxonomy import Taxonomy

TIERS = ("correct", "visual_ambiguity", "type_1", "type_2")


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


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """K × K counts ``[true, predicted]`` of validated class indices (one ``np.bincount``)."""
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def f1_macro_from_confusion(confusion) -> np.ndarray | float:
    """F1-macro of one ``(K, K)`` or a stack ``(..., K, K)`` of confusion matrices.

    scikit-learn's ``f1_score(average="macro", zero_division=0)``: the mean over the classes
    present in the truth or the predictions of ``2·TP / (2·TP + FP + FN)``, where
    ``2·TP + FP + FN`` is simply (true count + predicted count) of the class.
    """
    confusion = np.asarray(confusion)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    seen = confusion.sum(axis=-1) + confusion.sum(axis=-2)
    present = seen > 0
    f1 = np.divide(2.0 * tp, seen, out=np.zeros(seen.shape), where=present)
    result = f1.sum(axis=-1) / present.sum(axis=-1)
    return float(result) if np.ndim(result) == 0 else result


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
    confusion = confusion_counts(y_true, y_pred, taxonomy.num_classes)
    tiers = np.bincount(tier_matrix(taxonomy).ravel(), weights=confusion.ravel(), minlength=len(TIERS))
    critical = np.asarray(taxonomy.is_critical)
    n_critical = int(confusion[critical].sum())
    n_benign = int(y_true.size - n_critical)
    # Type II counts under-calls of any critical truth; with two superclasses that is exactly
    # "malignant predicted benign". Sensitivity is at the superclass level: still called critical.
    caught = int(confusion[np.ix_(critical, critical)].sum())
    cleared = int(confusion[np.ix_(~critical, ~critical)].sum())
    return Evaluation(
        n=int(y_true.size),
        cer=_ratio(int(tiers[3]), n_critical),
        f1_macro=f1_macro_from_confusion(confusion),
        accuracy=float(np.trace(confusion) / y_true.size),
        sensitivity=_ratio(caught, n_critical),
        specificity=_ratio(cleared, n_benign),
        tiers={name: int(count) for name, count in zip(TIERS, tiers)},
        confusion=confusion.tolist(),
        classes=list(taxonomy.classes),
    )


def expected_misses(votes, y_pred, taxonomy: Taxonomy) -> tuple[np.ndarray, np.ndarray]:
    """Per case, under its annotators' votes: the expected under-call (the vote share of the classes
    the prediction under-calls) and the expected malignant weight (the malignant vote share).

    ``votes``: (N, K) vote counts or shares, each row with at least one vote. With one vote per
    case these are CER's own Type II indicator and malignant indicator.
    """
    votes = np.asarray(votes, dtype=np.float64)
    y_pred = as_labels(y_pred, taxonomy, "y_pred")
    if votes.ndim != 2 or votes.shape != (y_pred.size, taxonomy.num_classes):
        raise ValueError(f"votes must be (N, K) = ({y_pred.size}, {taxonomy.num_classes}), got shape {votes.shape}")
    totals = votes.sum(axis=1, keepdims=True)
    if not np.isfinite(votes).all() or (votes < 0).any() or (totals <= 0).any():
        raise ValueError("votes must be finite, non-negative, with at least one vote per case")
    shares = votes / totals
    under_call = (tier_matrix(taxonomy) == 3)[:, y_pred].T  # (N, K): would truth k make ŷ_i a Type II?
    return (shares * under_call).sum(axis=1), shares[:, np.asarray(taxonomy.is_critical)].sum(axis=1)


def expected_cer(votes, y_pred, taxonomy: Taxonomy) -> float | None:
    """The CER when each case's truth is one of its annotators, drawn in proportion to their votes:
    expected Type II errors / expected malignant cases (docs/FORMULAS.md). ``None`` when no vote is
    malignant. Equals :func:`evaluate`'s CER when every case has one vote (or a unanimous one)."""
    misses, malignant = expected_misses(votes, y_pred, taxonomy)
    return float(misses.sum() / malignant.sum()) if malignant.sum() > 0 else None


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


def argmax_metrics(logits: np.ndarray, labels: np.ndarray, taxonomy: Taxonomy, costs: np.ndarray) -> dict:
    """Evaluation of argmax predictions plus their mean decision cost under ``costs``."""
    predictions = np.asarray(logits).argmax(axis=1)
    result = evaluate(labels, predictions, taxonomy).to_dict()
    result["expected_cost"] = float(np.asarray(costs)[labels, predictions].mean())
    return result
