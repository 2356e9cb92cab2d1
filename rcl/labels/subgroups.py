"""Subgroups: CER, F1-macro and sensitivity per group of a metadata column, with bootstrap CIs.

fairlearn's :class:`~fairlearn.metrics.MetricFrame` does the grouping (the per-group point
values); the intervals come from the project's vectorised bootstrap (:mod:`rcl.uncertainty`),
because MetricFrame's own bootstrap recomputes every metric function per resample and has no
"group vs the rest" difference. A group is compared with all other cases: the two are disjoint,
so each is resampled on its own and the interval of the difference is read from the paired
resamples; a **gap** is flagged when that interval excludes 0.

Too small to say anything: fewer than :data:`MIN_CASES` cases (nothing is estimated), or fewer
than :data:`MIN_MALIGNANT` malignant cases (CER and sensitivity are not estimated). The row says
so instead of printing noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rcl.metrics import as_labels, evaluate
from rcl.taxonomy import Taxonomy
from rcl.uncertainty import bootstrap_ci, confusion_metrics, percentile_interval, resampled_confusions

MIN_CASES = 30
MIN_MALIGNANT = 10
METRICS = ("cer", "f1_macro", "sensitivity")
MISSING = "(missing)"


def _point_values(y_true, y_pred, groups, taxonomy: Taxonomy) -> pd.DataFrame:
    """Per group: n, malignant cases and the metrics' point values (fairlearn MetricFrame)."""
    from fairlearn.metrics import MetricFrame

    critical = np.asarray(taxonomy.is_critical)

    def metric(name):
        def compute(t, p):
            value = getattr(evaluate(np.asarray(t), np.asarray(p), taxonomy), name)
            return np.nan if value is None else value
        return compute

    frame = MetricFrame(
        metrics={"n": lambda t, p: len(t), "n_malignant": lambda t, p: int(critical[np.asarray(t)].sum()),
                 **{name: metric(name) for name in METRICS}},
        y_true=y_true, y_pred=y_pred, sensitive_features=pd.Series(groups, name="group"),
    )
    return frame.by_group


def subgroup_table(y_true, y_pred, groups, taxonomy: Taxonomy, n_resamples: int = 1000, confidence: float = 0.95,
                   seed: int = 0) -> list[dict]:
    """One row per group (largest first): ``group``, ``n``, ``n_malignant``, and per metric
    ``{"value", "low", "high", "diff", "diff_low", "diff_high", "gap"}``; ``too_small`` says why a
    metric is not estimated. ``y_pred`` is the decision being judged (say which one it is)."""
    y_true = as_labels(y_true, taxonomy, "y_true")
    y_pred = as_labels(y_pred, taxonomy, "y_pred")
    groups = pd.Series(groups, dtype=object).where(pd.notna(pd.Series(groups, dtype=object)), MISSING).astype(str)
    if len(groups) != y_true.size:
        raise ValueError(f"groups has {len(groups)} values but there are {y_true.size} cases")
    points = _point_values(y_true, y_pred, groups.to_numpy(), taxonomy).sort_values("n", ascending=False)
    rows = []
    for name, point in points.iterrows():
        inside = (groups == name).to_numpy()
        row = {"group": str(name), "n": int(point["n"]), "n_malignant": int(point["n_malignant"])}
        if row["n"] < MIN_CASES:
            row["too_small"] = f"{row['n']} cases < {MIN_CASES}: not estimated"
            rows.append(row)
            continue
        if row["n_malignant"] < MIN_MALIGNANT:
            row["too_small"] = f"{row['n_malignant']} malignant cases < {MIN_MALIGNANT}: CER and sensitivity not estimated"
        ci = bootstrap_ci(y_true[inside], y_pred[inside], taxonomy, n_resamples, confidence, seed)
        own = confusion_metrics(resampled_confusions(y_true[inside], y_pred[inside], taxonomy, n_resamples, seed), taxonomy)
        rest = (confusion_metrics(resampled_confusions(y_true[~inside], y_pred[~inside], taxonomy, n_resamples,
                                                       seed + 1), taxonomy) if (~inside).any() else None)
        rest_point = evaluate(y_true[~inside], y_pred[~inside], taxonomy) if (~inside).any() else None
        for metric in METRICS:
            if metric != "f1_macro" and row["n_malignant"] < MIN_MALIGNANT:
                row[metric] = None
                continue
            value = None if np.isnan(point[metric]) else float(point[metric])
            low, high = (ci[metric]["low"], ci[metric]["high"]) if metric in ci else percentile_interval(own[metric], confidence)[:2]
            cell = {"value": value, "low": low, "high": high, "diff": None, "diff_low": None, "diff_high": None,
                    "gap": False}
            other = None if rest_point is None else getattr(rest_point, metric)
            if value is not None and other is not None:
                d_low, d_high, _ = percentile_interval(own[metric] - rest[metric], confidence)
                cell.update(diff=value - other, diff_low=d_low, diff_high=d_high,
                            gap=d_low is not None and (d_low > 0 or d_high < 0))
            row[metric] = cell
        rows.append(row)
    return rows


