import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rcl.config import TrainConfig
from rcl.labels.noise import NoiseSpec, apply_label_noise, flip_labels, parse_noise
from rcl.taxonomy import preset

ISIC = preset("isic2018")  # MEL, NV, BCC, AKIEC, BKL, DF, VASC; malignant: MEL, BCC, AKIEC
CRITICAL = np.asarray(ISIC.is_critical)


def _labels(n=1000, seed=0):
    return np.random.default_rng(seed).integers(0, ISIC.num_classes, n)


@given(kind=st.sampled_from(["symmetric", "miss", "alarm"]), rate=st.floats(0, 0.99), seed=st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_flips_exactly_the_requested_share_and_kind(kind, rate, seed):
    labels = _labels()
    among = np.arange(0, 1000, 2)  # the "train split": even indices only
    noisy, flipped = flip_labels(labels, ISIC, NoiseSpec(kind, rate), seed, among)
    eligible = {"symmetric": np.ones(500, bool), "miss": CRITICAL[labels[among]], "alarm": ~CRITICAL[labels[among]]}[kind]
    assert flipped.size == round(rate * eligible.sum())
    changed = np.flatnonzero(noisy != labels)
    np.testing.assert_array_equal(changed, flipped)
    assert np.all(flipped % 2 == 0)  # never outside the given samples
    if kind == "miss":
        assert CRITICAL[labels[flipped]].all() and not CRITICAL[noisy[flipped]].any()
    if kind == "alarm":
        assert not CRITICAL[labels[flipped]].any() and CRITICAL[noisy[flipped]].all()


def test_reproducible_per_seed_and_different_across_seeds():
    labels = _labels()
    a = flip_labels(labels, ISIC, NoiseSpec("symmetric", 0.2), seed=3)
    b = flip_labels(labels, ISIC, NoiseSpec("symmetric", 0.2), seed=3)
    c = flip_labels(labels, ISIC, NoiseSpec("symmetric", 0.2), seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])


def test_miss_targets_follow_benign_class_frequencies():
    labels = np.array([0] * 2000 + [1] * 6000 + [4] * 2000)  # MEL, NV, BKL
    noisy, flipped = flip_labels(labels, ISIC, NoiseSpec("miss", 0.5), seed=0)
    assert flipped.size == 1000
    share_nv = np.mean(noisy[flipped] == 1)
    assert 0.7 < share_nv < 0.8  # NV is 6000 of the 8000 benign labels: 75 %


def test_record_names_every_flip():
    labels = _labels(200)
    ids = np.array([f"img{i}.png" for i in range(200)])
    noisy, record = apply_label_noise(labels, ids, np.arange(100), "miss:0.25", ISIC, seed=1)
    flipped_ids = {s["id"] for s in record["samples"]}
    assert flipped_ids == {ids[i] for i in np.flatnonzero(noisy != labels)}
    assert record["flipped"] == round(0.25 * record["eligible"]) == len(record["samples"])
    assert record["eligible"] == int(CRITICAL[labels[:100]].sum())
    assert all(ISIC.index(s["given"]) != ISIC.index(s["true"]) for s in record["samples"])
    json.dumps(record)
    same, none = apply_label_noise(labels, ids, None, None, ISIC, seed=1)
    assert none is None and np.array_equal(same, labels)


@pytest.mark.parametrize("text, message", [
    ("flip:0.1", "unknown kind 'flip'; choose one of: symmetric, miss, alarm"),
    ("miss:1", "rate must be a number in [0, 1)"),
    ("miss:-0.1", "rate must be a number in [0, 1)"),
    ("miss:abc", "rate must be a number in [0, 1)"),
    ("miss", "label noise must be KIND:RATE"),
])
def test_bad_rules_are_one_clear_line(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_noise(text)
    with pytest.raises(ValueError, match="label noise"):
        TrainConfig(label_noise=text).check()


def test_cli_reports_a_bad_noise_kind_in_one_line(capsys):
    from rcl.cli import main

    assert main(["train", "--label-noise", "flip:0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rcl train: error: label noise: unknown kind 'flip'; choose one of: symmetric, miss, alarm"]


@pytest.mark.slow
def test_training_flips_train_labels_only_and_records_them(tmp_path):
    from rcl.labels.noise import NOISE_FILE
    from rcl.train import load_run_data, run_training

    config = TrainConfig(label_noise="miss:0.2", limit=300, epochs=1, max_steps=2, image_size=32, seed=5)
    clean = load_run_data(TrainConfig(limit=300, image_size=32, seed=5))
    noisy = load_run_data(config)
    changed = np.flatnonzero(clean.labels != noisy.labels)
    assert set(changed) <= set(noisy.splits["train"])
    train_malignant = CRITICAL[clean.labels[clean.splits["train"]]].sum()
    assert changed.size == round(0.2 * train_malignant) > 0
    run_training(config, tmp_path)
    record = json.loads((tmp_path / NOISE_FILE).read_text())
    assert sorted(s["id"] for s in record["samples"]) == sorted(clean.ids[changed])
    assert json.loads((tmp_path / "config.json").read_text())["train"]["label_noise"] == "miss:0.2"
    with np.load(tmp_path / "predictions.npz") as stored:
        test_index = clean.splits["test"]
        assert np.array_equal(stored["test_labels"], clean.labels[test_index])  # test labels stay clean
