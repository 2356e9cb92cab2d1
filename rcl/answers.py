"""What the model answers for a case: exactly one of a class decision, "refer: uncertain" or
"refer: unfamiliar image"; and how a run is scored when it may refer.

- **refer: unfamiliar image**: the image fails the image gate (blank, noise) or its features lie
  further from the training data than the run's detector threshold (``rcl.ood``). No probability
  is trusted on such an input.
- **refer: uncertain**: the referral rule (``rcl.referral.uncertain``): P(malignant superclass)
  inside the band fitted on validation, or a benign decision while P(malignant) is above it.
- otherwise the class the run's decision rule chose.

Answers are coded as integers: a class index, or :data:`REFER_UNCERTAIN` / :data:`REFER_UNFAMILIAR`
(negative), so a whole split is one array. :func:`abstention_report` scores such an array:
coverage, the figures on answered cases, and the CER if referred cases were sent home.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rcl.calibration import apply_temperature
from rcl.decision import decide
from rcl.decision_scale import scaled_matrix
from rcl.metrics import as_labels
from rcl.referral import BENIGN_CEILING, ReferralRule, uncertain
from rcl.severity import as_matrix
from rcl.taxonomy import Taxonomy
from rcl.uncertainty import _check_settings, _resampled_counts, _value, confusion_metrics, percentile_interval

DECIDED = "decision"
REFER_UNCERTAIN, REFER_UNFAMILIAR = -1, -2
REFERRALS = {REFER_UNCERTAIN: "refer: uncertain", REFER_UNFAMILIAR: "refer: unfamiliar image"}


@dataclass(frozen=True)
class Answer:
    """One case's answer: ``kind`` is ``"decision"`` or a referral; ``label`` the class when decided."""

    kind: str
    label: str | None
    reason: str

    def __post_init__(self) -> None:
        if self.kind not in (DECIDED, *REFERRALS.values()):
            raise ValueError(f"answer kind must be {DECIDED!r} or one of {sorted(REFERRALS.values())}, "
                             f"got {self.kind!r}")
        if (self.kind == DECIDED) != (self.label is not None):
            raise ValueError("an answer has a class label exactly when it is a decision")

    @property
    def referred(self) -> bool:
        return self.kind != DECIDED

    @property
    def text(self) -> str:
        """What to show as the answer: the class, or the referral (never a class)."""
        return self.kind if self.referred else str(self.label)

    def to_dict(self) -> dict:
        return asdict(self) | {"referred": self.referred, "text": self.text}


def answer_codes(decisions, uncertain, unfamiliar=None) -> np.ndarray:
    """Per case: the decided class index, else :data:`REFER_UNCERTAIN`, and :data:`REFER_UNFAMILIAR`
    over both where ``unfamiliar`` (an unfamiliar image's probabilities are not read at all)."""
    codes = np.asarray(decisions, dtype=np.int64).copy()
    uncertain = np.asarray(uncertain, dtype=bool)
    if uncertain.shape != codes.shape:
        raise ValueError(f"uncertain has shape {uncertain.shape}, decisions {codes.shape}")
    codes[uncertain] = REFER_UNCERTAIN
    if unfamiliar is not None:
        unfamiliar = np.asarray(unfamiliar, dtype=bool)
        if unfamiliar.shape != codes.shape:
            raise ValueError(f"unfamiliar has shape {unfamiliar.shape}, decisions {codes.shape}")
        codes[unfamiliar] = REFER_UNFAMILIAR
    return codes


def answer_of(code: int, classes, reason: str) -> Answer:
    """The :class:`Answer` of one code."""
    code = int(code)
    if code in REFERRALS:
        return Answer(REFERRALS[code], None, reason)
    if not 0 <= code < len(classes):
        raise ValueError(f"answer code {code} is neither a class index (0..{len(classes) - 1}) nor a referral")
    return Answer(DECIDED, str(classes[code]), reason)


