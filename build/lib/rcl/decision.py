"""Decisions from stored probabilities (SPEC "Beyond the paper": Bayes minimum-risk decision).

A trained model's probabilities can be turned into a safer decision without retraining: predict
the class of lowest expected cost under the clinician's matrix. Everything here works on stored
test/validation probabilities, so the app can re-decide and re-evaluate instantly:

* :func:`decide` / :func:`expected_costs` — the Bayes rule ``argmin_j Σ_i p_i C[i, j]``.
* :func:`redecide`, :func:`sweep`, :func:`frontier` — metrics under one matrix, an (α, β) grid,
  and the (CER, F1) Pareto front over every finished run × every decision rule.
* :func:`fit_referral` — abstain ("refer to a clinician") in an uncertain band of malignancy.
* :func:`tune_decision_scale` — how strongly to apply a matrix to meet a CER target.

Costs: ``C = cost_matrix(M)``, i.e. ``M`` off the diagonal and 0 on it (a correct call is free).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from rcl.calibration import check_probs
from rcl.metrics import Evaluation, as_labels, error_tiers, evaluate, pareto_front
from rcl.severity import as_matrix, cost_matrix, severity_matrix
from rcl.taxonomy import Taxonomy

DEFAULT_ALPHAS: tuple[float, ...] = (1, 2, 5, 10)
DEFAULT_BETAS: tuple[float, ...] = (1, 2, 5, 10, 20, 50)
# Scales tried by tune_decision_scale: a log grid from barely cost-sensitive to extreme, plus 1
# (the matrix as the clinician wrote it).
# s = 0 (plain argmax) is a candidate: for a model trained with the costs, adding none may be best.
DEFAULT_SCALES: tuple[float, ...] = tuple(sorted({0.0, *np.geomspace(0.05, 100, 34).tolist(), 1.0}))
# fit_referral considers at most this many band edges (quantiles of the malignancy probability):
# all pairs are scored at once, so this bounds memory at ~MAX_BAND_EDGES² values.
MAX_BAND_EDGES = 513


# --- the Bayes rule ------------------------------------------------------------------------------
def _decision_costs(matrix, num_classes: int, taxonomy: Taxonomy | None = None) -> np.ndarray:
    costs = cost_matrix(as_matrix(matrix, taxonomy))
    if costs.shape[0] != num_classes:
        raise ValueError(f"matrix is {costs.shape[0]} × {costs.shape[0]} but probs has {num_classes} classes")
    return costs


def _bayes(probs: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Bayes decision on validated inputs; ties go to the lowest class index (``np.argmin``).

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
    return _bayes(probs, _decision_costs(matrix, probs.shape[1]))


def redecide(probs, labels, taxonomy: Taxonomy, matrix) -> Evaluation:
    """Re-evaluate stored predictions when the decision is made by Bayes under ``matrix``."""
    probs = check_probs(probs, taxonomy.num_classes)
    return evaluate(labels, _bayes(probs, _decision_costs(matrix, probs.shape[1], taxonomy)), taxonomy)


def _summary(evaluation: Evaluation) -> dict:
    return {
        "cer": evaluation.cer,
        "f1_macro": evaluation.f1_macro,
        "accuracy": evaluation.accuracy,
        "tiers": evaluation.tiers,
    }


def _grid(values: Sequence[float], name: str) -> list[float]:
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
        for a in _grid(alphas, "alphas")
        for b in _grid(betas, "betas")
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
            decision = f"bayes α={row['alpha']:g} β={row['beta']:g}"
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


# --- referral ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferralRule:
    """Refer a case to a clinician when its malignancy probability lies in ``[low, high]``.

    Malignancy probability = the sum of the probabilities of the critical classes (``critical``
    mask, in ``classes`` order). Outside the band the answer is the base decision: ``argmax`` when
    ``decision_matrix`` is None, else the Bayes decision under it. ``low``/``high`` None means the
    target was met without referring anyone. ``coverage`` and ``cer_accepted`` are as measured on
    the data the rule was fitted on; ``met_target`` False means no band reached ``target_cer`` there
    and the rule is the lowest-CER band found (it is then not safe to present as meeting the target).
    """

    low: float | None
    high: float | None
    classes: tuple[str, ...]
    critical: tuple[bool, ...]
    target_cer: float
    met_target: bool
    coverage: float
    cer_accepted: float | None
    decision_matrix: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        k = len(self.classes)
        if len(self.critical) != k:
            raise ValueError(f"referral rule: {k} classes but {len(self.critical)} critical flags")
        if (self.low is None) != (self.high is None) or (self.low is not None and not self.low <= self.high):
            raise ValueError(
                f"referral rule: band [{self.low}, {self.high}] must have low <= high, or both None"
            )
        if self.decision_matrix is not None and as_matrix(self.decision_matrix).shape != (k, k):
            raise ValueError(f"referral rule: decision_matrix must be {k} × {k} for its {k} classes")

    def to_dict(self) -> dict:
        return asdict(self) | {
            "classes": list(self.classes),
            "critical": list(self.critical),
            "decision_matrix": None
            if self.decision_matrix is None
            else [list(r) for r in self.decision_matrix],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ReferralRule:
        try:
            matrix = data.get("decision_matrix")
            return cls(
                low=None if data["low"] is None else float(data["low"]),
                high=None if data["high"] is None else float(data["high"]),
                classes=tuple(str(c) for c in data["classes"]),
                critical=tuple(bool(c) for c in data["critical"]),
                target_cer=float(data["target_cer"]),
                met_target=bool(data["met_target"]),
                coverage=float(data["coverage"]),
                cer_accepted=None if data["cer_accepted"] is None else float(data["cer_accepted"]),
                decision_matrix=None if matrix is None else tuple(map(tuple, as_matrix(matrix).tolist())),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"a referral rule needs low, high, classes, critical, target_cer, met_target, "
                f"coverage and cer_accepted ({exc!r})"
            ) from exc


def _check_target(target_cer: float) -> float:
    target_cer = float(target_cer)
    if not 0 <= target_cer <= 1:
        raise ValueError(f"target_cer must be a rate in [0, 1], got {target_cer!r}")
    return target_cer


def _base_decision(probs: np.ndarray, matrix) -> np.ndarray:
    return probs.argmax(axis=1) if matrix is None else _bayes(probs, cost_matrix(matrix))


def fit_referral(
    probs_val, labels_val, taxonomy: Taxonomy, target_cer: float, decision_matrix=None
) -> ReferralRule:
    """The referral band of highest validation coverage whose accepted cases meet ``target_cer``.

    Every case gets the base decision (argmax, or Bayes under ``decision_matrix``); those whose
    malignancy probability is in the band ``[low, high]`` are referred instead. Candidate edges are
    the distinct malignancy probabilities (at most :data:`MAX_BAND_EDGES` quantiles) and all bands
    are scored at once with cumulative sums. The target counts as met when the accepted Type II
    errors ≤ ``target_cer`` × accepted malignant cases (so accepting no malignant case meets it
    with zero misses). Among qualifying bands: highest coverage, then lowest accepted CER, then the
    narrowest band. If none qualifies, the lowest-CER band is returned with ``met_target=False``.
    """
    target_cer = _check_target(target_cer)
    probs = check_probs(probs_val, taxonomy.num_classes)
    labels = as_labels(labels_val, taxonomy, "labels_val")
    if labels.size != probs.shape[0]:
        raise ValueError(f"labels_val has {labels.size} entries but probs_val has {probs.shape[0]} rows")
    matrix = None if decision_matrix is None else as_matrix(decision_matrix, taxonomy)
    critical = np.asarray(taxonomy.is_critical)
    if not critical[labels].any():
        raise ValueError(
            "labels_val has no malignant case: CER is undefined, a referral band cannot be fitted"
        )

    p_malignant = probs[:, critical].sum(axis=1)
    order = np.argsort(p_malignant, kind="stable")
    p_sorted = p_malignant[order]
    miss = np.concatenate(
        [[0], np.cumsum(error_tiers(labels, _base_decision(probs, matrix), taxonomy)[order] == 3)]
    )
    sick = np.concatenate([[0], np.cumsum(critical[labels][order])])
    n = labels.size
    edges = np.concatenate([[0], np.flatnonzero(np.diff(p_sorted) > 0) + 1, [n]])  # never split equal values
    if edges.size > MAX_BAND_EDGES:
        edges = np.unique(edges[np.linspace(0, edges.size - 1, MAX_BAND_EDGES).round().astype(int)])

    # Bands referring sorted cases [a, b), a < b, plus the empty band (refer nobody) first.
    a, b = np.meshgrid(edges, edges, indexing="ij")
    keep = a < b
    a, b = np.concatenate([[0], a[keep]]), np.concatenate([[0], b[keep]])
    accepted = n - (b - a)
    misses = miss[-1] - (miss[b] - miss[a])
    malignant = sick[-1] - (sick[b] - sick[a])
    with np.errstate(invalid="ignore", divide="ignore"):
        cer = np.where(malignant > 0, misses / malignant, 0.0)
    width = np.where(b > a, p_sorted[np.maximum(b - 1, 0)] - p_sorted[np.minimum(a, n - 1)], 0.0)
    ok = (accepted > 0) & (misses <= target_cer * malignant + 1e-9)
    if ok.any():
        candidates = np.flatnonzero(ok)
        best = candidates[np.lexsort((width[candidates], cer[candidates], -accepted[candidates]))[0]]
    else:  # every non-empty accepted set here has malignant cases, so its CER is defined
        candidates = np.flatnonzero(accepted > 0)
        best = candidates[np.lexsort((width[candidates], -accepted[candidates], cer[candidates]))[0]]
    referred = b[best] > a[best]
    return ReferralRule(
        low=float(p_sorted[a[best]]) if referred else None,
        high=float(p_sorted[b[best] - 1]) if referred else None,
        classes=taxonomy.classes,
        critical=taxonomy.is_critical,
        target_cer=target_cer,
        met_target=bool(ok[best]),
        coverage=float(accepted[best] / n),
        cer_accepted=float(misses[best] / malignant[best]) if malignant[best] else None,
        decision_matrix=None if matrix is None else tuple(map(tuple, matrix.tolist())),
    )


def apply_referral(rule: ReferralRule, probs) -> tuple[np.ndarray, np.ndarray]:
    """``(decisions, referred)``: the base decision for every case, and which cases to refer.

    ``decisions`` is filled for referred cases too (what the model would have said); the caller
    shows "refer to a clinician" wherever ``referred`` is True.
    """
    probs = check_probs(probs, len(rule.classes))
    decisions = _base_decision(
        probs, None if rule.decision_matrix is None else np.asarray(rule.decision_matrix)
    )
    if rule.low is None:
        return decisions, np.zeros(probs.shape[0], dtype=bool)
    p_malignant = probs[:, np.asarray(rule.critical)].sum(axis=1)
    return decisions, (p_malignant >= rule.low) & (p_malignant <= rule.high)


def referral_report(rule: ReferralRule, probs, labels, taxonomy: Taxonomy) -> dict:
    """Coverage and metrics on the accepted cases, next to the same model without referral.

    ``cer_accepted``/``f1_accepted``/``accuracy_accepted`` are None when every case is referred.
    """
    if taxonomy.classes != rule.classes or taxonomy.is_critical != rule.critical:
        raise ValueError(
            "the referral rule was fitted for other classes or another malignant set than this taxonomy"
        )
    decisions, referred = apply_referral(rule, probs)
    labels = as_labels(labels, taxonomy)
    if labels.size != decisions.size:
        raise ValueError(f"labels has {labels.size} entries but probs has {decisions.size} rows")
    accepted = ~referred
    overall = evaluate(labels, decisions, taxonomy)
    kept = evaluate(labels[accepted], decisions[accepted], taxonomy) if accepted.any() else None
    return {
        "n": int(labels.size),
        "n_referred": int(referred.sum()),
        "n_accepted": int(accepted.sum()),
        "coverage": float(accepted.mean()),
        "malignant_referred": int((referred & np.asarray(taxonomy.is_critical)[labels]).sum()),
        "cer_accepted": None if kept is None else kept.cer,
        "f1_accepted": None if kept is None else kept.f1_macro,
        "accuracy_accepted": None if kept is None else kept.accuracy,
        "tiers_accepted": None if kept is None else kept.tiers,
        "cer_without_referral": overall.cer,
        "f1_without_referral": overall.f1_macro,
        "low": rule.low,
        "high": rule.high,
        "target_cer": rule.target_cer,
    }


# --- how strongly to apply a matrix --------------------------------------------------------------
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
    target_cer = _check_target(target_cer)
    probs = check_probs(probs_val, taxonomy.num_classes)
    labels = as_labels(labels_val, taxonomy, "labels_val")
    base = as_matrix(matrix, taxonomy)
    results = [
        (s, redecide(probs, labels, taxonomy, scaled_matrix(base, s))) for s in _grid(scales, "scales")
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
