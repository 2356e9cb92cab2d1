"""Suspect labels as a reviewer sees them: where a ranking comes from, each suspect with its image.

A ranking is the output of :func:`rcl.labels.issues.rank_label_issues` (``rows`` of ``id``,
``given``, ``suggested``, ``score``, ``p_malignant``, ``is_miss``), from one of two sources:

- a finished run's stored validation and test probabilities (:func:`run_suspects`): cheap (no
  training), out-of-sample, but it cannot check the train split;
- a saved result file: ``rcl label-issues ... --json`` written into the data directory's
  ``label_issues/`` folder (or a run folder's ``label_issues.json``), typically out-of-fold
  probabilities of the train split, which takes minutes to compute, so it is saved, not redone.

Images are looked up by sample id (a path relative to the dataset's root) and only shown when the
file is on this machine; nothing here edits a label or a dataset.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rcl import paths

ISSUES_DIR = "label_issues"  # $RCL_HOME/label_issues/*.json: saved `rcl label-issues --json` results
RUN_FILE = "label_issues.json"  # a run folder's own saved result
ROW_KEYS = ("id", "given", "suggested", "score", "p_malignant", "is_miss")
"""The columns of a ranking row, and of the CSV export."""


def run_suspects(run) -> dict:
    """Flag and rank the suspect labels of a finished run's stored val/test probabilities, with the
    run's dataset ``root`` (where the sample ids point)."""
    from rcl.labels.issues import from_run, rank_label_issues

    return {**rank_label_issues(from_run(run)), "root": run.config.get("dataset", {}).get("root")}


def saved_suspects(root: str | Path | None = None) -> list[Path]:
    """Saved rankings in the data directory: ``label_issues/*.json``, then each run folder's
    ``label_issues.json``, by name."""
    root = paths.home() if root is None else Path(root)
    return sorted((root / ISSUES_DIR).glob("*.json")) + sorted(root.glob(f"*/{RUN_FILE}"))


def read_suspects(path: str | Path) -> dict:
    """A saved ranking, checked: a ``ValueError`` names the file and what is wrong with it."""
    path = Path(path)
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name} cannot be read as a label-issue result: {exc}") from exc
    rows = result.get("rows") if isinstance(result, dict) else None
    if not isinstance(rows, list) or any(not isinstance(r, dict) or not set(ROW_KEYS) <= set(r) for r in rows):
        raise ValueError(f"{path.name} is not a label-issue result: expected the JSON of `rcl label-issues --json` "
                         f"(rows with {', '.join(ROW_KEYS)})")
    return result


def suspect_gallery(result: dict, root: str | Path | None = None) -> list[dict]:
    """The ranking's rows, suspected misses first (stable: the ranking's order otherwise), each with
    ``path``: its image file under the result's own ``root``, else ``root``, when it exists here."""
    base = result.get("root") or root
    out = []
    for row in sorted(result["rows"], key=lambda r: not r["is_miss"]):
        path = Path(base) / str(row["id"]) if base else None
        out.append({**row, "id": str(row["id"]), "path": str(path) if path is not None and path.is_file() else None})
    return out


def suspect_caption(row: dict) -> str:
    """``"NV → MEL · score 0.03"``: the given label, the suggested one and how much the model
    believed the given one (lower is more suspect)."""
    return f"{row['given']} → {row['suggested']} · score {float(row['score']):.2f}"


def suspects_csv(rows: Sequence[dict]) -> str:
    """The suspects as CSV (:data:`ROW_KEYS`), in review order."""
    from rcl.comparison import frontier_csv

    return frontier_csv(rows, ROW_KEYS)


__all__ = ["ISSUES_DIR", "ROW_KEYS", "RUN_FILE", "read_suspects", "run_suspects", "saved_suspects", "suspect_caption",
           "suspect_gallery", "suspects_csv"]
