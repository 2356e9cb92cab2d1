"""A data audit before any training: what a careful reviewer checks first.

Class counts per split, byte-identical duplicates across splits (Brain Tumor MRI's ``Testing/``
has 216 copies of ``Training/`` images), near-duplicates by perceptual hash (re-encoded or
resized copies of one image), groups (patients, lesions) that straddle splits, and unreadable
files. Each of these silently inflates a test score or breaks a run late; the audit names them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from rcl.data.images import load_rgb
from rcl.data.splits import (
    NEAR_DUPLICATE_THRESHOLD,
    content_hashes,
    make_splits,
    near_duplicates,
    perceptual_hashes,
)
from rcl.data.table import DatasetTable
from rcl.data.votes import agreement, agreement_lines

_EXAMPLES = 20  # how many file names each finding lists


@dataclass
class AuditReport:
    name: str
    layout: str
    root: str
    synthetic: bool
    classes: list[str]
    malignant: list[str]
    n_images: int
    class_counts: dict[str, dict[str, int]]  # split -> class -> count
    split_source: str  # "dataset" (its own test split) or "rcl" (make_splits)
    exact_duplicates_across_splits: dict[str, int]  # "train-test" -> images of the later split
    own_test_duplicates: int | None  # test images of the dataset's own split with a byte copy in its train part
    exact_duplicate_examples: list[tuple[str, str]]
    within_split_exact_duplicates: dict[str, int]  # split -> images that repeat an earlier one
    near_duplicates_across_splits: dict[str, int]
    near_duplicate_examples: list[tuple[str, str, int]]
    group_overlap: dict[str, int]  # "train-test" -> groups present in both
    n_groups: int | None
    unreadable: list[tuple[str, str]]
    skipped: list[tuple[str, str]]
    warnings: list[str] = field(default_factory=list)
    annotators: dict | None = None  # several annotators' agreement (rcl.data.votes.agreement), when voted

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        lines = [f"dataset {self.name} ({self.layout}{', SYNTHETIC' if self.synthetic else ''}): "
                 f"{self.n_images} images, {len(self.classes)} classes; malignant: {', '.join(self.malignant)}",
                 f"root: {self.root}",
                 f"splits: {'the dataset' + chr(39) + 's own test split' if self.split_source == 'dataset' else 'made by rcl'}"
                 + (f", {self.n_groups} groups" if self.n_groups is not None else ", no groups")]
        width = max(len(c) for c in self.classes)
        lines.append("  " + "class".ljust(width) + "".join(s.rjust(8) for s in self.class_counts))
        for c in self.classes:
            lines.append("  " + c.ljust(width) + "".join(str(self.class_counts[s][c]).rjust(8) for s in self.class_counts))
        if self.own_test_duplicates is not None:
            lines.append(f"the dataset's own test images with a byte-identical copy in its train part: "
                         f"{self.own_test_duplicates}")
        for pair, count in self.exact_duplicates_across_splits.items():
            lines.append(f"exact duplicates {pair}: {count}")
        for split, count in self.within_split_exact_duplicates.items():
            lines.append(f"exact duplicates within {split}: {count}")
        for pair, count in self.near_duplicates_across_splits.items():
            lines.append(f"near duplicates {pair}: {count}")
        for pair, count in self.group_overlap.items():
            lines.append(f"groups in both {pair}: {count}")
        lines.append(f"unreadable files: {len(self.unreadable)}; skipped while listing: {len(self.skipped)}")
        lines += [f"  {path}: {reason}" for path, reason in (self.unreadable + self.skipped)[:_EXAMPLES]]
        if self.annotators is not None:
            lines += agreement_lines(self.annotators)
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _pairs() -> list[tuple[str, str]]:
    return [("train", "val"), ("train", "test"), ("val", "test")]


def _decoded(paths: list[str], unreadable: dict[str, str]):
    """Each path decoded in turn (None, with the reason noted, when it cannot be)."""
    for path in paths:
        try:
            yield load_rgb(path)
        except ValueError as exc:
            unreadable.setdefault(path, str(exc).split(": ", 1)[-1])
            yield None


def audit(table: DatasetTable, splits: dict[str, np.ndarray] | None = None, seed: int = 0,
          near_duplicate_threshold: int | None = NEAR_DUPLICATE_THRESHOLD,
          val_fraction: float = 0.15, test_fraction: float = 0.15) -> AuditReport:
    """Audit ``table`` under ``splits`` (default: ``make_splits`` with ``seed``).

    Exact duplicates are found by SHA-256 of the file bytes. Near-duplicates need every image
    decoded for a perceptual hash (pHash, Hamming distance <= ``near_duplicate_threshold``, confirmed
    on colour thumbnails: ``rcl.data.splits.near_duplicates``);
    pass ``None`` to skip that part on large sets; exact copies are not counted again as near ones.
    Comparisons are pairwise across splits; "A-B" counts the B images with a match in A.
    """
    samples = table.samples
    warnings: list[str] = []
    if splits is None:
        splits = make_splits(table, val_fraction, test_fraction, seed=seed)
    own = "split" in samples and (samples["split"] == "test").any()
    labels = samples["label"].to_numpy()
    counts = {
        split: {c: int(n) for c, n in zip(table.taxonomy.classes,
                                           np.bincount(labels[rows], minlength=table.taxonomy.num_classes))}
        for split, rows in splits.items()
    }
    paths = samples["path"].astype(str).to_numpy()
    hashes = content_hashes(table)
    unreadable = {p: "cannot read the file" for p, h in zip(paths, hashes) if h is None}

    own_duplicates = None
    if own:
        own_test = (samples["split"] == "test").to_numpy()
        train_hashes = {h for h in hashes[~own_test] if h is not None}
        own_duplicates = int(sum(h is not None and h in train_hashes for h in hashes[own_test]))
    exact, examples, within = {}, [], {}
    for split, rows in splits.items():
        seen = Counter(h for h in hashes[rows] if h is not None)
        within[split] = int(sum(n - 1 for n in seen.values()))
    for first, second in _pairs():
        where = {}
        for row in splits[first]:
            if hashes[row] is not None:
                where.setdefault(hashes[row], row)
        matched = [(samples["id"].iat[where[hashes[r]]], samples["id"].iat[r]) for r in splits[second]
                   if hashes[r] is not None and hashes[r] in where]
        exact[f"{first}-{second}"] = len(matched)
        examples += matched[: _EXAMPLES - len(examples)]

    near, near_examples = {}, []
    if near_duplicate_threshold is not None:
        pictures = perceptual_hashes(_decoded(list(paths), unreadable))
        for first, second in _pairs():
            same, nearest, distance = near_duplicates(pictures, splits[second], splits[first],
                                                      near_duplicate_threshold)
            checked = splits[second][pictures.valid[splits[second]]]
            found = 0
            for row, match, d in zip(checked, nearest, distance):
                if same[row] and hashes[row] != hashes[match]:
                    found += 1
                    if len(near_examples) < _EXAMPLES:
                        near_examples.append((samples["id"].iat[match], samples["id"].iat[row], int(d)))
            near[f"{first}-{second}"] = found

    groups = samples["group"].to_numpy()
    has_groups = samples["group"].notna().any()
    overlap = {}
    if has_groups:
        members = defaultdict(set)
        for split, rows in splits.items():
            members[split] = {g for g in groups[rows] if g is not None}
        overlap = {f"{a}-{b}": len(members[a] & members[b]) for a, b in _pairs()}
        if any(overlap.values()):
            warnings.append("some groups (patients/lesions) appear in more than one split")
    if any(exact.values()):
        warnings.append("held-out images have byte-identical copies in an earlier split; training drops them "
                        "(TrainConfig.drop_duplicates)")
    if any(near.values()):
        warnings.append("held-out images have near-duplicates (perceptual hash) in an earlier split; training "
                        "drops them too (TrainConfig.drop_duplicates)")
    for split, rows in splits.items():
        missing = [c for c, n in counts[split].items() if n == 0]
        if missing and len(rows):
            warnings.append(f"{split} has no image of: {', '.join(missing)}")
    return AuditReport(
        name=table.name, layout=table.layout, root=str(table.root), synthetic=table.synthetic,
        classes=list(table.taxonomy.classes), malignant=list(table.taxonomy.malignant),
        n_images=len(samples), class_counts=counts, split_source="dataset" if own else "rcl",
        exact_duplicates_across_splits=exact, own_test_duplicates=own_duplicates, exact_duplicate_examples=[tuple(e) for e in examples],
        within_split_exact_duplicates=within, near_duplicates_across_splits=near,
        near_duplicate_examples=near_examples, group_overlap=overlap,
        n_groups=int(samples["group"].nunique()) if has_groups else None,
        unreadable=sorted(unreadable.items()), skipped=list(table.skipped), warnings=warnings,
        annotators=None if table.votes is None else {**agreement(table.votes, table.taxonomy),
                                                     "source": table.vote_source},
    )
