"""Several annotators: each sample's votes, its majority label, soft targets and agreement.

A CSV may carry several readers' labels per image, either in several columns
(``--label-columns reader1,reader2,reader3``, or columns found by name: ``label_1``, ``label_2``,
``annotator_a``, ``reader_2``, ``rater3``...) or in one label column as ``mel|nv|mel``. A missing
vote (an empty cell, ``NA``, ``-``...) is no vote; a sample needs at least one.

The table keeps the vote *counts* (``K`` per sample) beside the hard ``label``: the majority
vote. **A tie goes to the more severe superclass** (then to the lower class index): a safety tool
must not let a tie between "melanoma" and "nevus" hide a possible malignancy behind a benign
label. Training uses the vote shares ``q = counts / Σ counts`` as soft targets (``rcl.losses``);
metrics stay on the majority label, and ``rcl.metrics.expected_cer`` adds the CER under the votes.

Agreement is Fleiss' kappa in the form that allows a different number of readers per sample
(missing votes): ``P_i = Σ_k n_ik (n_ik − 1) / (n_i (n_i − 1))`` over samples with ``n_i ≥ 2``
votes, ``P̄`` their mean, ``p_k = Σ_i n_ik / Σ_i n_i`` over all votes, ``P_e = Σ_k p_k²`` and
``κ = (P̄ − P_e) / (1 − P_e)``. With the same number of readers everywhere this is Fleiss (1971)
exactly. Written out here (a dozen lines) because statsmodels' version assumes no missing vote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from rcl.taxonomy import Taxonomy

VOTE_SEPARATOR = "|"
MISSING_VOTES = frozenset({"", "na", "n/a", "nan", "none", "null", "-", "?"})
# Column names that mark one reader's labels: a reader word with any suffix, or "label" with a
# number ("label_1"); a lone "label_source" or "labelled_by" is not a reader column.
READER_COLUMN = re.compile(r"^(?:(?:annotator|reader|rater|grader|expert)[ _-]?\w+|label[ _-]?\d+)$", re.IGNORECASE)

Vote = tuple[str, str]  # (column, raw class name): the column names the source of a bad value
TARGET_MODES = ("soft", "majority")


def is_missing(value) -> bool:
    return value is None or str(value).strip().lower() in MISSING_VOTES


def reader_columns(columns: Iterable[str]) -> list[str]:
    """The columns whose names mark them as one reader's labels each (need at least two)."""
    found = [c for c in columns if READER_COLUMN.match(str(c).strip())]
    return found if len(found) >= 2 else []


def vote_columns(frame, csv_name: str, label_col: str | None, label_columns=None) -> list[str]:
    """A CSV's columns holding several annotators' votes, or [] for one plain label per row.

    ``label_columns`` (a list or "A,B") names them; else reader columns found by name count when
    there is no plain label column (a plain one wins: readers added beside an adjudicated label
    must not change what an existing CSV trains on); else the label column when one of its cells
    lists several labels (``mel|nv``)."""
    if isinstance(label_columns, str):
        label_columns = [c.strip() for c in label_columns.split(",") if c.strip()]
    if label_columns:
        lower = {str(c).lower(): c for c in frame.columns}
        missing = [c for c in label_columns if c.lower() not in lower]
        if missing:
            raise ValueError(f"{csv_name}: --label-columns names {', '.join(map(repr, missing))}, not a column "
                             f"of it; its columns: {', '.join(frame.columns)}")
        return [lower[c.lower()] for c in label_columns]
    if label_col is None:
        return reader_columns(frame.columns)
    return [label_col] if frame[label_col].str.contains(VOTE_SEPARATOR, regex=False).any() else []


def row_votes(record: dict, columns: Sequence[str]) -> tuple[Vote, ...]:
    """A CSV record's votes: one per non-missing cell of ``columns``; a single column whose cell
    lists several labels (``mel|nv|mel``) gives one vote per listed label."""
    votes: list[Vote] = []
    for column in columns:
        for value in str(record[column]).split(VOTE_SEPARATOR):
            if not is_missing(value):
                votes.append((column, value.strip()))
    return tuple(votes)


