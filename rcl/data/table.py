"""``DatasetTable``: what every layout reader returns, one row per image, no pixels.

Why a table and not a torch Dataset: listing, labelling, splitting and auditing a dataset must be
instant and memory-flat in its size (the app lists HAM10000's 10,015 images on every page load);
pixels are decoded once, later, by :mod:`rcl.data.images`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from rcl.taxonomy import Taxonomy

COLUMNS = ("id", "path", "label", "group", "split")
Row = tuple[Path, "str | tuple", "str | None", "str | None"]  # a layout's (path, raw label or votes, group, split)
TRAIN_NAMES = {"training", "train"}  # a dataset's own split, as folder names or a CSV's split column
TEST_NAMES = {"testing", "test"}
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"})


@dataclass
class DatasetTable:
    """A dataset as a list of files.

    ``samples`` columns: ``id`` (path relative to ``root``, POSIX, unique: the id stored in run
    predictions), ``path`` (absolute), ``label`` (index into ``taxonomy.classes``), ``group``
    (patient/lesion id that must not straddle splits, or None), ``split`` ('train'/'test' when the
    dataset defines its own held-out set, else None). ``skipped`` lists files the reader saw but
    could not use, with the reason, so the user learns about them instead of losing them silently;
    ``warnings`` says what looks wrong with the data (:mod:`rcl.data.checks`). With several
    annotators, ``samples`` also has ``votes`` (each row's K vote counts; ``label`` is their
    majority) and ``vote_source`` says where the votes came from (:mod:`rcl.data.votes`).
    """

    name: str
    root: Path
    layout: str
    taxonomy: Taxonomy
    samples: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)
    synthetic: bool = False
    warnings: list[str] = field(default_factory=list)
    vote_source: str | None = None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return self.samples["label"].to_numpy(dtype=np.int64)

    @property
    def votes(self) -> np.ndarray | None:
        """(N, K) annotators' vote counts, or None when each sample has one label."""
        if "votes" not in self.samples:
            return None
        return np.array(self.samples["votes"].tolist(), dtype=np.int64).reshape(len(self.samples), -1)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=self.taxonomy.num_classes)
        return {c: int(n) for c, n in zip(self.taxonomy.classes, counts)}


def make_samples(root: Path, rows: list[tuple[Path, int, str | None, str | None]], votes=None) -> pd.DataFrame:
    """The ``samples`` frame from (absolute path, label, group, split) rows (and each row's vote
    counts, when given), sorted by id so that the table (and so every split) does not depend on
    the file system's listing order."""
    root = Path(root)
    frame = pd.DataFrame(
        {
            "id": [Path(os.path.relpath(p, root)).as_posix() for p, _, _, _ in rows],
            "path": [str(p) for p, _, _, _ in rows],
            "label": np.array([label for _, label, _, _ in rows], dtype=np.int64),
            "group": pd.Series([g for _, _, g, _ in rows], dtype=object),
            "split": pd.Series([s for _, _, _, s in rows], dtype=object),
        }
    )
    if votes is not None:
        frame["votes"] = pd.Series([tuple(int(v) for v in row) for row in votes], dtype=object)
    frame = frame.drop_duplicates("id").sort_values("id", kind="stable").reset_index(drop=True)
    return frame


def subsample(table: DatasetTable, limit: int, seed: int = 0) -> DatasetTable:
    """At most ``limit`` rows, stratified by label (every class keeps at least one row while
    ``limit`` allows), for quick runs. Deterministic for a seed; row order is kept."""
    samples = table.samples
    if limit >= len(samples):
        return table
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    labels = samples["label"].to_numpy()
    classes, counts = np.unique(labels, return_counts=True)
    raw = counts * limit / counts.sum()
    quota = np.maximum(np.floor(raw).astype(int), 1 if limit >= len(classes) else 0)
    while quota.sum() > limit:  # the minimum of one per class pushed the total over: trim the largest
        quota[np.argmax(quota)] -= 1
    order = np.argsort(raw - np.floor(raw))[::-1]
    for k in order:
        if quota.sum() >= limit:
            break
        if quota[k] < counts[k]:
            quota[k] += 1
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quota)])
    return replace(table, samples=samples.iloc[np.sort(keep)].reset_index(drop=True))
