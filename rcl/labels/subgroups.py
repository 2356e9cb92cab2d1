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

The finder's suspects by the same columns (:func:`suspect_rates`): the share of labels flagged per
group, with its interval and the gap against the rest. On HAM10000 ``dx_type`` says how a label was
confirmed (histopathology, follow-up, consensus, confocal), a check of the finder on real data:
labels confirmed less firmly should be suspected more often.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from rcl.metrics import as_labels, evaluate
from rcl.taxonomy import Taxonomy
from rcl.uncertainty import bootstrap_ci, confusion_metrics, percentile_interval, resampled_confusions

MIN_CASES = 30
MIN_MALIGNANT = 10
METRICS = ("cer", "f1_macro", "sensitivity")
MISSING = "(missing)"  # the metadata has the sample but no value in the column
NOT_DESCRIBED = "(not in the metadata)"  # no metadata row names the sample


def group_names(groups, n: int) -> pd.Series:
    """One group name per case as text, a missing value named :data:`MISSING`; refused unless ``n`` long."""
    values = pd.Series(groups, dtype=object)
    if len(values) != n:
        raise ValueError(f"groups has {len(values)} values but there are {n} cases")
    return values.where(pd.notna(values), MISSING).astype(str)


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
    groups = group_names(groups, y_true.size)
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


def dataset_metadata(data, **load_options) -> pd.DataFrame:
    """The metadata columns of dataset ``data`` per sample id (no columns for a layout without
    any); ``load_options`` as :func:`rcl.data.load_dataset` takes them (preset, taxonomy, ...)."""
    from rcl.data import load_dataset
    from rcl.data.metadata import sample_metadata

    return sample_metadata(load_dataset(data, **load_options))


def run_metadata(run) -> pd.DataFrame:
    """The metadata columns of a run's dataset, per sample id."""
    return dataset_metadata(run.train["data"], taxonomy=run.taxonomy, label_columns=run.train.get("label_columns"))


def metadata_columns(run) -> list[str]:
    """The columns ``run_subgroups(run, by=...)`` accepts (HAM10000: dx_type, age, sex, localization)."""
    return [str(c) for c in run_metadata(run).columns]


def metadata_groups(metadata: pd.DataFrame, by: str, data_name: str) -> tuple[str, pd.Series]:
    """Column ``by`` of ``metadata`` (any case) per sample id, numbers banded by quartile, and its
    name as the data spells it. A column the data does not have is a ``ValueError`` listing those
    it has."""
    from rcl.data.metadata import band

    lower = {str(c).lower(): c for c in metadata.columns}
    if by.lower() not in lower:
        have = ", ".join(map(str, metadata.columns)) if len(metadata.columns) else "none"
        raise ValueError(f"--by {by!r}: the dataset {data_name!r} has no such metadata column (columns it has: {have})")
    column = lower[by.lower()]
    return str(column), band(metadata[column])


def groups_of(ids, groups: pd.Series) -> np.ndarray:
    """The group of each sample id in ``ids``; an id no metadata row names is :data:`NOT_DESCRIBED`."""
    ids = np.asarray(ids).astype(str)
    values = groups.reindex(ids).to_numpy(dtype=object)
    values[~np.isin(ids, groups.index.astype(str))] = NOT_DESCRIBED
    return values


def run_subgroups(run, by: str, split: str = "test", n_resamples: int = 1000, seed: int = 0) -> dict:
    """Subgroups of a finished run's stored ``split`` predictions (argmax) by metadata column ``by``.

    The metadata is re-read from the run's dataset and matched by sample id.
    """
    column, values = metadata_groups(run_metadata(run), by, run.train["data"])
    stored = run.predictions(split)
    ids = stored["ids"].astype(str)
    predictions = stored["probs"].argmax(axis=1)
    return {"run": run.id, "split": split, "by": column, "decision_rule": "argmax of the stored probabilities",
            "n": int(ids.size), "min_cases": MIN_CASES, "min_malignant": MIN_MALIGNANT, "confidence": 0.95,
            "groups": subgroup_table(stored["labels"], predictions, groups_of(ids, values), run.taxonomy,
                                     n_resamples, seed=seed)}


