"""The review queue: specialists' verdicts on suspect labels, kept in a file beside the dataset.

The finder (:mod:`rcl.labels.issues`) only suspects; a person decides. A **review file** is an
append-only log of JSON lines, one verdict each, and never the dataset itself:

- ``keep``: the given label is right; ``correct``: it is wrong, ``label`` is the right class;
  ``unsure``: this needs a second reader (it changes nothing until one decides).
- ``round``: ``first`` (a first reader), or a second reader's ``confirm`` (the same verdict and
  class as the first reader's) or ``overrule`` (anything else; a second reader always decides
  keep or correct, so an ``unsure`` is always overruled). A second reader must be another person.

Which verdict counts, per sample: the latest second-reader verdict if there is one (a second
reading beats the first, whatever the order in time), else the latest first-reader verdict,
unless that is ``unsure``. Lines are read in file order, never by their clock. The **effective
corrections** are the counting ``correct`` verdicts; ``rcl train --label-corrections FILE``
applies them (:func:`apply_label_corrections`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rcl.atomic import append_line
from rcl.errors import DataWarning
from rcl.taxonomy import Taxonomy

REVIEW_FILE = "rcl-reviews.jsonl"
CORRECTIONS_FILE = "label_corrections.json"  # in a run folder: the corrections a run trained on
VERDICTS = {"keep": "the given label is right", "correct": "the given label is wrong; the right class is named",
            "unsure": "needs a second reader (changes nothing until one decides)"}
ROUNDS = ("first", "confirm", "overrule")
FIELDS = ("id", "given", "verdict", "label", "reviewer", "time", "reason", "round")


# -- where a dataset's reviews live -------------------------------------------------------------
@dataclass(frozen=True)
class ReviewTarget:
    """The dataset a review file belongs to: the file, the classes and each sample's given label."""

    data: str
    root: Path
    path: Path
    taxonomy: Taxonomy
    labels: dict[str, str]  # sample id → the dataset's class name

    def image_path(self, sample_id: str) -> Path:
        return self.root / sample_id


def default_reviews_path(table) -> Path:
    """``<dataset root>/rcl-reviews.jsonl``; in the data directory for the synthetic set (its
    folder is a cache, deleted at will) and for a dataset folder this user cannot write."""
    if not table.synthetic and os.access(table.root, os.W_OK):
        return table.root / REVIEW_FILE
    from rcl import paths

    tag = table.root.name if table.synthetic else \
        f"{table.name}-{hashlib.sha1(str(table.root).encode()).hexdigest()[:8]}"
    return paths.home() / f"rcl-reviews-{tag}.jsonl"


def review_target(data: str = "synthetic", preset: str | None = None, reviews: str | Path | None = None,
                  malignant=None, taxonomy: Taxonomy | dict | None = None) -> ReviewTarget:
    """The dataset ``data`` (listed, not decoded; ``preset``, ``malignant`` and ``taxonomy`` as for
    training: a run's own taxonomy names its classes whatever the layout) and its review file
    (``reviews``, else the default)."""
    from rcl.data.layouts import load_dataset

    if isinstance(taxonomy, dict):
        taxonomy = Taxonomy.from_dict(taxonomy)
    table = load_dataset(data, preset=preset, taxonomy=taxonomy, malignant=malignant)
    classes = table.taxonomy.classes
    labels = dict(zip(table.samples["id"].astype(str), (classes[i] for i in table.labels)))
    path = Path(reviews).expanduser().absolute() if reviews else default_reviews_path(table)
    return ReviewTarget(str(data), Path(table.root), path, table.taxonomy, labels)


# -- recording ----------------------------------------------------------------------------------
def _class(name, argument: str, taxonomy: Taxonomy) -> str:
    try:
        return taxonomy.canonical(str(name))
    except ValueError:
        raise ValueError(f"{argument}: {name!r} is not a class of the dataset "
                         f"({', '.join(taxonomy.classes)})") from None


