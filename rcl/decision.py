"""Decisions from stored probabilities: the Bayes minimum-risk decision under a severity matrix.

A trained model's probabilities can be turned into a safer decision without retraining: predict
the class of lowest expected cost under the clinician's matrix. Everything here works on stored
test/validation probabilities, so the app can re-decide and re-evaluate instantly:

* :func:`decide` / :func:`expected_costs` — the Bayes rule ``argmin_j Σ_i p_i C[i, j]``.
* :func:`redecide`, :func:`sweep`, :func:`frontier` — metrics under one matrix, an (α, β) grid,
  and the (CER, F1) Pareto front over every finished run × every decision rule.

Referral (abstaining in an uncertain band) lives in :mod:`rcl.referral`; how strongly to apply a
matrix, in :mod:`rcl.decision_scale`.

Costs: ``C = cost_matrix(M)``, i.e. ``M`` off the diagonal and 0 on it (a correct call is free).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rcl.calibration import check_probs
from rcl.metrics import Evaluation, as_labels, evaluate, pareto_front
from rcl.severity import as_matrix, cost_matrix, severity_matrix
from rcl.taxonomy import Taxonomy
from rcl.text import penalties

DEFAULT_ALPHAS: tuple[float, ...] = (1, 2, 5, 10)
DEFAULT_BETAS: tuple[float, ...] = (1, 2, 5, 10, 20, 50)


# --- the Bayes rule ------------------------------------------------------------------------------
def _decision_costs(matrix, num_classes: int, taxonomy: Taxonomy | None = None) -> np.ndarray:
    costs = cost_matrix(as_matrix(matrix, taxonomy))
    if costs.shape[0] != num_classes:
        raise ValueError(f"matrix is {costs.shape[0]} × {costs.shape[0]} but probs has {num_classes} classes")
    return costs


def decide_on_costs(probs: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Bayes decision on validated probabilities and a cost matrix; ties go to the lowest class index (``np.argmin``).

    When every off-diagonal cost is equal the rule is argmax in exact arithmetic; it is returned as
    ``argmax`` directly so that float rounding of near-ties can never make the two differ.
    """
    off_diagonal = costs[~np.eye(costs.shape[0], dtype=bool)]
    if (off_diagonal == off_diagonal[0]).all():
        return probs.argmax(axis=1)
    return (probs @ costs).argmin(axis=1)


def expected_costs(probs, matrix) -> np.ndarray:
    """(N, K): the expected cost ``Σ_i p_i C[i, j]`` of answering class ``j`` for each sample."""
    probs = check_probs(probs)
    return probs @ _decision_costs(matrix, probs.shape[1])


def decide(probs, matrix) -> np.ndarray:
    """Bayes minimum-risk class per sample: ``argmin_j Σ_i p_i C[i, j]`` (ties: lowest index).

    With the paper's matrix (1 within a superclass, α over-call, β under-call) raising β only makes
    benign answers costlier, so the set of samples called malignant can only grow and CER can only
    fall. With all off-diagonal costs equal the rule is exactly ``argmax``.
    """
    probs = check_probs(probs)
    return decide_on_costs(probs, _decision_costs(matrix, probs.shape[1]))


def redecide(probs, labels, taxonomy: Taxonomy, matrix) -> Evaluation:
    """Re-evaluate stored predictions when the decision is made by Bayes under ``matrix``."""
    probs = check_probs(probs, taxonomy.num_classes)
    return evaluate(labels, decide_on_costs(probs, _decision_costs(matrix, probs.shape[1], taxonomy)), taxonomy)


def check_target(target_cer: float) -> float:
    """``target_cer`` as a float, checked to be a rate in [0, 1]."""
    target_cer = float(target_cer)
    if not 0 <= target_cer <= 1:
        raise ValueError(f"target_cer must be a rate in [0, 1], got {target_cer!r}")
    return target_cer


