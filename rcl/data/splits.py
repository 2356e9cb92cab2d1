"""Leakage-safe train/val/test splits and content duplicates (byte copies and near-duplicates).

Why custom and not ``train_test_split``: the splits must be *stratified* (rare classes such as DF
with 115 images must reach every split), *grouped* (HAM10000 has several images per lesion, and
the same lesion in train and test inflates every metric) and must respect a dataset's own test
set (Brain Tumor MRI's ``Testing/``). A greedy pass over shuffled groups, filling each class's
quota, gives all three and is exact when there are no groups.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rcl.data.checks import require_classes
from rcl.data.table import DatasetTable

SPLITS = ("train", "val", "test")


def _groups(samples: pd.DataFrame) -> np.ndarray:
    """Group key per row; rows without a group are their own group."""
    group = samples["group"]
    own = "\x00row" + pd.Series(np.arange(len(samples)), index=samples.index).astype(str)
    return group.where(group.notna(), own).astype(str).to_numpy()


def _carve(rows: np.ndarray, labels: np.ndarray, groups: np.ndarray, fraction: float,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into (kept, held) with about ``fraction`` of each class held out, whole
    groups at a time, always leaving at least one sample of each class in ``kept``."""
    if fraction <= 0 or len(rows) == 0:
        return rows, rows[:0]
    frame = pd.DataFrame({"row": rows, "label": labels[rows], "group": groups[rows]})
    # A group goes where its most common label's quota says (groups are nearly always one class).
    votes = frame.groupby(["group", "label"]).size().rename("votes").reset_index()
    majority = votes.sort_values(["group", "votes", "label"], ascending=[True, False, True]).drop_duplicates("group")
    per_group = majority.set_index("group").join(frame.groupby("group").size().rename("size"))
    totals = frame["label"].value_counts()
    target = {c: int(round(fraction * n)) or (1 if n >= 2 else 0) for c, n in totals.items()}
    held_count = dict.fromkeys(totals.index, 0)
    held_groups = []
    order = rng.permutation(len(per_group))
    names, group_labels, sizes = per_group.index.to_numpy(), per_group["label"].to_numpy(), per_group["size"].to_numpy()
    for i in order:
        c, size = group_labels[i], sizes[i]
        if held_count[c] < target[c] and totals[c] - held_count[c] - size >= 1:
            held_count[c] += size
            held_groups.append(names[i])
    held_mask = frame["group"].isin(held_groups).to_numpy()
    return np.sort(rows[~held_mask]), np.sort(rows[held_mask])


