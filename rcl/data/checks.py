"""Checks on a dataset before anything trains on it: pure functions returning what to tell the user.

``load_dataset`` records their warnings on the table (``DatasetTable.warnings``, stored in a run's
dataset info) and emits each as a :class:`rcl.errors.DataWarning` (the CLI prints it as one line);
``prepare`` does the same for images that could not be decoded; ``make_splits`` refuses a table
on which no classifier can be trained.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from rcl.errors import DataWarning, UserError
from rcl.taxonomy import Taxonomy

SHOW_PATHS = 3  # how many skipped paths a warning names; `rcl audit` lists them all


def skipped_warnings(skipped: Sequence[tuple[str, str]], total: int, what: str = "listed") -> list[str]:
    """One line per reason: how many of ``total`` files were dropped, and the first few paths."""
    by_reason: dict[str, list[str]] = {}
    for path, reason in skipped:
        by_reason.setdefault(reason, []).append(path)
    lines = []
    for reason, files in by_reason.items():
        more = f" and {len(files) - SHOW_PATHS} more" if len(files) > SHOW_PATHS else ""
        lines.append(f"{len(files)} of {total} {what} file(s) dropped ({reason}): "
                     f"{', '.join(files[:SHOW_PATHS])}{more}; `rcl audit` lists them all")
    return lines


def empty_class_warnings(labels: np.ndarray, taxonomy: Taxonomy) -> list[str]:
    """Classes of the taxonomy with no image, and a superclass with none (CER then means nothing)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=taxonomy.num_classes)
    empty = [c for c, n in zip(taxonomy.classes, counts) if n == 0]
    if not empty:
        return []
    lines = [f"{len(empty)} of the {taxonomy.num_classes} classes of taxonomy {taxonomy.name!r} have no image: "
             f"{', '.join(empty)}; their metrics will be empty (pass --malignant or --taxonomy to describe "
             "only this dataset's classes)"]
    supers = np.asarray(taxonomy.superclass)
    for index, name in enumerate(taxonomy.superclasses):
        if counts[supers == index].sum() == 0:
            lines.append(f"no image of a {name} class: the critical error rate (CER) cannot be measured")
    return lines


def require_classes(labels: np.ndarray, taxonomy: Taxonomy, where: str = "the dataset") -> None:
    """Refuse data with images of fewer than two classes: no classifier can be trained on it."""
    present = sorted(set(np.asarray(labels, dtype=np.int64).tolist()))
    if len(present) < 2:
        found = ", ".join(taxonomy.classes[i] for i in present) or "none"
        raise UserError(f"{where} has images of {len(present)} class(es) only ({found}): a classifier needs "
                        f"images of at least two of {taxonomy.name!r}'s classes ({', '.join(taxonomy.classes)})")


def announce(lines: Sequence[str]) -> list[str]:
    """Emit each line as a ``DataWarning`` (the CLI prints it) and return them for storing."""
    for line in lines:
        warnings.warn(line, DataWarning, stacklevel=3)
    return list(lines)
