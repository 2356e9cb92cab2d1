"""Datasets are checked before training: a refusal naming the classes found when fewer than two
are present, and warnings the user sees (and the run stores) for empty classes and dropped files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import rcl
from rcl.cli import main
from rcl.data import load_dataset, make_splits, prepare
from rcl.data.checks import SHOW_PATHS, empty_class_warnings, require_classes, skipped_warnings
from rcl.errors import DataWarning, UserError


def images(folder: Path, count: int, start: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(start, start + count):
        Image.new("RGB", (8, 8), (i % 256, (7 * i) % 256, 0)).save(folder / f"{i}.png")
        names.append(f"{i}.png")
    return names


def half_missing_csv(root: Path) -> Path:
    """80 rows (nv/mel alternating), the image files of the last 40 missing."""
    images(root, 40)
    path = root / "data.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows((f"{i}.png", ("nv", "mel")[i % 2]) for i in range(80))
    return path


def test_one_class_folder_is_not_mapped_to_the_skin_taxonomy(tmp_path):
    images(tmp_path / "ds" / "nevus", 6)
    with pytest.raises(UserError, match=r"'ds' has images of one class only \(nevus\): a classifier needs at least two"):
        load_dataset(tmp_path / "ds")


def test_one_class_with_an_explicit_preset_is_refused_before_training(tmp_path):
    images(tmp_path / "ds" / "nevus", 6)
    with pytest.warns(DataWarning, match="6 of the 7 classes of taxonomy 'isic2018' have no image: MEL, BCC"):
        table = load_dataset(tmp_path / "ds", preset="isic2018")
    assert any("no image of a malignant class: the critical error rate (CER) cannot be measured" in w
               for w in table.warnings)
    with pytest.raises(UserError, match=r"has images of 1 class\(es\) only \(NV\)"):
        make_splits(table)


def test_missing_files_are_counted_and_named(tmp_path):
    with pytest.warns(DataWarning) as caught:
        table = load_dataset(half_missing_csv(tmp_path), preset="isic2018")
    expected = ("40 of 80 listed file(s) dropped (file not found): 40.png, 41.png, 42.png and 37 more; "
                "`rcl audit` lists them all")
    assert expected in [str(w.message) for w in caught]
    assert table.warnings[0] == expected and len(table) == 40


def test_undecodable_images_are_counted_when_prepared(tmp_path):
    images(tmp_path / "ds" / "nv", 5)
    images(tmp_path / "ds" / "mel", 5, start=5)
    for name in ("bad-1.png", "bad-2.png"):
        (tmp_path / "ds" / "mel" / name).write_bytes(b"not a png")
    table = load_dataset(tmp_path / "ds", preset="isic2018")
    with pytest.warns(DataWarning, match=r"2 of 12 image file\(s\) dropped \("):
        prepared = prepare(table, 8)
    assert len(prepared.samples) == 10 and len(prepared.warnings) == 1
    assert "bad-1.png" in prepared.warnings[0] and "bad-2.png" in prepared.warnings[0]


def test_cli_prints_the_warnings_on_one_line_each(tmp_path, capsys):
    assert main(["audit", str(half_missing_csv(tmp_path)), "--preset", "isic2018"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert "rcl audit: warning: 40 of 80 listed file(s) dropped (file not found): 40.png, 41.png, 42.png and " \
           "37 more; `rcl audit` lists them all" in err
    assert any(line.startswith("rcl audit: warning: 5 of the 7 classes of taxonomy 'isic2018' have no image: "
                               "BCC, AKIEC, BKL, DF, VASC") for line in err)


def test_a_full_dataset_has_no_warnings(toy_taxonomy):
    assert empty_class_warnings(np.array([0, 1, 2, 2]), toy_taxonomy) == []
    require_classes(np.array([0, 2]), toy_taxonomy)  # two classes: fine
    with pytest.raises(UserError, match=r"of 0 class\(es\) only \(none\)"):
        require_classes(np.array([], dtype=np.int64), toy_taxonomy)


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from(["missing", "corrupt", "empty"])),
                max_size=30))
def test_skipped_warnings_account_for_every_file(skipped):
    lines = skipped_warnings(skipped, total=100)
    assert len(lines) == len({reason for _, reason in skipped})
    assert sum(int(line.split(" of ")[0]) for line in lines) == len(skipped)
    for line in lines:
        named = line.split("): ", 1)[1].split(";")[0].split(" and ")[0].split(", ")
        assert len(named) <= SHOW_PATHS


def test_synthetic_data_trains_without_warnings(recwarn):
    table = load_dataset("synthetic")
    assert table.warnings == []
    assert not [w for w in recwarn if issubclass(w.category, DataWarning)]
    assert rcl.preset("isic2018").num_classes == len(table.class_counts())
