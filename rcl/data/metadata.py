"""Per-sample metadata (age, sex, site, how a label was confirmed, ...) read beside a dataset.

A dataset's table keeps only what training needs (path, label, group, split). For subgroup
analysis the other columns of the CSV files in the dataset's root are read back and matched to
sample ids: HAM10000's ``HAM10000_metadata.csv`` (``dx_type``, ``age``, ``sex``,
``localization``) by ``image_id`` (the file stem), a generic ``(path, label, ...)`` CSV by its
path column. The data itself is never changed. Numeric columns with many values (age) are cut
into quartile bands so each group has enough cases to say anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rcl.data.csv_layout import GROUP_COLUMNS, LABEL_COLUMNS, PATH_COLUMNS
from rcl.data.table import DatasetTable

STEM_COLUMNS = ("image_id", "image", "image_name")
MAX_LEVELS = 8  # a numeric column with more distinct values than this is banded into quartiles


def _keys(frame: pd.DataFrame, root: Path, samples: pd.DataFrame) -> tuple[str, pd.Series] | None:
    """(key column, sample id per row) for a CSV whose rows name the dataset's images, else None."""
    lower = {c.lower(): c for c in frame.columns}
    by_path = dict(zip(samples["path"], samples["id"]))
    by_stem = {Path(i).stem: i for i in samples["id"]}
    for name in PATH_COLUMNS + STEM_COLUMNS:
        column = lower.get(name)
        if column is None:
            continue
        values = frame[column].astype(str)
        ids = values.map(lambda v: by_path.get(str((root / v).resolve()), by_stem.get(Path(v).stem)))
        if ids.notna().any():
            return column, ids
    return None


def band(values: pd.Series) -> pd.Series:
    """Numeric columns with many values as quartile bands (``"(45, 60]"``), others as text."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() == values.notna().sum() and numbers.nunique() > MAX_LEVELS:
        edges = np.unique(np.nanquantile(numbers, np.linspace(0, 1, 5)))
        names = [f"[{edges[0]:g}, {edges[1]:g}]"] + [f"({a:g}, {b:g}]" for a, b in zip(edges[1:-1], edges[2:])]
        return pd.cut(numbers, edges, labels=names, include_lowest=True).astype(object)
    return values


def sample_metadata(table: DatasetTable) -> pd.DataFrame:
    """Metadata columns per sample id (index), from the CSV files in the dataset's root folder.

    Columns that training already uses (path, label, group) are left out. A sample no CSV
    describes has missing values. Empty (no columns) for layouts without such files.
    """
    frames = []
    skip = {c.lower() for c in PATH_COLUMNS + STEM_COLUMNS + LABEL_COLUMNS + GROUP_COLUMNS + ("split", "subset")}
    for csv in sorted(Path(table.root).glob("*.csv")):
        if csv.name.startswith("."):
            continue
        frame = pd.read_csv(csv, dtype=str, keep_default_na=True)
        found = _keys(frame, Path(table.root), table.samples)
        if found is None:
            continue
        columns = [c for c in frame.columns if c.lower() not in skip and not c.startswith("Unnamed:")]
        frames.append(frame[columns].assign(id=found[1]).dropna(subset=["id"]).drop_duplicates("id").set_index("id"))
    if not frames:
        return pd.DataFrame(index=pd.Index(table.samples["id"], name="id"))
    merged = pd.concat(frames, axis=1)
    merged = merged.loc[:, ~merged.columns.duplicated()]
    return merged.reindex(table.samples["id"])