def raw_names(labels: Iterable) -> list[str]:
    """Every raw class name in a layout's raw labels: a plain label, or each vote of a tuple."""
    return [name for label in labels for name in ([v for _, v in label] if isinstance(label, tuple) else [label])]


def vote_source(labels: Sequence, raw: str) -> str | None:
    """The column of the first vote for ``raw`` (to name it in an error), None for plain labels."""
    return next((c for label in labels if isinstance(label, tuple) for c, v in label if v == raw), None)


def votes_and_majority(labels: Sequence, index: dict[str, int], taxonomy: Taxonomy):
    """From a layout's raw labels (``index``: raw name → class): ``(counts, labels, source)`` with
    (N, K) vote counts, the majority labels and where the votes came from; ``(None, labels,
    None)`` for plain labels."""
    if not labels or not isinstance(labels[0], tuple):
        return None, [index[label] for label in labels], None
    counts = np.stack([np.bincount([index[v] for _, v in votes], minlength=taxonomy.num_classes)
                       for votes in labels])
    columns = list(dict.fromkeys(c for votes in labels for c, _ in votes))
    source = (f"columns {', '.join(columns)}" if len(columns) > 1
              else f"column {columns[0]} (labels separated by '{VOTE_SEPARATOR}')")
    return counts, majority(counts, taxonomy), source


def majority(counts, taxonomy: Taxonomy) -> np.ndarray:
    """Per sample, the class with the most votes; a tie goes to the class of the more severe
    superclass, then to the lower index. ``counts``: (N, K) or (K,)."""
    counts = np.atleast_2d(np.asarray(counts))
    k = taxonomy.num_classes
    # One sortable key per class: votes first, then severity, then the lower index.
    severity = np.asarray(taxonomy.superclass, dtype=np.int64)
    key = counts.astype(np.int64) * (k * (severity.max() + 1)) + severity * k + (k - 1 - np.arange(k))
    return key.argmax(axis=1)


