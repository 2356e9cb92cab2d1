from types import SimpleNamespace

import numpy as np
import pytest

from rcl.labels.illusion import illusion_of_accuracy
from rcl.labels.noise import NoiseSpec, flip_labels
from rcl.taxonomy import preset

ISIC = preset("isic2018")


def _run(labels, predictions):
    probs = np.eye(ISIC.num_classes)[predictions]
    stored = {"labels": labels, "probs": probs, "ids": np.array([f"s{i}" for i in range(labels.size)])}
    return SimpleNamespace(id="fake", taxonomy=ISIC, predictions=lambda split: stored)


LABELS = np.random.default_rng(0).choice(ISIC.num_classes, 600, p=[0.2, 0.5, 0.1, 0.05, 0.1, 0.03, 0.02])


def test_a_model_that_learnt_the_noise_looks_perfect_on_noisy_labels():
    noisy, flipped = flip_labels(LABELS, ISIC, NoiseSpec("miss", 0.2), seed=4)
    result = illusion_of_accuracy(_run(LABELS, noisy), "miss:0.2", seed=4)
    assert result["noise"]["flipped"] == flipped.size == round(0.2 * np.isin(LABELS, [0, 2, 3]).sum())
    assert result["noisy"]["accuracy"]["value"] == 1.0 and result["noisy"]["cer"]["value"] == 0.0
    assert result["clean"]["accuracy"]["value"] == pytest.approx(1 - flipped.size / LABELS.size)
    assert result["clean"]["cer"]["value"] == pytest.approx(flipped.size / result["clean"]["n_malignant"])
    assert result["noisy"]["n_malignant"] == result["clean"]["n_malignant"] - flipped.size


def test_alarm_noise_charges_a_correct_model_with_misses():
    result = illusion_of_accuracy(_run(LABELS, LABELS), "alarm:0.1", seed=0)
    flipped = result["noise"]["flipped"]
    assert result["clean"]["cer"]["value"] == 0.0
    assert result["noisy"]["cer"]["value"] == pytest.approx(flipped / (result["clean"]["n_malignant"] + flipped))
    assert result["decision_rule"].startswith("argmax")


def test_bad_rule_is_one_clear_line():
    with pytest.raises(ValueError, match="unknown kind 'flip'"):
        illusion_of_accuracy(_run(LABELS, LABELS), "flip:0.1")
