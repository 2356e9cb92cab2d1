"""What a guaranteed rule (:mod:`rcl.posthoc.guarantee`) costs, and whether its guarantee holds on data.

* :func:`guarantee_report`: the price on a split the rule was not calibrated on: CER among
  answered malignant cases, F1-macro, false alarms among benign cases, referral rate, with
  intervals.
* :func:`guarantee_for_run`: calibrate on one split of a run folder, report on the other.
* :func:`resplit_check`: the guarantee is about new patients, not one small test split (which
  has its own sampling noise). Given a pool of cases with stored probabilities, draw many random
  calibration subsets, fit the rule on each, and judge it by its CER on the whole pool (the
  population the calibration cases were drawn from, without replacement: the binomial bound is
  conservative for that) and, as the naive check, on the held-out rest.
"""

from __future__ import annotations

import numpy as np

from rcl.metrics import as_labels
from rcl.posthoc.guarantee import GuaranteedRule, apply_guarantee, exact_interval, fit_guarantee
from rcl.taxonomy import Taxonomy
from rcl.uncertainty import bootstrap_ci


def guarantee_report(rule: GuaranteedRule, probs, labels, taxonomy: Taxonomy, n_resamples: int = 1000, seed: int = 0) -> dict:
    """What the rule costs on a split: CER = answered malignant cases called benign ("k of n"), the
    false-alarm rate among all benign cases and the referral rate among all cases (95% exact
    binomial intervals: a bootstrap interval collapses to a point at zero misses), and F1-macro of
    the answered cases (95% bootstrap interval)."""
    if taxonomy.classes != rule.classes or taxonomy.is_critical != rule.critical:
        raise ValueError("the guaranteed rule was calibrated for other classes or another malignant set")
    decisions, referred = apply_guarantee(rule, probs)
    labels = as_labels(labels, taxonomy)
    if labels.size != decisions.size:
        raise ValueError(f"labels has {labels.size} entries but probs has {decisions.size} rows")
    critical = np.asarray(rule.critical)
    sick, called = critical[labels], critical[decisions]
    answered = ~referred
    misses = int((sick & ~called & answered).sum())
    n_answered_malignant = int((sick & answered).sum())
    false_alarms, n_benign = int((~sick & called & answered).sum()), int((~sick).sum())
    ci = (bootstrap_ci(labels[answered], decisions[answered], taxonomy, n_resamples, seed=seed)
          if answered.any() else None)

    f1 = ({"value": None, "low": None, "high": None} if ci is None
          else {k: ci["f1_macro"][k] for k in ("value", "low", "high")})

    def rate(count: int, n: int) -> dict:
        low, high = exact_interval(count, n)
        return {"value": count / n if n else None, "low": low, "high": high, "count": count, "n": n}

    return {
        "n": int(labels.size),
        "n_malignant": int(sick.sum()),
        "misses": misses,
        "n_answered_malignant": n_answered_malignant,
        "cer": rate(misses, n_answered_malignant),
        "f1_macro": f1,
        "false_alarm_rate": rate(false_alarms, n_benign),
        "referral_rate": rate(int(referred.sum()), int(labels.size)),
        "malignant_referred": int((sick & referred).sum()),
    }


SPLITS = ("val", "test")


def guarantee_for_run(run, target: float, mode: str = "high-probability", delta: float | None = 0.1,
                  refer_above: float | None = None, calibration: str = "val") -> tuple[GuaranteedRule, dict]:
    """Calibrate on one split of a finished run (:class:`rcl.runs.Run`) and price it on the other.

    Returns the rule and :func:`guarantee_report` on the reporting split (``"split"`` key added); the
    split that calibrates never reports.
    """
    if calibration not in SPLITS:
        raise ValueError(f"calibration must be one of {', '.join(SPLITS)}, got {calibration!r}")
    report_split = SPLITS[1 - SPLITS.index(calibration)]
    taxonomy = run.taxonomy
    cal = run.predictions(calibration)
    rule = fit_guarantee(cal["probs"], cal["labels"], taxonomy.is_critical, target, mode, delta, refer_above,
                     classes=taxonomy.classes, calibration_split=calibration)
    held_out = run.predictions(report_split)
    return rule, {"split": report_split, **guarantee_report(rule, held_out["probs"], held_out["labels"], taxonomy)}


def guarantee_pool(run) -> tuple[np.ndarray, np.ndarray]:
    """A finished run's non-training cases: validation then test softmax probabilities and labels."""
    val, test = run.predictions("val"), run.predictions("test")
    return np.concatenate([val["probs"], test["probs"]]), np.concatenate([val["labels"], test["labels"]])


def answered_cer(rule: GuaranteedRule, probs, labels) -> float | None:
    """Share of the answered (not referred) malignant cases the rule calls benign (None: none answered)."""
    decisions, referred = apply_guarantee(rule, probs)
    critical = np.asarray(rule.critical)
    sick = critical[np.asarray(labels)] & ~referred
    return float((sick & ~critical[decisions]).sum() / sick.sum()) if sick.any() else None


RESPLIT_KEYS = ("pool_cer", "rest_cer", "f1_macro", "false_alarm_rate", "referral_rate", "threshold")


def resplit_check(probs, labels, taxonomy: Taxonomy, target: float, mode: str = "high-probability",
                  delta: float | None = 0.1, refer_above: float | None = None, n_calibration: int = 1000,
                  resplits: int = 500, seed: int = 0) -> dict:
    """Fit the rule on ``resplits`` random calibration subsets of the pool, measure each.

    Returns ``splits`` (fitted), ``refused`` (too few malignant cases in the subset) and, one value
    per fitted split, the arrays of :data:`RESPLIT_KEYS`: CER on the whole pool and on the rest,
    and the price on the rest (F1-macro, false alarms, referral rate); ``threshold`` is the band's
    low edge for a three-way rule.
    """
    labels = as_labels(labels, taxonomy)
    probs = np.asarray(probs, dtype=np.float64)
    if not 0 < n_calibration < labels.size:
        raise ValueError(f"n_calibration must be between 1 and {labels.size - 1} (the pool size - 1), got {n_calibration}")
    rng = np.random.default_rng(seed)
    rows, refused = [], 0
    for _ in range(resplits):
        order = rng.permutation(labels.size)
        cal, rest = order[:n_calibration], order[n_calibration:]
        try:
            rule = fit_guarantee(probs[cal], labels[cal], taxonomy.is_critical, target, mode, delta, refer_above,
                                 classes=taxonomy.classes)
        except ValueError:
            refused += 1
            continue
        report = guarantee_report(rule, probs[rest], labels[rest], taxonomy, n_resamples=100)
        rows.append((answered_cer(rule, probs, labels), report["cer"]["value"], report["f1_macro"]["value"],
                     report["false_alarm_rate"]["value"], report["referral_rate"]["value"],
                     rule.threshold if rule.refer_low is None else rule.refer_low))
    values = np.array([[np.nan if v is None else v for v in row] for row in rows],
                      dtype=np.float64).reshape(-1, len(RESPLIT_KEYS))
    return {"splits": len(rows), "refused": refused, **dict(zip(RESPLIT_KEYS, values.T))}
