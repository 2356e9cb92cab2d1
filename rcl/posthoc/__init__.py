"""After training: everything fitted or measured on a run folder's stored arrays (numpy only).

``analyse(run_dir)`` recomputes the post-hoc part of ``metrics.json`` for any finished run:
argmax figures per split, bootstrap CIs, temperature calibration, the default decision, the
referral rule, (when ``features.npz`` is stored) the unfamiliar-image detector, the test
figures with abstention (the run's answers: its default decision, referral rule and detector),
and, when the data has several annotators' votes, the test split's expected CER under them.
"""

from __future__ import annotations

from pathlib import Path

from rcl.answers import abstention_report, run_answers
from rcl.metrics import argmax_metrics
from rcl.posthoc.defaults import REFERRAL_TARGET_CER, decision_defaults
from rcl.posthoc.detector import fit_detector
from rcl.posthoc.stored import FEATURES_FILE, PREDICTIONS_FILE, load_stored, save_features, save_predictions
from rcl.severity import cost_matrix
from rcl.uncertainty import bootstrap_ci, expected_cer_ci


def analyse(run_dir: str | Path) -> dict:
    """The post-hoc entries of ``metrics.json`` (``val``, ``test``, ``calibration``, ``decision``,
    ``referral``, ``ood``, ``abstention`` and, with votes, ``annotators``), computed from the run
    folder alone. Writes ``ood.npz``."""
    stored = load_stored(run_dir)
    taxonomy, matrix = stored.taxonomy, stored.matrix
    result = {split: argmax_metrics(arrays["logits"], arrays["labels"], taxonomy, cost_matrix(matrix))
              for split, arrays in stored.splits.items()}
    test = stored.splits["test"]
    result["test"]["ci"] = bootstrap_ci(test["labels"], test["logits"].argmax(axis=1), taxonomy,
                                        seed=stored.train.get("seed", 0))
    result.update(decision_defaults(stored.train["loss"], taxonomy, matrix, stored.splits["val"], test))
    unfamiliar = None
    if stored.features is not None:
        result["ood"], unfamiliar = fit_detector(stored.path, stored.features)
    answers = run_answers(result, matrix, taxonomy, test["logits"], unfamiliar)
    result["abstention"] = abstention_report(test["labels"], answers.codes, taxonomy, answers.decision,
                                             seed=stored.train.get("seed", 0))
    if "votes" in test:  # several annotators: the test CER under their votes, beside the majority's
        result["annotators"] = {name: expected_cer_ci(test["votes"], predicted, taxonomy, seed=stored.train.get("seed", 0))
                                for name, predicted in (("argmax", test["logits"].argmax(axis=1)),
                                                        ("default_decision", answers.decisions))}
    return result


__all__ = ["FEATURES_FILE", "PREDICTIONS_FILE", "REFERRAL_TARGET_CER", "analyse", "save_features",
           "save_predictions"]
