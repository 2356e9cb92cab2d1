"""How strongly to apply a severity matrix at decision time: one knob ``s`` that moves a matrix
between argmax (``s = 0``) and the matrix as written (``s = 1``) and beyond, tuned on validation
to meet a CER target. A model trained with the costs needs less of them at decision time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rcl.calibration import check_probs
from rcl.decision import as_grid, check_target, redecide
from rcl.metrics import as_labels
from rcl.severity import as_matrix
from rcl.taxonomy import Taxonomy

# Scales tried by tune_decision_scale: a log grid from barely cost-sensitive to extreme, plus 1
# (the matrix as the clinician wrote it).
# s = 0 (plain argmax) is a candidate: for a model trained with the costs, adding none may be best.
DEFAULT_SCALES: tuple[float, ...] = tuple(sorted({0.0, *np.geomspace(0.05, 100, 34).tolist(), 1.0}))


def scaled_matrix(matrix, scale: float) -> np.ndarray:
    """Off-diagonal cells become ``1 + s·(M − 1)`` (clipped at 0); the diagonal is unchanged.

    Why not ``s·M``: the Bayes decision is invariant to multiplying every cost by one factor, so a
    plain scale would change nothing. Scaling the penalty *in excess of a plain error* (the cost 1
    of a within-superclass mistake) is the one-knob family that matters: ``s = 0`` gives the
    all-ones matrix (argmax), ``s = 1`` the matrix as given, and with the paper's matrix α and β
    become ``1 + s(α − 1)`` and ``1 + s(β − 1)``.
    """
    scale = float(scale)
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    values = as_matrix(matrix)
    scaled = np.maximum(1.0 + scale * (values - 1.0), 0.0)
    np.fill_diagonal(scaled, np.diagonal(values))
    return scaled


def tune_decision_scale(
    probs_val,
    labels_val,
    taxonomy: Taxonomy,
    matrix,
    target_cer: float,
    scales: Sequence[float] = DEFAULT_SCALES,
) -> dict:
    """The scale ``s`` (see :func:`scaled_matrix`) whose Bayes decision best meets a CER target.

    Among the ``scales`` whose validation CER ≤ ``target_cer``: the best F1-macro (ties: the scale
    closest to 1). If none meets it: the lowest CER (then best F1), with ``met_target=False``.
    Returns ``scale``, ``cer``, ``f1_macro``, ``accuracy``, ``met_target`` and ``matrix`` (K × K list).
    """
    target_cer = check_target(target_cer)
    probs = check_probs(probs_val, taxonomy.num_classes)
    labels = as_labels(labels_val, taxonomy, "labels_val")
    base = as_matrix(matrix, taxonomy)
    results = [
        (s, redecide(probs, labels, taxonomy, scaled_matrix(base, s))) for s in as_grid(scales, "scales")
    ]
    if results[0][1].cer is None:
        raise ValueError("labels_val has no malignant case: CER is undefined, cannot tune to a CER target")
    meeting = [(s, e) for s, e in results if e.cer <= target_cer]
    if meeting:
        scale, best = max(
            meeting, key=lambda r: (r[1].f1_macro, -abs(math.log(r[0])) if r[0] > 0 else -math.inf)
        )
    else:
        scale, best = min(results, key=lambda r: (r[1].cer, -r[1].f1_macro))
    return {
        "scale": scale,
        "cer": best.cer,
        "f1_macro": best.f1_macro,
        "accuracy": best.accuracy,
        "met_target": bool(meeting),
        "matrix": scaled_matrix(base, scale).tolist(),
    }