def run_metadata(run) -> pd.DataFrame:
    """The metadata columns of a run's dataset, per sample id (no columns for a layout without any)."""
    from rcl.data import load_dataset
    from rcl.data.metadata import sample_metadata

    return sample_metadata(load_dataset(run.train["data"], taxonomy=run.taxonomy))


def metadata_columns(run) -> list[str]:
    """The columns ``run_subgroups(run, by=...)`` accepts (HAM10000: dx_type, age, sex, localization)."""
    return [str(c) for c in run_metadata(run).columns]


def run_subgroups(run, by: str, split: str = "test", n_resamples: int = 1000, seed: int = 0) -> dict:
    """Subgroups of a finished run's stored ``split`` predictions (argmax) by metadata column ``by``.

    The metadata is re-read from the run's dataset and matched by sample id. A ``by`` column the
    dataset does not have is a ``ValueError`` listing the columns it has.
    """
    from rcl.data.metadata import band

    train = run.train
    metadata = run_metadata(run)
    lower = {c.lower(): c for c in metadata.columns}
    if by.lower() not in lower:
        have = ", ".join(metadata.columns) if len(metadata.columns) else "none"
        raise ValueError(f"--by {by!r}: the dataset {train['data']!r} has no such metadata column "
                         f"(columns it has: {have})")
    column = lower[by.lower()]
    stored = run.predictions(split)
    ids = stored["ids"].astype(str)
    values = band(metadata[column]).reindex(ids)
    predictions = stored["probs"].argmax(axis=1)
    return {"run": run.id, "split": split, "by": column, "decision_rule": "argmax of the stored probabilities",
            "n": int(ids.size), "min_cases": MIN_CASES, "min_malignant": MIN_MALIGNANT, "confidence": 0.95,
            "groups": subgroup_table(stored["labels"], predictions, values.to_numpy(), run.taxonomy, n_resamples,
                                     seed=seed)}


def subgroup_display(result: dict) -> list[dict]:
    """:func:`run_subgroups`' groups as a table reads them: each metric with its 95% interval, the
    gaps (the interval of group − rest excludes 0) in words, "not estimated" where a group is too small
    and the reason in ``note``."""
    from rcl.text import ci_text, num, pct, points, signed

    names = {"cer": ("CER", pct, points), "f1_macro": ("F1-macro", num, signed), "sensitivity": ("sensitivity", pct, points)}
    rows = []
    for group in result["groups"]:
        row = {"group": group["group"], "cases": group["n"], "malignant": group["n_malignant"]}
        gaps = []
        for key, (name, formatter, change) in names.items():
            cell = group.get(key)
            row[name] = "not estimated" if cell is None else ci_text(cell["value"], cell["low"], cell["high"], formatter)
            if cell is not None and cell["gap"]:
                gaps.append(f"{name} {change(cell['diff'])} vs the rest")
        row["gap"] = "; ".join(gaps)
        row["note"] = group.get("too_small", "")
        rows.append(row)
    return rows
