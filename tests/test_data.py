"""rcl.data: layouts as users download them, splits, the image cache, transforms, audit, synthetic set.

Every real layout is fabricated here from a handful of tiny generated images, so these tests run
anywhere; tests/test_data_real.py checks the same code on the real copies in ../shared/data.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import rcl
from rcl.data import (
    SYNTHETIC_NOTE,
    DatasetTable,
    ImageArrayDataset,
    audit,
    cache_images,
    drop_cross_split_duplicates,
    generate,
    load_dataset,
    load_rgb,
    make_splits,
    materialize,
    prepare,
    preprocess,
    resize_rgb,
    subsample,
)
from rcl.data import images as images_module
from rcl.data.synthetic import CLASSES, class_counts
from rcl.data.table import make_samples
from rcl.taxonomy import Taxonomy


def save_image(path: Path, seed: int = 0, size=(12, 10), mode: str = "RGB", fmt: str | None = None) -> Path:
    """A tiny random image; distinct seeds give distinct bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "L":
        image = image.convert("L")
    elif mode == "RGBA":
        image = image.convert("RGBA")
    elif mode == "P":
        image = image.convert("P")
    elif mode == "I;16":
        image = Image.fromarray((rng.integers(0, 65536, (size[1], size[0]))).astype(np.uint16))
    image.save(path, format=fmt)
    return path


def ids(table: DatasetTable) -> list[str]:
    return table.samples["id"].tolist()


# -- synthetic ---------------------------------------------------------------------------------------
def test_synthetic_is_deterministic_and_seeded():
    a_images, a_labels = generate(200, 32, seed=3)
    b_images, b_labels = generate(200, 32, seed=3)
    c_images, _ = generate(200, 32, seed=4)
    assert a_images.shape == (200, 32, 32, 3) and a_images.dtype == np.uint8
    assert a_labels.dtype == np.int64
    assert np.array_equal(a_images, b_images) and np.array_equal(a_labels, b_labels)
    assert not np.array_equal(a_images, c_images)


def test_synthetic_class_balance_is_isic_like():
    counts = dict(zip(CLASSES, class_counts(3000)))
    assert sum(counts.values()) == 3000
    assert min(counts.values()) >= 15
    assert 0.62 < counts["NV"] / 3000 < 0.70
    assert counts["MEL"] > counts["BCC"] > counts["AKIEC"] > counts["DF"]
    _, labels = generate(300, 16, seed=0)
    assert np.array_equal(np.bincount(labels, minlength=7), class_counts(300))
    with pytest.raises(ValueError, match="at least 7"):
        class_counts(3)


def test_materialize_is_idempotent_and_labelled_synthetic(tmp_path):
    root = materialize(tmp_path / "syn", n=40, image_size=16, seed=1)
    files = sorted(root.rglob("*.png"))
    assert len(files) == 40
    assert (root / "MEL" / "MEL_00001.png").is_file()
    note = (root / "SYNTHETIC.md").read_text()
    assert SYNTHETIC_NOTE in note and "not patient data" in note and "seed: 1" in note
    stamp = files[0].stat().st_mtime_ns
    assert materialize(tmp_path / "syn", n=40, image_size=16, seed=1) == root
    assert files[0].stat().st_mtime_ns == stamp  # reused, not rewritten
    assert [p.name for p in tmp_path.iterdir()] == ["syn"]  # no temporary folder left behind


def test_load_synthetic_default():
    table = load_dataset("synthetic")
    assert table.synthetic and table.layout == "synthetic"
    assert table.taxonomy.name == "isic2018" and len(table) == 3000
    assert table.samples["split"].isna().all() and table.samples["group"].isna().all()
    assert table.samples["id"].iloc[0].count("/") == 1  # <CLASS>/<CLASS>_NNNNN.png