def suspect_rate_table(flagged, groups, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> list[dict]:
    """The share of labels the finder flagged, per group (largest first): ``group``, ``n``,
    ``flagged`` and ``rate`` ``{"value", "low", "high", "diff", "diff_low", "diff_high", "gap"}``,
    the difference and its interval against all other labels checked; ``too_small`` below
    :data:`MIN_CASES` labels.

    fairlearn's MetricFrame groups (``selection_rate`` of the flags). The intervals are Jeffreys
    intervals, drawn: k flagged of n gives Beta(k + ½, n − k + ½) draws for the group and for the
    rest (disjoint, so independent), and the percentiles of their difference bound the gap. A
    bootstrap of the flags would agree for shares away from 0 and 1 but collapse to a point at
    0 or n flagged and then declare a gap from the rest's spread alone. Each group's draws are
    seeded by ``seed`` and its name, so the same labels get the same interval in every table."""
    from fairlearn.metrics import MetricFrame, selection_rate

    flagged = np.asarray(flagged, dtype=bool)
    groups = group_names(groups, flagged.size)
    points = MetricFrame(metrics={"n": lambda t, p: len(t), "flagged": lambda t, p: int(np.sum(p)),
                                  "rate": lambda t, p: selection_rate(t, p, pos_label=True)},
                         y_true=flagged, y_pred=flagged,
                         sensitive_features=pd.Series(groups.to_numpy(), name="group")).by_group
    rows = []
    for name, point in points.sort_values("n", ascending=False).iterrows():
        inside = (groups == name).to_numpy()
        row = {"group": str(name), "n": int(point["n"]), "flagged": int(point["flagged"])}
        if row["n"] < MIN_CASES:
            row["too_small"] = f"{row['n']} labels < {MIN_CASES}: not estimated"
            rows.append(row)
            continue
        rng = np.random.default_rng([seed, zlib.crc32(row["group"].encode())])
        value = float(point["rate"])
        own = rng.beta(row["flagged"] + 0.5, row["n"] - row["flagged"] + 0.5, n_resamples)
        low, high, _ = percentile_interval(own, confidence)
        cell = {"value": value, "low": low, "high": high, "diff": None, "diff_low": None, "diff_high": None, "gap": False}
        if (~inside).any():
            rest_n, rest_k = int((~inside).sum()), int(flagged[~inside].sum())
            rest_rate = rest_k / rest_n
            rest = rng.beta(rest_k + 0.5, rest_n - rest_k + 0.5, n_resamples)
            d_low, d_high, _ = percentile_interval(own - rest, confidence)
            cell.update(diff=value - rest_rate, diff_low=d_low, diff_high=d_high, gap=d_low > 0 or d_high < 0)
        row["rate"] = cell
        rows.append(row)
    return rows


def suspect_rates(ids, flagged_ids, groups: pd.Series, by: str, given=None, seed: int = 0) -> dict:
    """:func:`suspect_rate_table` of the labels ``ids`` checked (``flagged_ids`` among them) by
    ``groups`` (a group per sample id, e.g. from :func:`metadata_groups`).

    With ``given`` (the given class name per label), ``"within_class"`` repeats the table inside
    each given class that has two groups large enough to compare: a column such as HAM10000's
    ``dx_type`` is bound up with the class (follow-up confirms only nevi), and the finder flags
    some classes far more than others, so only the within-class rows compare like with like.
    """
    ids = np.asarray(ids).astype(str)
    flagged = np.isin(ids, np.asarray(list(flagged_ids)).astype(str))
    values = groups_of(ids, groups)
    result = {"by": by, "n": int(ids.size), "flagged": int(flagged.sum()), "min_cases": MIN_CASES, "confidence": 0.95,
              "groups": suspect_rate_table(flagged, values, seed=seed)}
    if given is not None:
        given = np.asarray(given).astype(str)
        result["within_class"] = {}
        for name in pd.unique(given):
            inside = given == name
            rows = suspect_rate_table(flagged[inside], values[inside], seed=seed)
            if sum("rate" in row for row in rows) >= 2:
                result["within_class"][str(name)] = rows
    return result


def ranking_rates(checked, ranking: dict, groups: pd.Series, by: str) -> dict:
    """:func:`suspect_rates` of a finder's ranking: ``checked`` (an :class:`~rcl.labels.issues.OutOfFold`)
    holds every label looked at with its given class, ``ranking`` (``rank_label_issues``) the flagged ones."""
    return suspect_rates(checked.ids, [r["id"] for r in ranking["rows"]], groups, by,
                         given=np.asarray(checked.taxonomy.classes)[checked.labels])


def run_suspect_rates(run, by: str) -> dict:
    """:func:`ranking_rates` of a finished run's suspects (its stored validation and test labels,
    the ranking of :func:`rcl.labels.suspects.run_suspects`) by metadata column ``by``."""
    from rcl.labels.issues import from_run, rank_label_issues

    column, groups = metadata_groups(run_metadata(run), by, run.train["data"])
    checked = from_run(run)
    ranking = rank_label_issues(checked)
    return {"run": run.id, "source": ranking["source"], "method": ranking["method"],
            **ranking_rates(checked, ranking, groups, column)}


def suspect_rate_display(result: dict) -> list[dict]:
    """:func:`suspect_rates` as a table reads it: the flagged share with its 95% interval and the gap
    against the rest in words; all labels first (``class`` "all"), then within each given class."""
    from rcl.text import ci_text, pct, points

    rows = []
    for given, groups in [("all", result["groups"]), *result.get("within_class", {}).items()]:
        for group in groups:
            cell = group.get("rate")
            rows.append({"class": given, "group": group["group"], "labels": group["n"], "flagged": group["flagged"],
                         "flagged share": "not estimated" if cell is None else ci_text(cell["value"], cell["low"], cell["high"], pct),
                         "gap": f"{points(cell['diff'])} vs the rest" if cell is not None and cell["gap"] else "",
                         "note": group.get("too_small", "")})
    return rows


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
