"""The generic CSV layout: one row per image, (path, label[, group][, split]), or (path, several
annotators' labels, ...) (:mod:`rcl.data.votes`); paths relative to the CSV's folder. The column
names it recognises are shared with :mod:`rcl.data.metadata`, which reads every *other* column as
per-sample metadata."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from rcl.data.table import TEST_NAMES, Row
from rcl.data.votes import row_votes, vote_columns

PATH_COLUMNS = ("path", "filepath", "file_path", "file", "filename", "image", "image_path", "img")
LABEL_COLUMNS = ("label", "class", "target", "dx", "diagnosis", "category")
GROUP_COLUMNS = ("group", "patient", "patient_id", "lesion_id", "subject", "subject_id")


def _pick(columns: Iterable[str], names: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


def read_csv_layout(csv: Path, label_columns=None) -> tuple[list[Row], list]:
    """A CSV of (path, label[, group][, split]), or of (path, several annotators' labels...);
    paths relative to the CSV's folder."""
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    path_col, label_col = _pick(frame.columns, PATH_COLUMNS), _pick(frame.columns, LABEL_COLUMNS)
    vote_cols = vote_columns(frame, csv.name, label_col, label_columns)
    if path_col is None or (label_col is None and not vote_cols):
        raise ValueError(f"{csv.name} needs a path column ({', '.join(PATH_COLUMNS)}) and a label column "
                         f"({', '.join(LABEL_COLUMNS)}) or several annotators' columns (--label-columns A,B,C); "
                         f"it has: {', '.join(frame.columns)}")
    group_col, split_col = _pick(frame.columns, GROUP_COLUMNS), _pick(frame.columns, ("split", "subset"))
    root = csv.parent
    rows: list[Row] = []
    skipped: list = []
    for record in frame.to_dict("records"):
        path = (root / record[path_col]).resolve()
        if not path.is_file():
            skipped.append((record[path_col], "file not found"))
            continue
        split = None
        if split_col is not None:
            value = record[split_col].strip().lower()
            split = "test" if value in TEST_NAMES else ("train" if value else None)
        label = row_votes(record, vote_cols) if vote_cols else record[label_col]
        if not label:
            skipped.append((record[path_col], f"no vote in {', '.join(vote_cols)}"))
            continue
        rows.append((path, label, (record[group_col] or None) if group_col else None, split))
    return rows, skipped
