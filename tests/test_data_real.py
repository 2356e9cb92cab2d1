"""rcl.data on the real datasets in ../shared/data (skipped with a reason where they are absent).

These pin the two traps the data README warns about: HAM10000 must be split by lesion, and Brain
Tumor MRI's Testing/ folder holds 216 byte copies of Training/ images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rcl.data import audit, drop_cross_split_duplicates, load_dataset, make_splits, prepare, subsample
from rcl.data.splits import content_hashes

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HAM = SHARED_DATA / "ham10000"
BRAIN = SHARED_DATA / "brain-tumor-mri"

pytestmark = pytest.mark.realdata


def need(folder: Path) -> Path:
    if not folder.is_dir():
        pytest.skip(f"real data not available: {folder} does not exist (see ../shared/data/README.md)")
    return folder


@pytest.fixture(scope="module")
def ham():
    return load_dataset(need(HAM))


@pytest.fixture(scope="module")
def brain():
    return load_dataset(need(BRAIN))


def test_ham10000_loads_all_images_in_seven_classes(ham):
    assert ham.layout == "ham10000" and ham.taxonomy.name == "isic2018"
    assert len(ham) == 10015 and not ham.skipped
    assert ham.class_counts() == {"MEL": 1113, "NV": 6705, "BCC": 514, "AKIEC": 327, "BKL": 1099, "DF": 115,
                                  "VASC": 142}
    assert ham.samples["group"].nunique() == 7470


def test_ham10000_splits_never_share_a_lesion(ham):
    splits = make_splits(ham, 0.15, 0.15, seed=0)
    lesions = {name: set(ham.samples["group"].iloc[rows]) for name, rows in splits.items()}
    assert not lesions["train"] & lesions["val"]
    assert not lesions["train"] & lesions["test"]
    assert not lesions["val"] & lesions["test"]
    for name, rows in splits.items():
        assert np.bincount(ham.labels[rows], minlength=7).min() > 0, name
        assert abs(len(rows) / len(ham) - {"train": 0.7, "val": 0.15, "test": 0.15}[name]) < 0.02


def test_ham10000_real_jpegs_decode(ham):
    small = subsample(ham, 200, seed=0)
    prepared = prepare(small, 32)
    assert prepared.images.shape == (200, 32, 32, 3) and not prepared.skipped
    assert prepared.images.std() > 10  # real pictures, not blanks


def test_brain_mri_duplicates_are_reported_and_dropped(brain):
    assert brain.layout == "brain_mri" and len(brain) == 7019
    assert (brain.samples["split"] == "test").sum() == 1311
    report = audit(brain, seed=0, near_duplicate_threshold=None)
    assert report.own_test_duplicates == 216
    assert report.split_source == "dataset"
    splits = make_splits(brain, seed=0)
    kept, dropped = drop_cross_split_duplicates(brain, splits)
    assert dropped["exact"] >= 216 and dropped["near"] == 0  # no images given: byte copies only
    hashes = content_hashes(brain)
    earlier = set(hashes[kept["train"]]) | set(hashes[kept["val"]])
    assert not earlier & set(hashes[kept["test"]])
    assert not set(hashes[kept["train"]]) & set(hashes[kept["val"]])
    assert len(kept["test"]) >= 1311 - 216
