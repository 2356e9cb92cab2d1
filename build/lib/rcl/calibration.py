"""Calibration: how far a model's confidence can be trusted, and temperature scaling to fix it.

The Bayes decision (:mod:`rcl.decision`) weighs probabilities against costs, so it is only as good
as the probabilities are calibrated. Here: top-label expected calibration error (ECE), the data
of a reliability diagram, and temperature scaling (Guo et al., 2017), fitted on validation logits.

The input checks shared by the decision, calibration and uncertainty modules live here too, since
"an (N, K) array of probabilities" is the contract all three start from.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from scipy.special import softmax as _softmax

# Row sums of stored float32 softmax outputs are off by ~1e-7·K; anything beyond this tolerance
# is not a probability vector (e.g. logits passed by mistake).
ROW_SUM_TOLERANCE = 1e-3
# Temperatures searched by fit_temperature: wide enough for any sane network, bounded so that the
# search cannot run off to 0 or infinity on separable data.
TEMPERATURE_BOUNDS = (1e-2, 1e2)


def _as_2d_finite(values, what: str, num_classes: int | None) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers; {exc}") from exc
    if array.ndim != 2:
        raise ValueError(f"{what} must be an (N, K) array, got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{what} is empty: no samples")
    if array.shape[1] < 2:
        raise ValueError(f"{what} needs at least 2 classes (columns), got {array.shape[1]}")
    if num_classes is not None and array.shape[1] != num_classes:
        raise ValueError(f"{what} has {array.shape[1]} columns but there are {num_classes} classes")
    if not np.isfinite(array).all():
        row = int(np.argwhere(~np.isfinite(array))[0, 0])
        raise ValueError(f"{what} contain NaN or infinity (first in row {row})")
    return array


def check_probs(probs, num_classes: int | None = None) -> np.ndarray:
    """``probs`` as a validated float64 (N, K) array: finite, >= 0, rows summing to 1 (± 1e-3)."""
    array = _as_2d_finite(probs, "probs", num_classes)
    if (array < 0).any():
        row = int(np.argwhere(array < 0)[0, 0])
        raise ValueError(f"probs must be >= 0, row {row} has a negative entry")
    sums = array.sum(axis=1)
    off = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"probs rows must sum to 1 (row {row} sums to {sums[row]:.6g}); pass probabilities, "
            "not logits (see rcl.calibration.softmax)"
        )
    return array


def check_logits(logits, num_classes: int | None = None) -> np.ndarray:
    """``logits`` as a validated float64 (N, K) array of finite numbers."""
    return _as_2d_finite(logits, "logits", num_classes)


def check_labels(labels, n: int, num_classes: int) -> np.ndarray:
    """``labels`` as int64 class indices in 0..K-1, one per row of the matching (N, K) array."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {array.shape}")
    if array.size != n:
        raise ValueError(f"labels has {array.size} entries but there are {n} rows of probabilities")
    if array.dtype.kind == "f" and np.isfinite(array).all() and (array == np.round(array)).all():
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    bad = (array < 0) | (array >= num_classes)
    if bad.any():
        raise ValueError(f"labels contain {int(array[bad][0])}, out of range for {num_classes} classes")
    return array


def softmax(logits) -> np.ndarray:
    """Row-wise softmax, numerically stable for large logits (scipy subtracts the row maximum)."""
    return _softmax(check_logits(logits), axis=1)


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """Calibrated probabilities ``softmax(logits / T)``; T > 1 softens, T < 1 sharpens."""
    temperature = float(temperature)
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return _softmax(check_logits(logits) / temperature, axis=1)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    log_p = log_softmax(logits / temperature, axis=1)
    return float(-log_p[np.arange(labels.size), labels].mean())


def fit_temperature(logits, labels) -> float:
    """The temperature T minimising the validation NLL of ``softmax(logits / T)``.

    Searched over log T (a bounded scalar search; NLL is smooth and unimodal in practice in log T,
    and the log keeps T > 0) within :data:`TEMPERATURE_BOUNDS`. Fit it on validation logits, never
    on the test split the result is reported on. Argmax predictions do not change, only confidence.
    """
    logits = check_logits(logits)
    labels = check_labels(labels, logits.shape[0], logits.shape[1])
    low, high = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(
        lambda log_t: _nll(logits, labels, float(np.exp(log_t))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def _top_label_bins(probs, labels, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin ``(lo, hi]``: count, summed confidence, summed correctness; and edges."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a whole number >= 1, got {n_bins!r}")
    probs = check_probs(probs)
    labels = check_labels(labels, probs.shape[0], probs.shape[1])
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    return count, conf_sum, correct_sum, edges


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """Top-label ECE: Σ_b (n_b / N) · |accuracy_b − confidence_b| over equal-width bins ``(lo, hi]``."""
    count, conf_sum, correct_sum, _ = _top_label_bins(probs, labels, n_bins)
    return float(np.abs(correct_sum - conf_sum).sum() / count.sum())


def reliability_diagram(probs, labels, n_bins: int = 15) -> dict:
    """Data for a reliability chart: per bin its edges, centre, accuracy, mean confidence and count.

    Empty bins have ``None`` accuracy and confidence (JSON- and Plotly-friendly gaps, not zeros).
    ``ece`` is included so the chart can be titled with it.
    """
    count, conf_sum, correct_sum, edges = _top_label_bins(probs, labels, n_bins)

    def per_bin(total: np.ndarray) -> list[float | None]:
        return [float(t / c) if c else None for t, c in zip(total, count)]

    return {
        "edges": edges.tolist(),
        "centers": ((edges[:-1] + edges[1:]) / 2).tolist(),
        "accuracy": per_bin(correct_sum),
        "confidence": per_bin(conf_sum),
        "count": count.tolist(),
        "ece": float(np.abs(correct_sum - conf_sum).sum() / count.sum()),
    }