# Which rule produced a figure, in the words every table, page and command uses.
ARGMAX = "argmax (the most probable class; no costs)"
USER_MATRIX = "Bayes minimum-risk under a user matrix"
# A run that stored no referral rule (trained before rules were fitted): a fixed band.
FALLBACK_BAND = (0.10, 0.90)


def default_decision_name(scale: float) -> str:
    """The run's default decision in words, from its tuned decision scale (0 = argmax)."""
    if scale == 0:
        return ("the run's default decision: the most probable class (the costs are already in the model; "
                "no extra re-weighting)")
    if scale == 1:
        return "the run's default decision: Bayes minimum-risk under its training matrix"
    return (f"the run's default decision: Bayes minimum-risk under its training matrix with the costs scaled by "
            f"{scale:.3g} (tuned on validation, as the costs are already partly in the model)")


def default_matrix(extras: dict, matrix) -> tuple[np.ndarray, str]:
    """The run's default decision matrix (its matrix scaled by the stored, validation-tuned factor)
    and its name (:func:`default_decision_name`)."""
    scale = float(extras.get("decision", {}).get("scale", 1.0))
    return scaled_matrix(as_matrix(matrix), scale), default_decision_name(scale)


def stored_band(extras: dict, taxonomy: Taxonomy) -> tuple[float | None, float | None, str]:
    """The referral band the run fitted on validation (``low``, ``high``, in words), or the fixed
    :data:`FALLBACK_BAND` when it stored none for these classes."""
    stored = extras.get("referral", {})
    try:
        rule = ReferralRule.from_dict(stored.get("rule", stored))
    except (ValueError, AttributeError):
        rule = None
    if rule is not None and rule.classes == taxonomy.classes and rule.critical == taxonomy.is_critical:
        band = "no band needed (the target was met without referring)" if rule.low is None else \
            f"P(malignant) in [{rule.low:.2f}, {rule.high:.2f}]"
        caveat = "" if rule.met_target else "; the target was NOT met on validation"
        return rule.low, rule.high, (f"the run's referral rule, fitted on validation for a CER of at most "
                                     f"{rule.target_cer:.0%} on answered cases: {band}{caveat}")
    low, high = FALLBACK_BAND
    return low, high, f"a fixed band (the run stored no referral rule): P(malignant) in [{low:.2f}, {high:.2f}]"


def uncertain_reason(p_malignant: float, low: float | None, high: float | None) -> str:
    """Why a case with this P(malignant) was referred as uncertain, in one clause."""
    if low is not None and low <= p_malignant <= high:
        return f"P(malignant) = {p_malignant:.2f} lies in the referral band [{low:.2f}, {high:.2f}]"
    ceiling = BENIGN_CEILING if high is None else high
    return (f"P(malignant) = {p_malignant:.2f} is above {ceiling:.2f}, yet the decision rule would answer a "
            "benign class")


@dataclass
class RunAnswers:
    """A run's answers to a batch of logits: calibrated ``probs``, the ``decisions`` of the rule
    named ``decision`` (under ``decision_matrix``), and the answer ``codes`` under the referral
    rule named ``referral``."""

    probs: np.ndarray
    p_malignant: np.ndarray
    decisions: np.ndarray
    codes: np.ndarray
    decision: str
    decision_matrix: np.ndarray
    referral: str
    low: float | None
    high: float | None


def run_answers(extras: dict, matrix, taxonomy: Taxonomy, logits, unfamiliar=None,
                user_matrix=None) -> RunAnswers:
    """How a run answers: temperature-calibrated probabilities, its default decision (or the Bayes
    decision under ``user_matrix``), its referral rule, and ``unfamiliar`` inputs referred."""
    logits = np.asarray(logits, dtype=np.float64)
    probs = apply_temperature(logits, float(extras.get("calibration", {}).get("temperature", 1.0)))
    if user_matrix is None:
        decision_matrix, decision = default_matrix(extras, matrix)
    else:
        decision_matrix, decision = as_matrix(user_matrix, taxonomy), USER_MATRIX
    decisions = decide(probs, decision_matrix)
    critical = np.asarray(taxonomy.is_critical)
    p_malignant = probs[:, critical].sum(axis=1)
    low, high, referral = stored_band(extras, taxonomy)
    codes = answer_codes(decisions, uncertain(p_malignant, ~critical[decisions], low, high), unfamiliar)
    return RunAnswers(probs, p_malignant, decisions, codes, decision, decision_matrix, referral, low, high)