# -- layouts -----------------------------------------------------------------------------------------
def test_ham10000_layout(tmp_path):
    meta = pd.DataFrame({
        "lesion_id": ["HAM_1", "HAM_1", "HAM_2", "HAM_3", "HAM_4"],
        "image_id": ["ISIC_1", "ISIC_2", "ISIC_3", "ISIC_4", "ISIC_5"],
        "dx": ["mel", "mel", "nv", "bkl", "akiec"],
        "age": [50, 50, 30, 70, 80],
    })
    meta.to_csv(tmp_path / "HAM10000_metadata.csv", index=False)
    save_image(tmp_path / "HAM10000_images_part_1" / "ISIC_1.jpg", 1)
    save_image(tmp_path / "HAM10000_images_part_1" / "ISIC_2.jpg", 2)
    save_image(tmp_path / "HAM10000_images_part_2" / "ISIC_3.jpg", 3)
    save_image(tmp_path / "HAM10000_images_part_2" / "ISIC_4.jpg", 4)
    table = load_dataset(tmp_path)
    assert table.layout == "ham10000" and table.taxonomy.name == "isic2018"
    classes = [table.taxonomy.classes[i] for i in table.samples["label"]]
    assert classes == ["MEL", "MEL", "NV", "BKL"]
    assert table.samples["group"].tolist() == ["HAM_1", "HAM_1", "HAM_2", "HAM_3"]
    assert ids(table)[0] == "HAM10000_images_part_1/ISIC_1.jpg"
    assert table.samples["split"].isna().all()
    assert table.skipped == [("ISIC_5", "listed in HAM10000_metadata.csv but no image file found")]
    assert Path(table.samples["path"].iloc[0]).is_absolute()
    # The CSV itself is accepted too.
    assert ids(load_dataset(tmp_path / "HAM10000_metadata.csv")) == ids(table)


def test_isic2018_groundtruth_layout(tmp_path):
    columns = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    for split, images in (("Training", ["ISIC_a", "ISIC_b", "ISIC_c"]), ("Test", ["ISIC_d"])):
        truth = pd.DataFrame(0.0, index=range(len(images)), columns=columns)
        truth.insert(0, "image", images)
        for i, cls in enumerate(["MEL", "VASC", "NV"][: len(images)]):
            truth.loc[i, cls] = 1.0
        folder = tmp_path / f"ISIC2018_Task3_{split}_GroundTruth"
        folder.mkdir()
        truth.to_csv(folder / f"ISIC2018_Task3_{split}_GroundTruth.csv", index=False)
        for k, image in enumerate(images):
            save_image(tmp_path / f"ISIC2018_Task3_{split}_Input" / f"{image}.jpg", k + 10 * len(images))
    pd.DataFrame({"image": ["ISIC_a", "ISIC_b"], "lesion_id": ["L1", "L1"]}).to_csv(
        tmp_path / "ISIC2018_Task3_Training_LesionGroupings.csv", index=False)
    table = load_dataset(tmp_path)
    assert table.layout == "isic2018_groundtruth"
    rows = table.samples.set_index(table.samples["id"].str.extract(r"(ISIC_\w)")[0])
    assert [table.taxonomy.classes[rows.loc[i, "label"]] for i in ["ISIC_a", "ISIC_b", "ISIC_c", "ISIC_d"]] == \
        ["MEL", "VASC", "NV", "MEL"]
    assert rows.loc["ISIC_d", "split"] == "test" and rows.loc["ISIC_a", "split"] == "train"
    assert rows.loc["ISIC_a", "group"] == "L1" and rows.loc["ISIC_c", "group"] is None


def make_brain(root: Path, per_class: int = 4) -> Path:
    for split, prefix in (("Training", "Tr"), ("Testing", "Te")):
        for k, cls in enumerate(["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"]):
            for i in range(per_class):
                save_image(root / split / cls / f"{prefix}-{k}_{i:04d}.jpg", hash((split, k, i)) % 10**6,
                           mode="L" if i % 2 else "RGB")
    save_image(root / "Testing" / "no_tumor" / ".ipynb_checkpoints" / "copy.jpg", 99)
    return root


def test_brain_mri_layout_with_old_spellings(tmp_path):
    table = load_dataset(make_brain(tmp_path / "brain"))
    assert table.layout == "brain_mri" and table.taxonomy.name == "brain_mri"
    assert table.class_counts() == {"glioma": 8, "meningioma": 8, "notumor": 8, "pituitary": 8}
    assert (table.samples["split"] == "test").sum() == 16
    assert not any(".ipynb_checkpoints" in i for i in ids(table))
    splits = make_splits(table, seed=0)
    test_ids = set(table.samples["id"].iloc[splits["test"]])
    assert test_ids == set(table.samples["id"][table.samples["split"] == "test"])
    assert all(i.startswith("Training/") for i in table.samples["id"].iloc[splits["val"]])


def make_breakhis(root: Path) -> Path:
    base = root / "BreaKHis_v1" / "histology_slides" / "breast"
    for kind, subtype, code in (("benign", "adenosis", "B_A"), ("malignant", "ductal_carcinoma", "M_DC")):
        for patient in ("14-22549AB", "14-11111"):
            for mag in (40, 100):
                for i in range(2):
                    name = f"SOB_{code}-{patient}-{mag}-{i:03d}.png"
                    save_image(base / kind / "SOB" / subtype / f"SOB_{code}_{patient}" / f"{mag}X" / name,
                               hash((subtype, patient, mag, i)) % 10**6)
    return root


