"""Bootstrap confidence intervals for CER, F1-macro and accuracy, and paired run comparisons.

A test split of a few hundred malignant cases gives CER with an error bar of several points; the
app shows that bar, and says whether two runs differ by more than it.

How the resampling is vectorised: CER, F1-macro and accuracy depend on a resample only through
its confusion counts. Drawing N cases with replacement from the N observed ones makes the counts
of each (true, predicted) cell jointly ``Multinomial(N, observed cell frequencies)`` — exactly the
distribution of the percentile bootstrap, without materialising a (B, N) index matrix. So one
``rng.multinomial(N, freqs, size=B)`` call gives all B confusion matrices at once, in O(B·K²)
time and memory whatever N is. Paired comparisons draw over the joint (true, A's, B's) cells, so
both runs always see the same resampled cases.

Why not ``scipy.stats.bootstrap``: it resamples the raw arrays (B × N memory), returns one
statistic per call, and has no way to drop resamples where CER is undefined (no malignant case),
which would turn the whole CER interval into NaN.
"""

from __future__ import annotations

import math

import numpy as np

from rcl.metrics import as_labels, confusion_counts, expected_misses, f1_macro_from_confusion, tier_matrix
from rcl.taxonomy import Taxonomy

METRICS = ("cer", "f1_macro", "accuracy")
MIN_RESAMPLES = 100
# A resample lacks every one of m malignant cases with probability ≈ e^-m, so dropping more than
# 10% of them happens with at most 2 malignant cases, where a CER interval means nothing: it is
# then reported as unavailable (None) rather than computed from a biased subset.
MIN_VALID_FRACTION = 0.9


def _check_settings(n_resamples: int, confidence: float) -> tuple[int, float]:
    if (
        isinstance(n_resamples, bool)
        or not isinstance(n_resamples, (int, np.integer))
        or n_resamples < MIN_RESAMPLES
    ):
        raise ValueError(f"n_resamples must be a whole number >= {MIN_RESAMPLES}, got {n_resamples!r}")
    confidence = float(confidence)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
    return int(n_resamples), confidence


def _labels(taxonomy: Taxonomy, **arrays) -> list[np.ndarray]:
    checked = [as_labels(values, taxonomy, name) for name, values in arrays.items()]
    sizes = {name: a.size for name, a in zip(arrays, checked)}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"label arrays differ in length: {sizes}")
    return checked


def _resampled_counts(codes: np.ndarray, n_codes: int, n_resamples: int, seed) -> np.ndarray:
    """(B, n_codes): cell counts of B bootstrap resamples of the cases (see the module docstring)."""
    frequencies = np.bincount(codes, minlength=n_codes) / codes.size
    return np.random.default_rng(seed).multinomial(codes.size, frequencies, size=n_resamples)


def confusion_metrics(confusion, taxonomy: Taxonomy) -> dict[str, np.ndarray]:
    """CER and sensitivity (NaN where undefined), F1-macro and accuracy of a stack ``(..., K, K)``
    of confusion counts.

    Same definitions as :func:`rcl.evaluate` (Type II = under-call of the truth's superclass;
    sensitivity = critical cases still called critical).
    """
    confusion = np.asarray(confusion)
    critical = np.asarray(taxonomy.is_critical)
    type_2 = (confusion * (tier_matrix(taxonomy) == 3)).sum(axis=(-2, -1))
    n_critical = confusion[..., critical, :].sum(axis=(-2, -1))
    caught = confusion[..., critical, :][..., critical].sum(axis=(-2, -1))
    n = confusion.sum(axis=(-2, -1))
    undefined = np.full(np.shape(n), np.nan)
    return {
        "cer": np.divide(type_2, n_critical, out=undefined.copy(), where=n_critical > 0),
        "f1_macro": np.asarray(f1_macro_from_confusion(confusion)),
        "accuracy": np.trace(confusion, axis1=-2, axis2=-1) / n,
        "sensitivity": np.divide(caught, n_critical, out=undefined, where=n_critical > 0),
    }


def resampled_confusions(y_true, y_pred, taxonomy: Taxonomy, n_resamples: int = 1000, seed: int | None = 0) -> np.ndarray:
    """(B, K, K) confusion counts of B bootstrap resamples of the cases: the draws behind
    :func:`bootstrap_ci` (same inputs and seed, same resamples)."""
    n_resamples, _ = _check_settings(n_resamples, 0.95)
    y_true, y_pred = _labels(taxonomy, y_true=y_true, y_pred=y_pred)
    k = taxonomy.num_classes
    return _resampled_counts(y_true * k + y_pred, k * k, n_resamples, seed).reshape(n_resamples, k, k)


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float | None, float | None, int]:
    """Percentile interval over the defined (non-NaN) resamples, and how many were used."""
    valid = values[~np.isnan(values)]
    if valid.size < MIN_VALID_FRACTION * values.size or valid.size == 0:
        return None, None, int(valid.size)
    tail = (1 - confidence) / 2
    low, high = np.quantile(valid, [tail, 1 - tail])
    return float(low), float(high), int(valid.size)