def new_verdict(history: list[dict], sample_id: str, verdict: str, *, reviewer: str, given: str,
                taxonomy: Taxonomy, label: str | None = None, reason: str = "", second: bool = False,
                ids: Iterable[str] | None = None, time: str | None = None) -> dict:
    """One checked verdict record (not yet written), given the file's ``history``.

    Each bad argument raises one ``ValueError`` line that names it. ``ids`` (the dataset's sample
    ids), when given, must contain ``sample_id``. With ``second``, the verdict is a second
    reading of the sample's latest first verdict: ``confirm`` when it agrees, else ``overrule``.
    """
    sample_id = str(sample_id).strip()
    if not sample_id:
        raise ValueError("sample id: give the id of the sample reviewed (its path in the dataset)")
    if verdict not in VERDICTS:  # before the id: a typo in the verdict is the more likely mistake to report
        raise ValueError(f"verdict: unknown verdict {verdict!r}; choose one of: {', '.join(VERDICTS)}")
    if ids is not None and sample_id not in ids:
        raise ValueError(f"sample id: {sample_id!r} is not a sample of the dataset")
    reviewer = " ".join(str(reviewer or "").split())
    if not reviewer:
        raise ValueError("reviewer: give the reviewer's name (it is stored with the verdict)")
    given = _class(given, "given", taxonomy)
    if verdict == "correct":
        if label is None or not str(label).strip():
            raise ValueError("label: a 'correct' verdict needs the right class (--label CLASS)")
        label = _class(label, "label", taxonomy)
        if label == given:
            raise ValueError(f"label: {label!r} is the given label; the verdict for a right label is 'keep'")
    elif label is not None and str(label).strip():
        raise ValueError(f"label: only a 'correct' verdict names a class, not {verdict!r}")
    else:
        label = None
    mine = [r for r in history if r["id"] == sample_id]
    firsts = [r for r in mine if r["round"] == "first"]
    seconds = [r for r in mine if r["round"] != "first"]
    if second:
        if not firsts:
            raise ValueError(f"second: sample {sample_id!r} has no first verdict to confirm or overrule")
        earlier = firsts[-1]
        if earlier["reviewer"].casefold() == reviewer.casefold():
            raise ValueError(f"reviewer: a second reader must be someone other than the first reader "
                             f"({earlier['reviewer']})")
        if earlier["given"] != given:
            raise ValueError(f"given: the first reader saw {earlier['given']!r}, not {given!r}")
        if verdict == "unsure":
            raise ValueError("verdict: a second reader decides: keep or correct ('unsure' is the first reader's)")
        same = (earlier["verdict"], earlier["label"]) == (verdict, label)
        round_ = "confirm" if same else "overrule"
    else:
        if seconds:
            raise ValueError(f"second: sample {sample_id!r} was already read a second time (by "
                             f"{seconds[-1]['reviewer']}); change its verdict as a second reader")
        round_ = "first"
    return {"id": sample_id, "given": given, "verdict": verdict, "label": label, "reviewer": reviewer,
            "time": time or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "reason": " ".join(str(reason or "").split()), "round": round_}


def record_verdict(path: str | Path, sample_id: str, verdict: str, **details) -> dict:
    """Check a verdict against the file's history (:func:`new_verdict`), append it, return it."""
    record = new_verdict(read_reviews(path), sample_id, verdict, **details)
    append_line(path, json.dumps(record, ensure_ascii=False))
    return record


# -- reading ------------------------------------------------------------------------------------
def parse_reviews(text: str, source: str = "reviews") -> list[dict]:
    """The verdicts of a review file's text, in file order; a bad line is refused naming it.

    A last line without its newline that does not parse is an append cut short by a crash: it is
    skipped with a warning (the writer closes it before appending the next line).
    """
    lines = text.split("\n")
    reviews = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                warnings.warn(f"{source}: its last line is incomplete (an interrupted write) and is ignored",
                              DataWarning, stacklevel=2)
                continue
            raise ValueError(f"{source} line {number}: not a JSON object") from None
        missing = [f for f in FIELDS if not isinstance(record, dict) or f not in record]
        if missing:
            raise ValueError(f"{source} line {number}: not a review verdict (missing {', '.join(missing)})")
        if record["verdict"] not in VERDICTS or record["round"] not in ROUNDS:
            raise ValueError(f"{source} line {number}: unknown verdict {record['verdict']!r} or round "
                             f"{record['round']!r}")
        if (record["verdict"] == "correct") != bool(record["label"]):
            raise ValueError(f"{source} line {number}: a 'correct' verdict, and only it, names a label")
        reviews.append({f: record[f] for f in FIELDS})
    return reviews


def read_reviews(path: str | Path) -> list[dict]:
    """The history of a review file (empty when it does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return []
    return parse_reviews(path.read_text(encoding="utf-8"), str(path))


# -- what the verdicts mean ---------------------------------------------------------------------
def decisions(reviews: list[dict]) -> dict[str, dict]:
    """The verdict that counts per sample: its latest second reading, else its latest first verdict."""
    counting: dict[str, dict] = {}
    for record in reviews:
        current = counting.get(record["id"])
        if record["round"] != "first" or current is None or current["round"] == "first":
            counting[record["id"]] = record
    return counting


def current_labels(reviews: list[dict]) -> dict[str, str]:
    """Each decided sample's label after review (kept or corrected); ``unsure`` ones are not decided."""
    return {i: r["label"] if r["verdict"] == "correct" else r["given"]
            for i, r in decisions(reviews).items() if r["verdict"] != "unsure"}


def corrections(reviews: list[dict]) -> list[dict]:
    """The effective corrections, by sample id: each counting ``correct`` verdict, with who, when and why."""
    return [r for _, r in sorted(decisions(reviews).items()) if r["verdict"] == "correct"]


def review_summary(reviews: list[dict]) -> dict:
    """Counts: verdicts, samples reviewed, kept, corrected, waiting for a second reader, read twice."""
    counting = decisions(reviews).values()
    return {"verdicts": len(reviews), "samples": len(counting),
            **{name: sum(r["verdict"] == verdict for r in counting)
               for name, verdict in (("kept", "keep"), ("corrected", "correct"), ("unsure", "unsure"))},
            "second_read": sum(r["round"] != "first" for r in counting)}