def make_splits(table: DatasetTable, val_fraction: float = 0.15, test_fraction: float = 0.15,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Row indices (into ``table.samples``, positional) for 'train', 'val' and 'test'.

    Stratified by label, grouped by ``group`` (no group in two splits), deterministic for a seed.
    When the table has its own test split, that is the test set and ``val_fraction`` of its train
    part becomes val; otherwise test and val are carved from everything, as fractions of the whole.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1")
    samples = table.samples
    n = len(samples)
    labels = samples["label"].to_numpy()
    require_classes(labels, table.taxonomy, f"dataset {table.name!r}")
    groups = _groups(samples)
    rng = np.random.default_rng(seed)
    everything = np.arange(n)
    own = samples["split"].to_numpy() if "split" in samples else np.full(n, None)
    own_test = own == "test"
    if own_test.any():
        test = everything[own_test]
        train, val = _carve(everything[~own_test], labels, groups, val_fraction, rng)
        wanted = {"train": True, "val": val_fraction > 0, "test": True}
    else:
        rest, test = _carve(everything, labels, groups, test_fraction, rng)
        train, val = _carve(rest, labels, groups, val_fraction / (1 - test_fraction), rng)
        wanted = {"train": True, "val": val_fraction > 0, "test": test_fraction > 0}
    splits = {"train": train, "val": val, "test": test}
    empty = [s for s in SPLITS if wanted[s] and len(splits[s]) == 0]
    if empty:
        raise ValueError(
            f"too few samples to split {table.name!r}: {n} image(s) in {len(set(groups))} group(s) "
            f"leave the {', '.join(empty)} split empty; add images or lower --val-fraction/--test-fraction"
        )
    return splits


# -- content duplicates ----------------------------------------------------------------------------
_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str | None:
    """SHA-256 of a file's bytes (memoised on path, size and mtime); None if it cannot be read."""
    try:
        stat = Path(path).stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _HASHES:
            _HASHES[key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return _HASHES[key]
    except OSError:
        return None


def content_hashes(table: DatasetTable) -> np.ndarray:
    """SHA-256 per row of ``table.samples`` (None for unreadable files)."""
    return np.array([file_sha256(p) for p in table.samples["path"]], dtype=object)


def duplicate_mask(table: DatasetTable, splits: dict[str, np.ndarray]) -> np.ndarray:
    """Boolean per row: a val or test image whose exact bytes also appear in train, or a val image
    that also appears in test. Such images are not held out at all (Brain Tumor MRI's ``Testing/``
    has 216 byte copies of ``Training/`` images), so training code drops them."""
    hashes = content_hashes(table)
    mask = np.zeros(len(hashes), dtype=bool)
    seen = {h for h in hashes[splits["train"]] if h is not None}
    for split in ("test", "val"):
        rows = splits[split]
        mask[rows] = [h is not None and h in seen for h in hashes[rows]]
        seen |= {h for h in hashes[rows] if h is not None}
    return mask


# -- near-duplicates: perceptual hashes ------------------------------------------------------------
NEAR_DUPLICATE_THRESHOLD = 2  # Hamming distance between 64-bit pHashes: re-encoded/resized copies
# A pHash match is confirmed on colour thumbnails: at most this mean absolute difference (0-255).
# pHash reads only grey-level low frequencies, so distinct lesions (a dark round blob, centred, on
# lighter skin) can hash within 2 bits of each other; a copy also matches in colour.
SAME_PICTURE_DIFFERENCE = 12.0
THUMBNAIL = 16
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass
class PictureHashes:
    """Per image: the 64-bit pHash packed as uint64, a THUMBNAIL² colour thumbnail, and whether
    the image could be read."""

    packed: np.ndarray
    thumbnails: np.ndarray
    valid: np.ndarray


def perceptual_hashes(images) -> PictureHashes:
    """pHash and thumbnail of each image (PIL images or (S, S, 3) uint8 arrays; None = unreadable),
    taken one at a time, so a generator of decoded files never holds more than one."""
    import imagehash
    from PIL import Image

    bits, thumbnails, valid = [], [], []
    for image in images:
        if image is not None and not isinstance(image, Image.Image):
            image = Image.fromarray(image)
        valid.append(image is not None)
        bits.append(imagehash.phash(image).hash.flatten() if image is not None else np.zeros(64, bool))
        thumbnails.append(np.zeros((THUMBNAIL, THUMBNAIL, 3), np.uint8) if image is None else
                          np.asarray(image.convert("RGB").resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR)))
    packed = np.packbits(np.array(bits, dtype=bool).reshape(-1, 64), axis=1).view(np.uint64).ravel()
    return PictureHashes(packed, np.array(thumbnails, dtype=np.uint8).reshape(-1, THUMBNAIL, THUMBNAIL, 3),
                         np.array(valid, dtype=bool))


def nearest_hashes(hashes: PictureHashes, rows: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``rows``: the row of ``candidates`` with the nearest pHash, and the Hamming
    distance (65 when there is no candidate). Blocks of 256 keep memory at 256 × |candidates|."""
    packed = hashes.packed
    best_rows, best = np.zeros(len(rows), dtype=np.int64), np.full(len(rows), 65, dtype=np.int64)
    if not len(candidates):
        return best_rows, best
    for start in range(0, len(rows), 256):
        block = rows[start : start + 256]
        xor = packed[block][:, None] ^ packed[candidates][None, :]
        distance = _POPCOUNT[xor.view(np.uint8)].reshape(len(block), len(candidates), 8).sum(axis=2)
        nearest = distance.argmin(axis=1)
        best_rows[start : start + len(block)] = candidates[nearest]
        best[start : start + len(block)] = distance[np.arange(len(block)), nearest]
    return best_rows, best


def near_duplicates(hashes: PictureHashes, rows: np.ndarray, candidates: np.ndarray,
                    threshold: int = NEAR_DUPLICATE_THRESHOLD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which of ``rows`` repeat a picture among ``candidates``: pHash within ``threshold`` and
    colour thumbnails within :data:`SAME_PICTURE_DIFFERENCE`. Returns the mask, the matched rows
    and the Hamming distances."""
    rows, candidates = rows[hashes.valid[rows]], candidates[hashes.valid[candidates]]
    matched, distance = nearest_hashes(hashes, rows, candidates)
    difference = np.abs(hashes.thumbnails[rows].astype(np.float64) - hashes.thumbnails[matched]).mean(axis=(1, 2, 3))
    same = (distance <= threshold) & (difference <= SAME_PICTURE_DIFFERENCE)
    return np.isin(np.arange(len(hashes.valid)), rows[same]), matched, distance


def near_duplicate_mask(hashes: PictureHashes, splits: dict[str, np.ndarray],
                        threshold: int = NEAR_DUPLICATE_THRESHOLD) -> np.ndarray:
    """Boolean per row: a test image that repeats a train picture (:func:`near_duplicates`), or a
    val image that repeats a train or test one (the same image re-encoded or resized)."""
    mask = np.zeros(len(hashes.valid), dtype=bool)
    earlier = splits["train"]
    for split in ("test", "val"):
        found = near_duplicates(hashes, splits[split], earlier, threshold)[0]
        mask |= found
        earlier = np.concatenate([earlier, splits[split][~found[splits[split]]]])
    return mask


def drop_cross_split_duplicates(table: DatasetTable, splits: dict[str, np.ndarray], images=None,
                                threshold: int = NEAR_DUPLICATE_THRESHOLD) -> tuple[dict[str, np.ndarray], dict]:
    """``splits`` without the held-out rows that repeat an earlier split: byte copies
    (``duplicate_mask``), then, given the decoded ``images`` (one per row), near-duplicates by
    perceptual hash (``near_duplicate_mask``). Returns the kept splits and the counts dropped,
    ``{"exact": n, "near": m}``."""
    exact = duplicate_mask(table, splits)
    kept = {name: rows[~exact[rows]] for name, rows in splits.items()}
    near = np.zeros_like(exact)
    if images is not None:
        near = near_duplicate_mask(perceptual_hashes(images), kept, threshold)
        kept = {name: rows[~near[rows]] for name, rows in kept.items()}
    return kept, {"exact": int(exact.sum()), "near": int(near.sum())}
