"""Referral: abstain ("refer to a clinician") when a case's malignancy probability lies in an
uncertain band, fitted on validation to meet a CER target on the cases the model keeps.

"Uncertain" means: P(malignant superclass) lies inside the band ``[low, high]``, or the decision
is a benign class while P(malignant) is above the band (above ``high``; above
:data:`BENIGN_CEILING` when no band was needed). A likely malignancy is never sent home.

:func:`fit_referral` finds the band, :func:`apply_referral` applies it, :func:`referral_report`
scores it next to the same model without referral. Works on stored probabilities (numpy only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from rcl.calibration import check_probs
from rcl.decision import check_target, decide_on_costs
from rcl.metrics import as_labels, error_tiers, evaluate
from rcl.severity import as_matrix, cost_matrix
from rcl.taxonomy import Taxonomy

# fit_referral considers at most this many band edges (quantiles of the malignancy probability):
# all pairs are scored at once, so this bounds memory at ~MAX_BAND_EDGES² values.
MAX_BAND_EDGES = 513
# With no band (the target met without referring): a benign decision above this P(malignant) refers.
BENIGN_CEILING = 0.5


def uncertain(p_malignant, benign_decision, low: float | None, high: float | None) -> np.ndarray:
    """Which cases are "uncertain": P(malignant) in ``[low, high]``, or a benign decision while
    P(malignant) is above the band (above :data:`BENIGN_CEILING` when ``low``/``high`` are None)."""
    p_malignant = np.asarray(p_malignant, dtype=np.float64)
    benign_decision = np.asarray(benign_decision, dtype=bool)
    if low is None:
        return benign_decision & (p_malignant > BENIGN_CEILING)
    return ((p_malignant >= low) & (p_malignant <= high)) | (benign_decision & (p_malignant > high))


@dataclass(frozen=True)
class ReferralRule:
    """Refer a case to a clinician when it is :func:`uncertain` (P(malignant) in ``[low, high]``,
    or a benign decision above the band).

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


def _base_decision(probs: np.ndarray, matrix) -> np.ndarray:
    return probs.argmax(axis=1) if matrix is None else decide_on_costs(probs, cost_matrix(matrix))


def fit_referral(
    probs_val, labels_val, taxonomy: Taxonomy, target_cer: float, decision_matrix=None
) -> ReferralRule:
    """The referral band of highest validation coverage whose accepted cases meet ``target_cer``.

    Every case gets the base decision (argmax, or Bayes under ``decision_matrix``); those whose
    malignancy probability is in the band ``[low, high]`` are referred instead. Candidate edges are
    the distinct malignancy probabilities (at most :data:`MAX_BAND_EDGES` quantiles) and all bands
    are scored at once with cumulative sums; a benign decision above a band is referred too, so
    every Type II error above the band is caught. The target counts as met when the accepted Type II
    errors ≤ ``target_cer`` × accepted malignant cases (so accepting no malignant case meets it
    with zero misses). Among qualifying bands: highest coverage, then lowest accepted CER, then the
    narrowest band. If none qualifies, the lowest-CER band is returned with ``met_target=False``.
    """
    target_cer = check_target(target_cer)
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
    decisions = _base_decision(probs, matrix)[order]
    alarmed = critical[decisions]  # a critical decision: kept even above the band

    def cumulative(mask: np.ndarray) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(mask)])

    is_miss, is_sick = error_tiers(labels[order], decisions, taxonomy) == 3, critical[labels][order]
    miss, sick, benign = cumulative(is_miss), cumulative(is_sick), cumulative(~alarmed)
    miss_kept, sick_kept = cumulative(is_miss & alarmed), cumulative(is_sick & alarmed)
    n = labels.size
    edges = np.concatenate([[0], np.flatnonzero(np.diff(p_sorted) > 0) + 1, [n]])  # never split equal values
    if edges.size > MAX_BAND_EDGES:
        edges = np.unique(edges[np.linspace(0, edges.size - 1, MAX_BAND_EDGES).round().astype(int)])

    # Bands referring sorted cases [a, b), a < b, and the benign decisions in [b, n); first the
    # empty band (a = b = the first case above BENIGN_CEILING: only benign decisions above it refer).
    ceiling = int(np.searchsorted(p_sorted, BENIGN_CEILING, side="right"))
    a, b = np.meshgrid(edges, edges, indexing="ij")
    keep = a < b
    a, b = np.concatenate([[ceiling], a[keep]]), np.concatenate([[ceiling], b[keep]])
    accepted = n - (b - a) - (benign[-1] - benign[b])
    misses = miss[a] + (miss_kept[-1] - miss_kept[b])
    malignant = sick[a] + (sick_kept[-1] - sick_kept[b])
    with np.errstate(invalid="ignore", divide="ignore"):
        cer = np.where(malignant > 0, misses / malignant, 0.0)
    width = np.where(b > a, p_sorted[np.maximum(b - 1, 0)] - p_sorted[np.minimum(a, n - 1)], 0.0)
    ok = (accepted > 0) & (misses <= target_cer * malignant + 1e-9)
    if ok.any():
        candidates = np.flatnonzero(ok)
        best = candidates[np.lexsort((width[candidates], cer[candidates], -accepted[candidates]))[0]]
    else:  # every non-empty accepted set here has malignant cases, so its CER is defined
        candidates = np.flatnonzero(accepted > 0) if (accepted > 0).any() else np.arange(accepted.size)
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
    critical = np.asarray(rule.critical)
    return decisions, uncertain(probs[:, critical].sum(axis=1), ~critical[decisions], rule.low, rule.high)


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