def review_queue(issue_rows: list[dict], reviews: list[dict], second: bool = False) -> list[dict]:
    """The samples still to read, misses first (then in the ranking's order).

    First readers: the suspects (``rank_label_issues`` rows) that have no verdict yet. Second
    readers (``second``): every sample whose counting verdict is a first reader's, ``unsure``
    ones first; each entry carries that verdict as ``earlier`` (and the suspect's row if ranked).
    """
    counting = decisions(reviews)
    if not second:
        todo = [dict(row, earlier=None) for row in issue_rows if str(row["id"]) not in counting]
        return sorted(todo, key=lambda row: not row["is_miss"])
    ranked = {str(row["id"]): (position, row) for position, row in enumerate(issue_rows)}
    todo = []
    for sample_id, record in counting.items():
        if record["round"] != "first":
            continue
        position, row = ranked.get(sample_id, (len(ranked), {"id": sample_id, "given": record["given"],
                                                              "suggested": None, "score": None,
                                                              "p_malignant": None, "is_miss": False}))
        todo.append((record["verdict"] != "unsure", not row["is_miss"], position, dict(row, earlier=record)))
    return [entry for *_, entry in sorted(todo, key=lambda item: item[:3])]


def read_issues(path: str | Path) -> list[dict]:
    """The suspects of ``rcl label-issues --json`` saved to a file: its ``rows`` (or a bare list)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"issues: file {str(path)!r} does not exist (save one with: rcl label-issues ... --json > FILE)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"issues: {str(path)!r} is not JSON ({exc.msg}); save it with rcl label-issues --json") from None
    rows = data.get("rows") if isinstance(data, dict) else data
    needed = ("id", "given", "suggested", "score", "is_miss")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and all(k in r for k in needed) for r in rows):
        raise ValueError(f"issues: {str(path)!r} is not a ranking of rcl label-issues --json "
                         f"(rows of {', '.join(needed)})")
    return rows


# -- training on reviewed labels ----------------------------------------------------------------
def check_corrections_file(path: str | Path) -> str:
    """The absolute path of a review file that exists and parses (for ``TrainConfig.check``)."""
    resolved = Path(path).expanduser().absolute()
    if not resolved.is_file():
        raise ValueError(f"label_corrections: file {str(path)!r} does not exist (a review file written by "
                         "rcl review set or the Label quality page)")
    read_reviews(resolved)
    return str(resolved)


def apply_label_corrections(labels, ids, path: str | Path | None, taxonomy: Taxonomy) -> tuple[np.ndarray, dict | None]:
    """The labels with a review file's effective corrections applied, and the record of what was done.

    Every sample whose id a correction names gets the corrected class, whatever its split: a
    reviewed label is the best truth there is, for testing as for training. The record (written as
    ``label_corrections.json``) names the file and the SHA-256 of the content read, and lists the
    corrections ``applied`` (with the dataset's label, who, when, why and which round), those whose
    sample ``already`` had that label, the ids ``not_found`` among the samples (not in the dataset,
    left out by ``--limit``, or unreadable), and how many samples wait for a second reader.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if path is None:
        return labels, None
    content = Path(path).read_bytes()  # read once: the hash names exactly the verdicts applied
    reviews = parse_reviews(content.decode("utf-8"), str(path))
    fixed = labels.copy()
    position = {str(sample_id): i for i, sample_id in enumerate(np.asarray(ids).astype(str))}
    applied, already, not_found = [], [], []
    for record in corrections(reviews):
        target = taxonomy.classes.index(_class(record["label"], f"label_corrections {path}: sample {record['id']}",
                                               taxonomy))
        index = position.get(record["id"])
        if index is None:
            not_found.append(record["id"])
            continue
        entry = {"id": record["id"], "from": taxonomy.classes[labels[index]], "to": taxonomy.classes[target],
                 **{k: record[k] for k in ("given", "reviewer", "round", "time", "reason")}}
        (already if labels[index] == target else applied).append(entry)
        fixed[index] = target
    summary = review_summary(reviews)
    return fixed, {"file": str(path), "sha256": hashlib.sha256(content).hexdigest(), "verdicts": len(reviews),
                   "corrections": len(applied) + len(already) + len(not_found), "waiting_second_reader":
                   summary["unsure"], "applied": applied, "already": already, "not_found": not_found}


def corrections_summary(record: dict) -> dict:
    """What ``config.json`` says about the corrections a run used (the full list is in its own file)."""
    return {"file": record["file"], "sha256": record["sha256"], "applied": len(record["applied"]),
            "already": len(record["already"]), "not_found": len(record["not_found"]), "details": CORRECTIONS_FILE}


def label_of(target: ReviewTarget | Mapping[str, str], sample_id: str) -> str:
    """The dataset's label of ``sample_id``, refused in one line when the dataset has no such sample."""
    labels = target.labels if isinstance(target, ReviewTarget) else target
    if sample_id not in labels:
        raise ValueError(f"sample id: {sample_id!r} is not a sample of the dataset")
    return labels[sample_id]