def _cells(labels: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Case → cell of a K × (K + 1) table: true class × (answered class, or column K = referred)."""
    return labels * (k + 1) + np.where(codes >= 0, codes, k)


def _figures(table: np.ndarray, taxonomy: Taxonomy) -> dict[str, np.ndarray]:
    """Coverage, answered-case CER/F1/accuracy and the sent-home CER of stacked K × (K + 1) tables."""
    k = taxonomy.num_classes
    answered = table[..., :k]
    n = table.sum(axis=(-2, -1))
    figures = {f"{name}_answered": value for name, value in confusion_metrics(answered, taxonomy).items()}
    benign = int(np.flatnonzero(~np.asarray(taxonomy.is_critical))[0])
    home = answered.copy()
    home[..., :, benign] += table[..., :, k]  # a referred case sent home = answered with a benign class
    figures["cer_if_sent_home"] = confusion_metrics(home, taxonomy)["cer"]
    figures["coverage"] = answered.sum(axis=(-2, -1)) / n
    return figures


def abstention_report(labels, codes, taxonomy: Taxonomy, decision: str, n_resamples: int = 1000,
                      confidence: float = 0.95, seed: int | None = 0) -> dict:
    """Coverage (share answered), CER/F1-macro/accuracy on the answered cases, and the CER if the
    referred cases were sent home (answered benign), each ``{"value", "low", "high"}`` with a
    percentile bootstrap interval over cases; plus the counts and ``decision`` (which rule
    produced the answers, in words). A figure undefined on the data (no answered malignant case)
    is None."""
    n_resamples, confidence = _check_settings(n_resamples, confidence)
    labels = as_labels(labels, taxonomy)
    codes = np.asarray(codes, dtype=np.int64)
    k = taxonomy.num_classes
    if codes.shape != labels.shape:
        raise ValueError(f"codes has {codes.size} entries but labels has {labels.size}")
    if ((codes >= k) | ((codes < 0) & ~np.isin(codes, list(REFERRALS)))).any():
        raise ValueError(f"codes must be class indices 0..{k - 1} or referral codes {sorted(REFERRALS)}")
    if labels.size == 0:
        raise ValueError("no cases to score")
    cells = _cells(labels, codes, k)
    observed = _figures(np.bincount(cells, minlength=k * (k + 1)).reshape(k, k + 1), taxonomy)
    resampled = _figures(_resampled_counts(cells, k * (k + 1), n_resamples, seed).reshape(-1, k, k + 1), taxonomy)
    report: dict = {
        "decision": decision, "n": int(labels.size), "n_answered": int((codes >= 0).sum()),
        "n_refer_uncertain": int((codes == REFER_UNCERTAIN).sum()),
        "n_refer_unfamiliar": int((codes == REFER_UNFAMILIAR).sum()),
        "malignant_referred": int(((codes < 0) & np.asarray(taxonomy.is_critical)[labels]).sum()),
        "confidence": confidence, "n_resamples": n_resamples,
    }
    for name, value in observed.items():
        value = _value(value)
        low, high, _ = percentile_interval(resampled[name], confidence) if value is not None else (None, None, 0)
        report[name] = {"value": value, "low": low, "high": high}
    return report


__all__ = ["ARGMAX", "DECIDED", "USER_MATRIX", "RunAnswers", "default_decision_name", "default_matrix",
           "run_answers", "stored_band", "uncertain_reason", "REFERRALS", "REFER_UNCERTAIN", "REFER_UNFAMILIAR", "Answer", "abstention_report",
           "answer_codes", "answer_of"]