def _value(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def bootstrap_ci(
    y_true,
    y_pred,
    taxonomy: Taxonomy,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> dict:
    """Percentile bootstrap intervals for ``cer``, ``f1_macro`` and ``accuracy``.

    Each metric: ``{"value", "low", "high", "resamples_used"}``. CER resamples without a malignant
    case are dropped; if that leaves fewer than :data:`MIN_VALID_FRACTION` of them, or CER itself
    is undefined, ``low``/``high`` are None. Seeded: the same inputs and seed give the same interval.
    """
    n_resamples, confidence = _check_settings(n_resamples, confidence)
    y_true, y_pred = _labels(taxonomy, y_true=y_true, y_pred=y_pred)
    observed = confusion_metrics(confusion_counts(y_true, y_pred, taxonomy.num_classes), taxonomy)
    resampled = confusion_metrics(resampled_confusions(y_true, y_pred, taxonomy, n_resamples, seed), taxonomy)
    result: dict = {"n": int(y_true.size), "n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    for name in METRICS:
        value = _value(observed[name])
        low, high, used = percentile_interval(resampled[name], confidence) if value is not None else (None, None, 0)
        result[name] = {"value": value, "low": low, "high": high, "resamples_used": used}
    return result


def expected_cer_ci(votes, y_pred, taxonomy: Taxonomy, n_resamples: int = 1000, confidence: float = 0.95,
                    seed: int | None = 0) -> dict:
    """The expected CER under the annotators' votes (:func:`rcl.metrics.expected_cer`) with a
    percentile bootstrap interval over cases, and the expected counts it rests on.

    Each case carries a fractional miss and malignant weight, so the confusion-count shortcut of
    :func:`bootstrap_ci` does not apply: cases are resampled directly (multinomial counts per case,
    in chunks of 100 resamples so memory stays O(100·N)).
    """
    n_resamples, confidence = _check_settings(n_resamples, confidence)
    misses, malignant = expected_misses(votes, y_pred, taxonomy)
    n = misses.size
    rng = np.random.default_rng(seed)
    ratios = []
    for start in range(0, n_resamples, 100):
        weights = rng.multinomial(n, np.full(n, 1 / n), size=min(100, n_resamples - start))
        found = weights @ malignant
        ratios.append(np.divide(weights @ misses, found, out=np.full(found.shape, np.nan), where=found > 0))
    value = float(misses.sum() / malignant.sum()) if malignant.sum() > 0 else None
    low, high, used = percentile_interval(np.concatenate(ratios), confidence) if value is not None else (None, None, 0)
    return {"value": value, "low": low, "high": high, "resamples_used": used, "n": int(n),
            "expected_misses": round(float(misses.sum()), 4), "expected_malignant": round(float(malignant.sum()), 4)}


def paired_difference(
    y_true,
    pred_a,
    pred_b,
    taxonomy: Taxonomy,
    metric: str = "cer",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> dict:
    """Does run A differ from run B on ``metric``? A paired bootstrap of ``metric(A) − metric(B)``.

    Both runs are scored on the same resampled cases, which removes the case-mix noise they share
    and makes the test far sharper than comparing two separate intervals. ``significant`` is True
    when the interval excludes 0. Returns ``metric``, ``value_a``, ``value_b``, ``diff``, ``low``,
    ``high``, ``significant``, ``confidence``, ``n_resamples``, ``resamples_used``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    n_resamples, confidence = _check_settings(n_resamples, confidence)
    y_true, pred_a, pred_b = _labels(taxonomy, y_true=y_true, pred_a=pred_a, pred_b=pred_b)
    k = taxonomy.num_classes
    codes = (y_true * k + pred_a) * k + pred_b
    joint = np.concatenate(
        [np.bincount(codes, minlength=k**3)[None], _resampled_counts(codes, k**3, n_resamples, seed)]
    )
    joint = joint.reshape(-1, k, k, k)  # [resample, true, A's prediction, B's prediction]
    a = confusion_metrics(joint.sum(axis=3), taxonomy)[metric]
    b = confusion_metrics(joint.sum(axis=2), taxonomy)[metric]
    value_a, value_b = _value(a[0]), _value(b[0])
    diff = None if value_a is None or value_b is None else value_a - value_b
    low, high, used = percentile_interval(a[1:] - b[1:], confidence) if diff is not None else (None, None, 0)
    return {
        "metric": metric,
        "value_a": value_a,
        "value_b": value_b,
        "diff": diff,
        "low": low,
        "high": high,
        "significant": low is not None and (low > 0 or high < 0),
        "confidence": confidence,
        "n_resamples": n_resamples,
        "resamples_used": used,
    }
