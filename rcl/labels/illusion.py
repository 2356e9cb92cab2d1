"""The illusion of accuracy: a run scored against clean test labels and against the same labels
noised the way its training labels may have been.

When the test set carries the training set's mistakes, a model that learnt those mistakes is
rewarded for repeating them, and a model that resisted them is charged for it: a missed tumour
labelled benign in the test set turns a correct malignant call into a "false alarm" and drops
out of the CER denominator. Setting the two scores side by side shows how much of a reported
figure the labels themselves can move. Both use the run's stored test predictions decided by
argmax (the rule of ``metrics.json``'s test figures), with bootstrap CIs on the same cases.
"""

from __future__ import annotations

import numpy as np

from rcl.labels.noise import eligible, flip_labels, parse_noise
from rcl.metrics import evaluate
from rcl.uncertainty import bootstrap_ci

# Both sides use argmax, the rule of metrics.json's test figures: the labels are what changes.
ILLUSION_RULE = "argmax of the stored probabilities"


def illusion_scores(labels: np.ndarray, predictions: np.ndarray, taxonomy, noise, seed: int = 0) -> dict:
    """Clean vs noisy-label scores of ``predictions`` (class indices) against ``labels``.

    ``noise`` is a rule (``"miss:0.1"``) applied to ``labels`` with ``seed``. Returns ``{"n",
    "noise": {...}, "clean": {...}, "noisy": {...}}`` where each side has ``cer``, ``f1_macro``,
    ``accuracy`` (value, low, high), ``sensitivity`` and ``n_malignant`` (the CER denominator under
    those labels).
    """
    spec = parse_noise(noise)
    if spec is None:
        raise ValueError("label noise: give a rule KIND:RATE, e.g. miss:0.1")
    labels = np.asarray(labels, dtype=np.int64)
    noisy, flipped = flip_labels(labels, taxonomy, spec, seed)

    def side(y_true: np.ndarray) -> dict:
        evaluation = evaluate(y_true, predictions, taxonomy)
        ci = bootstrap_ci(y_true, predictions, taxonomy, seed=seed)
        return {**{m: ci[m] for m in ("cer", "f1_macro", "accuracy")}, "sensitivity": evaluation.sensitivity,
                "n_malignant": int(np.asarray(taxonomy.is_critical)[y_true].sum()), "tiers": evaluation.tiers}

    return {
        "n": int(labels.size),
        "noise": {"spec": str(spec), "rule": spec.rule, "seed": int(seed), "eligible": int(eligible(labels, taxonomy, spec).sum()),
                  "flipped": int(flipped.size)},
        "clean": side(labels),
        "noisy": side(noisy),
    }


def illusion_of_accuracy(run, noise, seed: int = 0, split: str = "test") -> dict:
    """:func:`illusion_scores` of ``run``'s stored ``split`` predictions decided by argmax, with
    ``"run"``, ``"split"`` and ``"decision_rule"`` beside the scores."""
    stored = run.predictions(split)
    return {"run": run.id, "split": split, "decision_rule": ILLUSION_RULE,
            **illusion_scores(stored["labels"], stored["probs"].argmax(axis=1), run.taxonomy, noise, seed)}


def illusion_display(result: dict) -> list[dict]:
    """:func:`illusion_of_accuracy` as a table: per metric the clean-label and noisy-label figures with
    their 95% intervals and the change the noisy labels make; then the malignant cases each side counts."""
    from rcl.text import ci_text, num, pct, points, signed

    rows = []
    for key, name, formatter, change in (("cer", "CER", pct, points), ("f1_macro", "F1-macro", num, signed),
                                         ("accuracy", "accuracy", pct, points)):
        clean, noisy = result["clean"][key], result["noisy"][key]
        moved = None if clean["value"] is None or noisy["value"] is None else noisy["value"] - clean["value"]
        rows.append({"metric": name, "clean test labels": ci_text(clean["value"], clean["low"], clean["high"], formatter),
                     "noisy test labels": ci_text(noisy["value"], noisy["low"], noisy["high"], formatter),
                     "change": change(moved)})
    rows.append({"metric": "malignant cases (CER's denominator)", "clean test labels": str(result["clean"]["n_malignant"]),
                 "noisy test labels": str(result["noisy"]["n_malignant"]),
                 "change": f"{result['noisy']['n_malignant'] - result['clean']['n_malignant']:+d}"})
    return rows