def _summary(evaluation: Evaluation) -> dict:
    return {
        "cer": evaluation.cer,
        "f1_macro": evaluation.f1_macro,
        "accuracy": evaluation.accuracy,
        "tiers": evaluation.tiers,
    }


def as_grid(values: Sequence[float], name: str) -> list[float]:
    """``values`` (a number or a sequence) as a non-empty list of floats; ``name`` names it in errors."""
    values = [float(v) for v in np.atleast_1d(np.asarray(values, dtype=np.float64))]
    if not values:
        raise ValueError(f"{name} is empty: give at least one value")
    return values


def sweep(probs, labels, taxonomy: Taxonomy, alphas: Sequence[float], betas: Sequence[float]) -> list[dict]:
    """The Bayes decision's metrics for every (α, β) of a grid, α-major order.

    Each dict: ``alpha``, ``beta``, ``cer``, ``f1_macro``, ``accuracy``, ``tiers``.
    """
    probs = check_probs(probs, taxonomy.num_classes)
    labels = as_labels(labels, taxonomy)
    return [
        {
            "alpha": a,
            "beta": b,
            **_summary(redecide(probs, labels, taxonomy, severity_matrix(taxonomy, a, b))),
        }
        for a in as_grid(alphas, "alphas")
        for b in as_grid(betas, "betas")
    ]


FRONTIER_KEYS = ("run_id", "loss", "probs", "labels", "taxonomy")


def frontier(
    entries: Sequence[Mapping],
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    betas: Sequence[float] = DEFAULT_BETAS,
) -> list[dict]:
    """(CER, F1) points of every run under argmax and every swept Bayes matrix, Pareto set marked.

    ``entries``: one dict per finished run with ``run_id``, ``loss``, ``probs``, ``labels`` and
    ``taxonomy`` (test-split predictions). All runs must share the taxonomy; points are only
    comparable when they are scored on the same test split. Each point: ``run_id``, ``loss``,
    ``decision`` ("argmax" or "bayes α=… β=…"), ``alpha``/``beta`` (None for argmax), ``cer``,
    ``f1_macro``, ``accuracy`` and ``pareto`` (lower CER, higher F1; see :func:`rcl.pareto_front`).
    """
    if not entries:
        raise ValueError("frontier needs at least one run")
    taxonomy = None
    points: list[dict] = []
    for number, entry in enumerate(entries):
        missing = [key for key in FRONTIER_KEYS if key not in entry]
        if missing:
            raise ValueError(
                f"frontier entry {number} lacks {', '.join(missing)}; each needs {', '.join(FRONTIER_KEYS)}"
            )
        if not isinstance(entry["taxonomy"], Taxonomy):
            raise ValueError(f"frontier entry {number}: 'taxonomy' must be a Taxonomy")
        taxonomy = taxonomy or entry["taxonomy"]
        if (
            entry["taxonomy"].classes != taxonomy.classes
            or entry["taxonomy"].is_critical != taxonomy.is_critical
        ):
            raise ValueError(
                f"run {entry['run_id']!r} has a different taxonomy; a frontier compares runs of one dataset"
            )
        probs = check_probs(entry["probs"], taxonomy.num_classes)
        labels = as_labels(entry["labels"], taxonomy)
        run = {"run_id": entry["run_id"], "loss": entry["loss"]}
        argmax = evaluate(labels, probs.argmax(axis=1), taxonomy)
        points.append({**run, "decision": "argmax", "alpha": None, "beta": None, **_summary(argmax)})
        for row in sweep(probs, labels, taxonomy, alphas, betas):
            decision = f"bayes {penalties(row['alpha'], row['beta'])}"
            points.append({**run, "decision": decision, **row})
    front = set(pareto_front([(p["cer"], p["f1_macro"]) for p in points]))
    return [
        {
            key: p[key]
            for key in ("run_id", "loss", "decision", "alpha", "beta", "cer", "f1_macro", "accuracy")
        }
        | {"pareto": i in front}
        for i, p in enumerate(points)
    ]
