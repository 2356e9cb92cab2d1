"""Calibration, the default decision and the referral rule, fitted on validation only.

- temperature scaling of the logits (decisions use calibrated probabilities);
- the default Bayes decision: the raw matrix for a plain loss; for a loss that carries the costs
  (the loss registry's ``carries_costs``) applying them again at decision time counts them twice,
  so the default is the matrix scaled (``1 + s·(M − 1)``) by the factor tuned on validation for
  the best F1 at a CER no worse than argmax's;
- a referral band on P(malignant) for a target CER on the accepted cases.
Each part that the validation split cannot support (e.g. no malignant case) is left out with the
reason, never guessed. Test figures are reported, never fitted on.
"""

from __future__ import annotations

import numpy as np

from rcl.calibration import apply_temperature, expected_calibration_error, fit_temperature, softmax
from rcl.decision import redecide
from rcl.decision_scale import scaled_matrix, tune_decision_scale
from rcl.loss_registry import carries_costs
from rcl.metrics import evaluate
from rcl.referral import fit_referral, referral_report
from rcl.taxonomy import Taxonomy

REFERRAL_TARGET_CER = 0.05


def calibration(val: dict, test: dict) -> tuple[float, dict]:
    """The temperature fitted on validation, and ECE before/after on both splits."""
    temperature = fit_temperature(val["logits"], val["labels"])
    report = {"temperature": temperature}
    for name, split in (("val", val), ("test", test)):
        report[f"{name}_ece"] = {
            "raw": expected_calibration_error(softmax(split["logits"]), split["labels"]),
            "calibrated": expected_calibration_error(apply_temperature(split["logits"], temperature), split["labels"]),
        }
    return temperature, report


def default_decision(loss: str, taxonomy: Taxonomy, matrix: np.ndarray, val_probs: np.ndarray,
                     val_labels: np.ndarray) -> dict:
    """The run's default decision rule (scale and wording), from calibrated validation probabilities."""
    cost_sensitive = carries_costs(loss)
    decision = {"cost_sensitive_training": cost_sensitive, "scale": 1.0, "rule": "bayes (raw matrix)"}
    argmax_cer = evaluate(val_labels, val_probs.argmax(axis=1), taxonomy).cer
    if cost_sensitive and argmax_cer is not None:
        tuned = tune_decision_scale(val_probs, val_labels, taxonomy, matrix, target_cer=argmax_cer)
        decision.update(scale=tuned["scale"], rule="bayes (scale tuned on validation)", target_val_cer=argmax_cer,
                        note="trained with a cost-sensitive loss: the raw matrix at decision time would apply the "
                             "costs twice, so the decision uses the scale tuned on validation")
    return decision


def decision_defaults(loss: str, taxonomy: Taxonomy, matrix: np.ndarray, val: dict, test: dict) -> dict:
    """``calibration``, ``decision`` and ``referral`` entries of ``metrics.json``."""
    temperature, calibration_report = calibration(val, test)
    val_probs, test_probs = apply_temperature(val["logits"], temperature), apply_temperature(test["logits"], temperature)
    decision = default_decision(loss, taxonomy, matrix, val_probs, val["labels"])
    decision_matrix = scaled_matrix(matrix, decision["scale"])
    decision["test"] = redecide(test_probs, test["labels"], taxonomy, decision_matrix).to_dict()
    extras = {"calibration": calibration_report, "decision": decision}
    try:
        rule = fit_referral(val_probs, val["labels"], taxonomy, REFERRAL_TARGET_CER, decision_matrix)
        extras["referral"] = {"rule": rule.to_dict(),
                              "test": referral_report(rule, test_probs, test["labels"], taxonomy)}
    except ValueError as exc:
        extras["referral"] = {"unavailable": str(exc)}
    return extras