def test_breakhis_layout_and_magnification(tmp_path):
    root = make_breakhis(tmp_path / "bk")
    table = load_dataset(root)
    assert table.layout == "breakhis" and table.taxonomy.name == "breakhis"
    assert len(table) == 16
    assert set(table.samples["group"]) == {"SOB_B_A_14-22549AB", "SOB_B_A_14-11111", "SOB_M_DC_14-22549AB",
                                           "SOB_M_DC_14-11111"}
    assert table.class_counts()["adenosis"] == 8 and table.class_counts()["ductal_carcinoma"] == 8
    only40 = load_dataset(root, magnification=40)
    assert len(only40) == 8 and all("/40X/" in i for i in ids(only40))
    with pytest.raises(ValueError, match="magnification"):
        load_dataset(root, magnification=50)
    with pytest.raises(ValueError, match="only applies to BreaKHis"):
        load_dataset(make_brain(tmp_path / "brain", 1), magnification=40)


def test_sicapv2_layout(tmp_path):
    root = tmp_path / "SICAPv2"
    grades = ("NC", "G3", "G4", "G5")
    # Slides 16B00<s><g>: two training slides per grade, one test slide per grade, two patches each.
    names = {(s, g): [f"16B00{s}{g}_Block_Region_{i}.jpg" for i in range(2)] for s in range(3) for g in range(4)}
    for seed, name in enumerate(n for group in names.values() for n in group):
        save_image(root / "images" / name, seed)

    def sheet(keys, path: Path):
        rows = [(name, grades[g]) for s, g in keys for name in names[(s, g)]]
        frame = pd.DataFrame({"image_name": [name for name, _ in rows]})
        for cls in (*grades, "G4C"):
            frame[cls] = [int(grade == cls) for _, grade in rows]
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_excel(path, index=False)

    sheet([(s, g) for s in (0, 1) for g in range(4)], root / "partition" / "Test" / "Train.xlsx")
    sheet([(2, g) for g in range(4)], root / "partition" / "Test" / "Test.xlsx")
    sheet([(0, 0)], root / "partition" / "Validation" / "Val1" / "Test.xlsx")  # not the final split
    table = load_dataset(root)
    assert table.layout == "sicapv2" and table.taxonomy.name == "sicapv2"
    assert len(table) == 24 and table.class_counts() == dict.fromkeys(grades, 6)
    test = table.samples[table.samples["split"] == "test"]
    assert sorted(test["id"]) == sorted(f"images/{n}" for g in range(4) for n in names[(2, g)])
    assert set(test["group"]) == {f"16B002{g}" for g in range(4)}
    splits = make_splits(table, seed=0)
    assert set(splits["test"]) == set(np.flatnonzero(table.samples["split"] == "test"))
    train_groups = set(table.samples["group"].iloc[splits["train"]])
    assert not train_groups & set(table.samples["group"].iloc[splits["val"]])


def test_generic_folders_need_a_taxonomy_unless_a_preset_fits(tmp_path):
    for k, cls in enumerate(["cat", "dog", "fox"]):
        for i in range(3):
            save_image(tmp_path / "pets" / cls / f"{i}.png", 10 * k + i)
    with pytest.raises(ValueError, match="--preset.*--taxonomy.*--malignant"):
        load_dataset(tmp_path / "pets")
    table = load_dataset(tmp_path / "pets", malignant=["fox"])
    assert table.taxonomy.classes == ("cat", "dog", "fox") and table.taxonomy.malignant == ("fox",)
    assert table.layout == "class_folders" and table.name == "pets"
    assert load_dataset(tmp_path / "pets", malignant="dog,fox").taxonomy.malignant == ("dog", "fox")
    custom = Taxonomy.from_malignant(["Fox", "Dog", "Cat", "Owl"], malignant=["Fox"])
    assert load_dataset(tmp_path / "pets", taxonomy=custom).class_counts() == {"Fox": 3, "Dog": 3, "Cat": 3, "Owl": 0}
    with pytest.raises(ValueError, match="'fox'"):
        load_dataset(tmp_path / "pets", taxonomy=Taxonomy.from_malignant(["cat", "dog"], ["dog"]))
    # Folder names that fit a preset (aliases, any case) choose it.
    for k, cls in enumerate(["Melanoma", "nevus"]):
        save_image(tmp_path / "skin" / cls / "x.png", 50 + k)
    skin = load_dataset(tmp_path / "skin")
    assert skin.taxonomy.name == "isic2018" and skin.class_counts()["MEL"] == 1


