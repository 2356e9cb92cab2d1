"""Which runs may be compared: runs are comparable only when tested on the same images.

A run's test split is named by its fingerprint, a short hash of its sorted test sample ids
(``predictions.npz``); runs are grouped by dataset and fingerprint, and the Pareto page and
``rcl frontier`` only ever place one group's runs side by side.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rcl.listing import front_flags
from rcl.text import count_of, num, pct, plural

FINGERPRINT_CHARS = 8


def split_fingerprint(run_dir: str | Path) -> str | None:
    """The test split's fingerprint: the first characters of the SHA-1 of the sorted test sample
    ids, one per line; ``None`` when the run stored no test ids (nothing to compare it on)."""
    path = Path(run_dir) / "predictions.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            if "test_ids" not in stored.files:
                return None
            ids = sorted(str(i) for i in stored["test_ids"])
    except (OSError, ValueError):
        return None
    return hashlib.sha1("\n".join(ids).encode()).hexdigest()[:FINGERPRINT_CHARS]


def with_splits(rows: Sequence[dict]) -> list[dict]:
    """``rows`` (``run_rows``) each with its ``split`` fingerprint: the one stored in
    ``metrics.json`` (``test.split_fingerprint``) when there is one, else from its test ids."""
    return [{**row, "split": row.get("split") or split_fingerprint(row["path"])} for row in rows]


def split_groups(rows: Sequence[dict]) -> list[dict]:
    """The comparable groups among ``with_splits`` rows: one per (dataset, split), most runs first.

    Each group: ``dataset``, ``split``, ``n_test``, ``runs`` (how many) and ``label``
    (``"synthetic · 45 test images · split 1a2b3c4d · 3 runs"``). Runs without a fingerprint form
    no group.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row.get("split"):
            groups.setdefault((str(row["dataset"]), row["split"]), []).append(row)
    out = []
    for (dataset, split), members in groups.items():
        n_test = members[0].get("n_test")
        out.append({"dataset": dataset, "split": split, "n_test": n_test, "runs": len(members),
                    "label": f"{dataset} · {plural(n_test or 0, 'test image')} · split {split} · "
                             f"{plural(len(members), 'run')}"})
    return sorted(out, key=lambda g: (-g["runs"], g["dataset"], g["split"]))


def pick_group(groups: Sequence[dict], dataset: str | None = None, split: str | None = None) -> dict:
    """The group of ``dataset`` (and ``split`` when given); without ``split`` the one with the most
    runs. A ``ValueError`` lists the groups there are when none matches."""
    matches = [g for g in groups if (dataset is None or g["dataset"] == dataset)
               and (split is None or g["split"].startswith(split))]
    if not groups:
        raise ValueError("no finished run with stored test predictions yet: train one, e.g. "
                         "`rcl train --data synthetic --epochs 3`")
    if not matches:
        known = "; ".join(g["label"] for g in groups)
        wanted = " and ".join(filter(None, [dataset and f"dataset {dataset!r}", split and f"split {split!r}"]))
        raise ValueError(f"no finished runs with {wanted or 'a test split'}; comparable groups: {known}")
    return max(matches, key=lambda g: g["runs"])


def comparable(rows: Sequence[dict], group: dict) -> list[dict]:
    """The rows of one group, each with ``on_front`` (on the group's (CER, F1) Pareto front), by CER."""
    members = [r for r in rows if str(r["dataset"]) == group["dataset"] and r.get("split") == group["split"]]
    flagged = [{**r, "on_front": flag} for r, flag in zip(members, front_flags(members))]
    return sorted(flagged, key=lambda r: (r["cer"] is None, r["cer"] if r["cer"] is not None else 0.0))


def axis_range(values: Sequence[float | None], pad: float = 0.03) -> tuple[float, float]:
    """A plot range in [0, 1] rates that holds every value given (points, error bars, re-decision
    points) with a margin: nothing drawn is ever clipped."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return (0.0, 1.0)
    low, high = min(finite), max(finite)
    margin = max(pad, (high - low) * 0.05)
    return (min(0.0, low) - margin, high + margin)


FRONTIER_COLUMNS = ("label", "loss", "model", "alpha", "beta", "seed", "n_test", "cer", "cer_low", "cer_high",
                    "type_2", "f1_macro", "f1_low", "f1_high", "accuracy", "on_front", "id")
"""The columns of the frontier table (the Pareto page and ``rcl frontier --csv``)."""


def frontier_display(rows: Sequence[dict]) -> list[dict]:
    """``comparable`` rows as the Pareto page's table reads them: every rate in % (as on the plot's
    axis), intervals as "low – high", the cases behind CER, blanks (never "None") where undefined."""
    def interval(low, high, formatter) -> str:
        return "" if low is None or high is None else f"{formatter(low)} – {formatter(high)}"

    out = []
    for r in rows:
        missed = "" if r.get("malignant") is None else count_of(r["type_2"], r["malignant"])
        out.append({"run": r["label"], "loss": r.get("loss_label") or r["loss"], "model": r["model"],
                    "seed": r["seed"], "test images": r.get("n_test"),
                    "CER": "" if r["cer"] is None else pct(r["cer"]),
                    "CER 95% CI": interval(r.get("cer_low"), r.get("cer_high"), pct), "missed": missed,
                    "F1-macro": "" if r["f1_macro"] is None else num(r["f1_macro"]),
                    "F1 95% CI": interval(r.get("f1_low"), r.get("f1_high"), num),
                    "accuracy": "" if r.get("accuracy") is None else pct(r["accuracy"]),
                    "on the frontier": "yes" if r.get("on_front") else "", "id": r["id"]})
    return out


def frontier_csv(rows: Sequence[dict], columns: Sequence[str] = FRONTIER_COLUMNS) -> str:
    """``comparable`` rows as CSV text, rates as fractions (blank where undefined)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return buffer.getvalue()


__all__ = ["FRONTIER_COLUMNS", "axis_range", "comparable", "frontier_csv", "frontier_display", "pick_group", "split_fingerprint", "split_groups",
           "with_splits"]