def shares(counts) -> np.ndarray:
    """Vote counts → the per-sample vote distribution ``q`` (rows sum to 1), float32."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    if (totals <= 0).any():
        raise ValueError("every sample needs at least one vote to have a vote distribution")
    return (counts / totals).astype(np.float32)


def soft_targets(counts, labels, taxonomy: Taxonomy) -> np.ndarray:
    """The vote distribution, except where ``labels`` no longer agree with the majority vote (an
    injected flip, a reviewer's correction): there the given label is the whole target, so a
    changed label is never silently undone by the readers' votes."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.asarray(counts)
    targets = shares(counts)
    changed = labels != majority(counts, taxonomy)
    targets[changed] = np.eye(counts.shape[1], dtype=np.float32)[labels[changed]]
    return targets


def fleiss_kappa(counts) -> float | None:
    """Fleiss' kappa of (N, K) vote counts, missing votes allowed (module docstring); None when
    fewer than two samples have two votes or every vote is for one class (chance agreement 1)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=1)
    rated = n >= 2
    if rated.sum() < 2:
        return None
    per_sample = (counts[rated] * (counts[rated] - 1)).sum(axis=1) / (n[rated] * (n[rated] - 1))
    p = counts.sum(axis=0) / n.sum()  # the class shares use every vote, a lone one too
    chance = float((p ** 2).sum())
    if chance >= 1:
        return None
    return float((per_sample.mean() - chance) / (1 - chance))


def superclass_counts(counts, taxonomy: Taxonomy) -> np.ndarray:
    """(N, S) votes per superclass (benign, malignant, ...)."""
    onehot = np.eye(len(taxonomy.superclasses), dtype=np.int64)[list(taxonomy.superclass)]
    return np.asarray(counts, dtype=np.int64) @ onehot


def agreement(counts, taxonomy: Taxonomy) -> dict:
    """How much the readers agree: per-sample vote numbers, unanimity, ties and the safety-relevant
    disagreement (some reader said malignant, another benign), and Fleiss' kappa over classes and
    over superclasses."""
    counts = np.asarray(counts, dtype=np.int64)
    n = counts.sum(axis=1)
    several = n >= 2
    top = counts.max(axis=1)
    ties = (counts == top[:, None]).sum(axis=1) > 1
    critical = np.asarray(taxonomy.is_critical)
    malignant_votes = counts[:, critical].sum(axis=1)
    split_call = (malignant_votes > 0) & (malignant_votes < n)
    label = majority(counts, taxonomy)
    return {
        "samples": int(counts.shape[0]),
        "votes": int(n.sum()),
        "votes_per_sample": {"min": int(n.min()), "mean": round(float(n.mean()), 3), "max": int(n.max())},
        "samples_with_several_votes": int(several.sum()),
        "unanimous_share": _share((top == n) & several, several),
        "ties": int(ties.sum()),
        "ties_to_malignant": int((ties & critical[label]
                                  & (counts[:, ~critical].max(axis=1) == top)).sum()),
        "malignant_benign_disagreement": int(split_call.sum()),
        "majority_benign_with_malignant_vote": int((split_call & ~critical[label]).sum()),
        "fleiss_kappa": _rounded(fleiss_kappa(counts)),
        "fleiss_kappa_superclass": _rounded(fleiss_kappa(superclass_counts(counts, taxonomy))),
    }


def _share(mask: np.ndarray, among: np.ndarray) -> float | None:
    return None if not among.any() else round(float(mask[among].mean()), 4)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def agreement_lines(report: dict) -> list[str]:
    """``agreement``'s report as a person reads it (``rcl audit``)."""
    def kappa(value):
        return "n/a" if value is None else f"{value:.3f}"

    per = report["votes_per_sample"]
    unanimous = report["unanimous_share"]
    return [
        f"annotators: {report['votes']} votes on {report['samples']} samples ({per['min']}–{per['max']} per sample, "
        f"mean {per['mean']:g}); source: {report.get('source', 'votes')}",
        f"  unanimous: {'n/a' if unanimous is None else f'{unanimous:.1%}'} of the "
        f"{report['samples_with_several_votes']} samples with several votes; Fleiss' kappa {kappa(report['fleiss_kappa'])} "
        f"(classes), {kappa(report['fleiss_kappa_superclass'])} (benign/malignant)",
        f"  malignant by some reader, benign by another: {report['malignant_benign_disagreement']} samples, "
        f"{report['majority_benign_with_malignant_vote']} of them benign by majority",
        f"  ties: {report['ties']}, {report['ties_to_malignant']} broken towards malignant (ties go to the more "
        "severe superclass)",
    ]


def run_votes(table, labels, mode: str) -> tuple[np.ndarray | None, np.ndarray | None, dict | None]:
    """A run's ``(counts, targets, info)`` from its table (after ``prepare``) and final train-time
    labels: the vote counts (None without votes), the soft targets (None when ``mode`` is
    ``majority`` or there are no votes) and what ``config.json`` records under
    ``dataset.annotators``."""
    counts = table.votes
    if counts is None:
        return None, None, None
    if mode not in TARGET_MODES:
        raise ValueError(f"targets must be one of: {', '.join(TARGET_MODES)}; got {mode!r}")
    targets = soft_targets(counts, labels, table.taxonomy) if mode == "soft" else None
    relabelled = int((np.asarray(labels) != majority(counts, table.taxonomy)).sum())
    info = {**agreement(counts, table.taxonomy), "source": table.vote_source, "targets": mode,
            "training_on": ("the vote distribution of each sample (soft targets)" if mode == "soft"
                            else "the majority vote (ties to the more severe superclass)"),
            "relabelled": relabelled}
    return counts, targets, info