def test_generic_csv_and_wrapper_folder(tmp_path):
    for i in range(4):
        save_image(tmp_path / "imgs" / f"{i}.png", i)
    pd.DataFrame({"path": [f"imgs/{i}.png" for i in range(4)] + ["imgs/missing.png"],
                  "label": ["benign", "malignant", "benign", "malignant", "benign"],
                  "patient_id": ["p1", "p1", "p2", "p3", "p4"]}).to_csv(tmp_path / "labels.csv", index=False)
    table = load_dataset(tmp_path / "labels.csv", malignant=["malignant"])
    assert table.layout == "csv" and len(table) == 4
    assert table.samples["group"].tolist() == ["p1", "p1", "p2", "p3"]
    assert table.skipped == [("imgs/missing.png", "file not found")]
    # A zip that unpacked into a single wrapper folder is looked into.
    make_brain(tmp_path / "archive" / "inner", 1)
    assert load_dataset(tmp_path / "archive").layout == "brain_mri"


def test_clear_errors_for_missing_and_empty_folders(tmp_path):
    with pytest.raises(ValueError, match="dataset folder '.*nope' does not exist"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "hollow" / "a").mkdir(parents=True)
    (tmp_path / "hollow" / "b").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        load_dataset(tmp_path / "hollow", malignant=["a"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a .txt file"):
        load_dataset(tmp_path / "notes.txt")


# -- decoding, cache, prepare ------------------------------------------------------------------------
def test_load_rgb_converts_every_mode(tmp_path):
    for mode in ("L", "RGBA", "P", "I;16", "RGB"):
        image = load_rgb(save_image(tmp_path / f"{mode.replace(';', '')}.png", 1, mode=mode))
        assert image.mode == "RGB" and image.size == (12, 10)
    sixteen = np.asarray(load_rgb(tmp_path / "I16.png"))
    assert sixteen.max() > 128  # rescaled, not clipped to white or truncated to black
    data = (tmp_path / "RGB.png").read_bytes()
    assert load_rgb(data).mode == "RGB" and load_rgb(io.BytesIO(data)).mode == "RGB"
    for bad in (b"", b"not an image", data[: len(data) // 2]):
        with pytest.raises(ValueError, match="is not a readable image"):
            load_rgb(bad)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.jpg is not a readable image: the file is empty"):
        load_rgb(tmp_path / "empty.jpg")
    with pytest.raises(ValueError, match="is not a readable image"):
        load_rgb(tmp_path / "absent.jpg")


def test_resize_rgb_and_preprocess_match_training():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    pixels = resize_rgb(image, 16)
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8
    assert np.array_equal(resize_rgb(image.convert("L"), 8)[..., 0], resize_rgb(image.convert("L"), 8)[..., 2])
    tensor = preprocess(image, 16)
    assert tensor.shape == (1, 3, 16, 16) and tensor.dtype == torch.float32
    expected = (pixels / 255.0 - np.array(rcl.data.IMAGENET_MEAN)) / np.array(rcl.data.IMAGENET_STD)
    assert np.allclose(tensor[0].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    dataset = ImageArrayDataset(pixels[None], [0], train=False)
    assert torch.allclose(dataset[0][0], tensor[0])
    with pytest.raises(ValueError, match="image_size"):
        resize_rgb(image, 0)


def make_dirty_folder(root: Path) -> Path:
    for k, cls in enumerate(["a", "b", "m"]):
        for i in range(4):
            save_image(root / cls / f"{i}.png", 10 * k + i, size=(20, 16))
    (root / "a" / "corrupt.png").write_bytes((root / "a" / "0.png").read_bytes()[:40])
    (root / "b" / "empty.jpg").write_bytes(b"")
    (root / "m" / "text.jpg").write_text("this is not a jpeg")
    save_image(root / "m" / "gray.png", 7, mode="L")
    save_image(root / "m" / "palette.png", 8, mode="P")
    save_image(root / "m" / "alpha.png", 9, mode="RGBA")
    (root / "m" / "notes.txt").write_text("a note")
    return root


def test_unreadable_files_are_reported_and_dropped(tmp_path, toy_taxonomy):
    table = load_dataset(make_dirty_folder(tmp_path / "dirty"), taxonomy=toy_taxonomy)
    assert [Path(p).name for p, _ in table.skipped] == ["notes.txt"]
    assert len(table) == 18
    prepared = prepare(table, 8)
    bad = {Path(p).name: reason for p, reason in prepared.skipped}
    assert set(bad) == {"corrupt.png", "empty.jpg", "text.jpg"}
    assert bad["empty.jpg"] == "the file is empty"
    assert prepared.images.shape == (15, 8, 8, 3) and len(prepared.samples) == 15
    assert list(prepared.samples.index) == list(range(15))
    assert not prepared.samples["id"].str.contains("corrupt|empty|text").any()
    # images[i] is the image of samples row i
    row = int(np.flatnonzero(prepared.samples["id"] == "m/gray.png")[0])
    assert np.array_equal(prepared.images[row], resize_rgb(load_rgb(tmp_path / "dirty" / "m" / "gray.png"), 8))


def test_cache_is_reused_and_invalidated_by_changes(tmp_path, toy_taxonomy, monkeypatch):
    monkeypatch.setenv("RCL_CACHE", str(tmp_path / "cache"))
    table = load_dataset(make_dirty_folder(tmp_path / "d"), taxonomy=toy_taxonomy)
    first, skipped = cache_images(table, 8)
    assert isinstance(first, np.memmap) and len(skipped) == 3
    cached = sorted((tmp_path / "cache" / "images").glob("*.npy"))
    second, skipped_again = cache_images(table, 8)
    assert np.array_equal(first, second) and skipped_again == skipped
    assert sorted((tmp_path / "cache" / "images").glob("*.npy")) == cached  # reused
    subset, _ = cache_images(table, 8, indices=[0, 1])
    assert np.array_equal(subset, first[:2])
    changed = tmp_path / "d" / "a" / "0.png"
    save_image(changed, 1234, size=(20, 16))
    os.utime(changed, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    third, _ = cache_images(table, 8)
    assert not np.array_equal(third[0], first[0])
    assert not list((tmp_path / "cache" / "images").glob(".*"))  # no temporary files left


def test_parallel_decoding_matches_serial(tmp_path, toy_taxonomy, monkeypatch):
    table = load_dataset(make_dirty_folder(tmp_path / "d"), taxonomy=toy_taxonomy)
    monkeypatch.setenv("RCL_CACHE", str(tmp_path / "serial"))
    serial, serial_skipped = cache_images(table, 8, workers=1)
    monkeypatch.setenv("RCL_CACHE", str(tmp_path / "parallel"))
    monkeypatch.setattr(images_module, "PARALLEL_ABOVE", 0)
    monkeypatch.setattr(images_module, "_CHUNK", 4)
    parallel, parallel_skipped = cache_images(table, 8, workers=2)
    assert np.array_equal(serial, parallel) and serial_skipped == parallel_skipped


# -- splits ------------------------------------------------------------------------------------------
def toy_table(labels, groups=None, split=None, root=Path("/nowhere")) -> DatasetTable:
    rows = [(root / f"{i:05d}.png", int(label), None if groups is None else str(groups[i]),
             None if split is None else split[i]) for i, label in enumerate(labels)]
    taxonomy = Taxonomy.from_malignant([f"c{k}" for k in range(max(labels) + 1)], ["c0"], name="toy")
    return DatasetTable(name="toy", root=root, layout="test", taxonomy=taxonomy, samples=make_samples(root, rows))


def test_splits_are_stratified_deterministic_and_disjoint():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    table = toy_table(labels)
    splits = make_splits(table, 0.15, 0.15, seed=0)
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(1000))
    for name, rows in splits.items():
        share = np.bincount(labels[rows], minlength=3) / len(rows)
        assert np.allclose(share, [0.6, 0.3, 0.1], atol=0.02), name
    assert abs(len(splits["test"]) - 150) <= 3 and abs(len(splits["val"]) - 150) <= 3
    again = make_splits(table, 0.15, 0.15, seed=0)
    assert all(np.array_equal(splits[s], again[s]) for s in splits)
    other = make_splits(table, 0.15, 0.15, seed=1)
    assert not np.array_equal(splits["test"], other["test"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), min_size=30, max_size=200),
       st.integers(0, 1000))
def test_no_group_is_shared_between_splits(rows, seed):
    labels = [label for label, _ in rows]
    # A group keeps one label (a lesion has one diagnosis), as in the real data.
    groups = [f"g{group}-{label}" for label, group in rows]
    if max(labels) == 0:
        labels[0] = 1
    table = toy_table(labels, groups)
    try:
        splits = make_splits(table, 0.2, 0.2, seed=seed)
    except ValueError as exc:
        assert "too few samples" in str(exc)
        return
    owner = {}
    for name, idx in splits.items():
        for g in table.samples["group"].iloc[idx]:
            assert owner.setdefault(g, name) == name
    assert all(len(idx) > 0 for idx in splits.values())
    assert sum(len(idx) for idx in splits.values()) == len(labels)


def test_own_test_split_is_kept_and_val_comes_from_train():
    labels = np.repeat([0, 1], 50)
    split = ["test" if i % 5 == 0 else "train" for i in range(100)]
    splits = make_splits(toy_table(labels, split=split), val_fraction=0.2, test_fraction=0.4, seed=0)
    assert set(splits["test"]) == {i for i in range(100) if i % 5 == 0}
    assert len(splits["val"]) == 16 and not set(splits["val"]) & set(splits["test"])


def test_too_few_samples_is_a_clear_error():
    with pytest.raises(ValueError, match="too few samples"):
        make_splits(toy_table([0, 1]), 0.15, 0.15)
    with pytest.raises(ValueError, match="sum to less than 1"):
        make_splits(toy_table([0, 1] * 10), 0.5, 0.5)


def test_subsample_is_stratified_and_keeps_rare_classes():
    table = toy_table(np.repeat([0, 1, 2], [900, 95, 5]))
    small = subsample(table, 100, seed=0)
    counts = np.bincount(small.labels, minlength=3)
    assert counts.sum() == 100 and counts[2] >= 1 and 85 <= counts[0] <= 92
    assert subsample(table, 5000) is table


def test_cross_split_duplicates_are_dropped(tmp_path, toy_taxonomy):
    root = tmp_path / "dups"
    for k, cls in enumerate(["a", "b", "m"]):
        for i in range(10):
            save_image(root / "Training" / cls / f"{i}.png", 100 * k + i)
            save_image(root / "Testing" / cls / f"{i}.png", 1000 + 100 * k + i)
    copy = root / "Testing" / "m" / "copy.png"
    copy.write_bytes((root / "Training" / "m" / "3.png").read_bytes())
    Image.open(root / "Training" / "a" / "5.png").resize((40, 40)).save(root / "Testing" / "a" / "resized.jpg", quality=90)
    table = load_dataset(root, taxonomy=toy_taxonomy)
    splits = make_splits(table, seed=0)
    kept, dropped = drop_cross_split_duplicates(table, splits)
    assert dropped == {"exact": 1, "near": 0}  # near-duplicates need the decoded images
    images = [rcl.data.load_rgb(p) for p in table.samples["path"]]
    with_near, dropped = drop_cross_split_duplicates(table, splits, images)
    assert dropped == {"exact": 1, "near": 1}
    near_pair = [int(np.flatnonzero(table.samples["id"] == i)[0]) for i in ("Training/a/5.png", "Testing/a/resized.jpg")]
    assert sum(row in np.concatenate(list(with_near.values())) for row in near_pair) == 1  # one of the two kept
    assert sum(map(len, with_near.values())) == sum(map(len, splits.values())) - 2
    copy_row = int(np.flatnonzero(table.samples["id"] == "Testing/m/copy.png")[0])
    original_row = int(np.flatnonzero(table.samples["id"] == "Training/m/3.png")[0])
    holder = "train" if original_row in splits["train"] else "val"
    dropped_from = "test" if holder == "train" else "val"
    dropped_row = copy_row if holder == "train" else original_row
    assert dropped_row not in kept[dropped_from] and dropped_row in splits[dropped_from]
    report = audit(table, splits, near_duplicate_threshold=2)
    assert report.own_test_duplicates == 1
    assert report.exact_duplicates_across_splits[f"{holder}-test"] == 1
    assert sum(report.near_duplicates_across_splits.values()) == 1 and "near-duplicates" in report.to_text()
    json.dumps(report.to_dict())
    assert "byte-identical copy" in report.to_text()


# -- transforms --------------------------------------------------------------------------------------
def test_image_array_dataset_batches_and_augments():
    images, labels = generate(64, 32, seed=0)
    evaluation = ImageArrayDataset(images, labels, train=False, indices=np.arange(10, 20))
    x, y = evaluation[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and int(y) == labels[10]
    loader = torch.utils.data.DataLoader(ImageArrayDataset(images, labels, train=True), batch_size=16, shuffle=True)
    xb, yb = next(iter(loader))
    assert xb.shape == (16, 3, 32, 32) and yb.dtype == torch.int64
    torch.manual_seed(0)
    augmented, _ = ImageArrayDataset(images, labels, train=True).batch(range(8))
    plain, _ = ImageArrayDataset(images, labels, train=False).batch(range(8))
    assert augmented.shape == plain.shape and not torch.allclose(augmented, plain)
    # A flip-only augmentation (angle 0) is an exact pixel permutation.
    flipped = rcl.data.random_rotate_flip(plain, max_degrees=0.0)
    for a, b in zip(flipped, plain):
        assert any(torch.allclose(a, f, atol=1e-5) for f in (b, b.flip(-1), b.flip(-2), b.flip(-1).flip(-2)))



@settings(max_examples=25, deadline=None)
@given(strength=st.floats(0.0, 0.5), seed=st.integers(0, 2**16), grey=st.floats(10, 160))
def test_colour_jitter_stays_in_pixel_range_and_within_its_strength(strength, seed, grey):
    from rcl.data.transforms import random_colour_jitter

    generator = torch.Generator().manual_seed(seed)
    images = torch.from_numpy(generate(7, 16, seed=seed % 5)[0]).permute(0, 3, 1, 2).float()
    out = random_colour_jitter(images, strength, generator=generator)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    # A flat grey image has no contrast or colour to change: only brightness acts, by a factor
    # within [1 - strength, 1 + strength], and the image stays flat.
    flat = random_colour_jitter(torch.full((5, 3, 8, 8), grey), strength, generator=generator)
    assert torch.allclose(flat, flat[:, :1, :1, :1].expand_as(flat), atol=1e-3)
    factors = flat[:, 0, 0, 0] / grey
    assert bool(((factors >= 1 - strength - 1e-5) & (factors <= 1 + strength + 1e-5)).all())


def test_colour_jitter_of_strength_zero_is_the_identity():
    from rcl.data.transforms import random_colour_jitter

    images = torch.from_numpy(generate(7, 16, seed=0)[0]).permute(0, 3, 1, 2).float()
    assert torch.allclose(random_colour_jitter(images, 0.0), images, atol=1e-3)


def test_augment_policies_are_named_and_an_unknown_one_is_a_clear_error():
    images, labels = generate(8, 16, seed=0)
    plain, _ = ImageArrayDataset(images, labels, train=True, augment="none").batch(range(8))
    evaluation, _ = ImageArrayDataset(images, labels, train=False, augment="rotate_flip_colour").batch(range(8))
    assert torch.equal(plain, evaluation)  # no augmentation at all, and none at evaluation time
    with pytest.raises(ValueError, match="unknown augment 'sepia'; choose one of: none, rotate_flip"):
        ImageArrayDataset(images, labels, train=True, augment="sepia")

def test_zoom_magnifies_about_the_centre_and_no_zoom_is_the_old_transform():
    from rcl.data.transforms import random_rotate_flip

    # A centred bright square grows under magnification and never shrinks; the centre stays put.
    square = torch.zeros(16, 1, 32, 32)
    square[:, :, 12:20, 12:20] = 255.0
    zoomed = random_rotate_flip(square, max_degrees=0.0, max_zoom=0.5, generator=torch.Generator().manual_seed(0))
    area = (zoomed > 127).sum(dim=(1, 2, 3))
    assert bool((area >= 64).all()) and bool((area > 64).any()) and bool((zoomed[:, 0, 15, 15] > 127).all())
    # max_zoom 0 draws nothing more: the same generator state gives the same batch as before zoom existed.
    plain = random_rotate_flip(square, generator=torch.Generator().manual_seed(3))
    assert torch.equal(plain, random_rotate_flip(square, generator=torch.Generator().manual_seed(3), max_zoom=0.0))


@settings(max_examples=30, deadline=None)
@given(counts=st.lists(st.integers(1, 200), min_size=2, max_size=7))
def test_sqrt_balanced_draws_each_class_in_proportion_to_the_root_of_its_size(counts):
    from rcl.data.sampling import sample_weights

    labels = np.repeat(np.arange(len(counts)), counts)
    weights = sample_weights(labels, "sqrt_balanced")
    per_class = np.bincount(labels, weights=weights)
    assert np.allclose(per_class / per_class.sum(), np.sqrt(counts) / np.sqrt(counts).sum())
    assert sample_weights(labels, "shuffle") is None
    with pytest.raises(ValueError, match="sampling must be one of: shuffle, sqrt_balanced; got 'balanced'"):
        sample_weights(labels, "balanced")


def test_a_sqrt_balanced_loader_shows_the_rare_class_more_often_and_reproducibly():
    from rcl.config import TrainConfig
    from rcl.engine import RunData, make_loader

    images = np.zeros((400, 8, 8, 3), np.uint8)
    labels = np.array([0] * 390 + [1] * 10)
    run_data = RunData(taxonomy=None, images=images, labels=labels, ids=np.arange(400).astype(str),
                       splits={"train": np.arange(400)}, info={})

    def rare_share(sampling: str, seed: int) -> tuple[float, list]:
        config = TrainConfig(sampling=sampling, batch_size=50, augment="none")
        loader = make_loader(run_data, "train", config, torch.device("cpu"), torch.Generator().manual_seed(seed))
        drawn = torch.cat([y for _, y in loader])
        return float((drawn == 1).float().mean()), drawn.tolist()

    shuffled, _ = rare_share("shuffle", 0)
    balanced, first = rare_share("sqrt_balanced", 0)
    assert shuffled == pytest.approx(10 / 400)  # every image once
    assert 0.08 < balanced < 0.25  # expected √10 / (√390 + √10) ≈ 0.14
    assert rare_share("sqrt_balanced", 0)[1] == first and rare_share("sqrt_balanced", 1)[1] != first


# -- audit and CLI -----------------------------------------------------------------------------------
def test_audit_reports_counts_groups_and_unreadable(tmp_path, toy_taxonomy):
    table = load_dataset(make_dirty_folder(tmp_path / "dirty"), taxonomy=toy_taxonomy)
    report = audit(table, seed=0)
    assert sum(sum(c.values()) for c in report.class_counts.values()) == len(table)
    assert {Path(p).name for p, _ in report.unreadable} == {"corrupt.png", "empty.jpg", "text.jpg"}
    assert report.n_groups is None and report.split_source == "rcl"
    data = json.loads(json.dumps(report.to_dict()))
    assert data["classes"] == ["a", "b", "m"] and "unreadable files: 3" in report.to_text()


def test_cli_audit_synthetic_json(capsys):
    from rcl.cli import main

    assert main(["audit", "synthetic", "--json", "--no-near"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["synthetic"] is True and data["n_images"] == 3000 and data["classes"][0] == "MEL"
    assert main(["audit", "/definitely/not/here"]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- learnability of the synthetic task ---------------------------------------------------------------
@pytest.mark.slow
def test_small_cnn_learns_synthetic_but_misses_some_melanomas():
    """The synthetic set must be learnable yet not separable: a plain CE model beats chance by far
    and still calls some malignant lesions benign (non-zero CER), which is what RCL is about."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is as fast, and immune to busy CI neighbours
    try:
        result = _train_small_cnn()
    finally:
        torch.set_num_threads(threads)
    print(f"synthetic small CNN: accuracy {result.accuracy:.3f}, F1 {result.f1_macro:.3f}, CER {result.cer:.3f}")
    assert result.accuracy > 0.6
    assert result.f1_macro > 0.3  # a constant "NV" answer scores 0.11
    assert result.cer is not None and 0 < result.cer < 1


def _train_small_cnn() -> rcl.Evaluation:
    torch.manual_seed(0)
    images, labels = generate(1500, 32, seed=11)
    train, test = np.arange(1000), np.arange(1000, 1500)

    def block(cin, cout):
        return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.BatchNorm2d(cout),
                                   torch.nn.ReLU(), torch.nn.MaxPool2d(2))

    model = torch.nn.Sequential(block(3, 16), block(16, 32), block(32, 64), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(64, 7))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = torch.utils.data.DataLoader(ImageArrayDataset(images, labels, train=True, indices=train),
                                         batch_size=64, shuffle=True)
    for _ in range(5):
        model.train()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    x_test, y_test = ImageArrayDataset(images, labels, train=False, indices=test).batch(range(len(test)))
    with torch.no_grad():
        predictions = model(x_test).argmax(1).numpy()
    return rcl.evaluate(y_test.numpy(), predictions, rcl.preset("isic2018"))


def test_near_duplicates_need_the_same_colours_not_only_a_close_phash():
    from rcl.data.splits import near_duplicates, perceptual_hashes

    lesion = generate(7, 64, seed=2)[0][0]
    tinted = lesion.astype(np.int64)  # redder and less green at the same grey level (0.299 R + 0.587 G)
    tinted[..., 0] += 40
    tinted[..., 1] -= 20
    tinted = np.clip(tinted, 0, 255).astype(np.uint8)
    copy = np.asarray(Image.fromarray(lesion).resize((90, 90)).resize((64, 64)))  # resized there and back
    hashes = perceptual_hashes([lesion, copy, tinted])
    same, matched, distance = near_duplicates(hashes, np.array([1, 2]), np.array([0]))
    assert distance.max() <= 2 and matched.tolist() == [0, 0]  # both within the pHash threshold
    assert same.tolist() == [False, True, False]  # only the copy has the same colours
