"""Triage answers: a class, "refer: uncertain" or "refer: unfamiliar image"; the image gate; the
bundled examples with the demo model; and the figures with abstention."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import rcl
from rcl.answers import REFER_UNCERTAIN, REFER_UNFAMILIAR, answer_codes, run_answers
from rcl.ood import image_gate
from rcl.referral import BENIGN_CEILING, uncertain
from rcl.taxonomy import preset

ISIC = preset("isic2018")
CRITICAL = np.asarray(ISIC.is_critical)
ASSETS = sorted((ROOT / "assets").glob("synthetic_*.png"))


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


FOREIGN = {
    "uniform noise": lambda rng: png(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)),
    "blank": lambda rng: png(np.full((120, 120, 3), 200, dtype=np.uint8)),
    "16-bit noise": lambda rng: png(rng.integers(0, 65536, (150, 150), dtype=np.uint16)),
}


# --- the image gate -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(FOREIGN))
def test_gate_refuses_noise_and_blank(kind):
    picture = rcl.read_image(FOREIGN[kind](np.random.default_rng(0)))
    assert image_gate(picture) == ("blank image" if kind == "blank" else "random noise")


def test_gate_passes_every_synthetic_image_and_the_examples():
    from rcl.data.synthetic import generate

    images, _ = generate(n=300, image_size=64, seed=9)
    assert [image_gate(i) for i in images] == [None] * 300
    assert [image_gate(rcl.read_image(p.read_bytes())) for p in ASSETS] == [None] * 7


def test_bundled_examples_are_drawn_like_the_bundled_set():
    from rcl.data.synthetic import IMAGE_SIZE

    examples = rcl.example_images()
    assert [p.stem.removeprefix("synthetic_") for p in ASSETS] == sorted(examples)
    for path in ASSETS:
        stored = np.asarray(Image.open(path).convert("RGB"))
        assert stored.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)  # resized by a model as its training images were
        np.testing.assert_array_equal(stored, examples[path.stem.removeprefix("synthetic_")])


# --- answers ----------------------------------------------------------------------------------------

def extras(low=0.2, high=0.4, scale=0.0) -> dict:
    rule = {"low": low, "high": high, "classes": list(ISIC.classes), "critical": list(ISIC.is_critical),
            "target_cer": 0.05, "met_target": True, "coverage": 0.9, "cer_accepted": 0.04, "decision_matrix": None}
    return {"calibration": {"temperature": 1.0}, "decision": {"scale": scale}, "referral": {"rule": rule}}


def test_likely_malignancy_decided_benign_is_referred_not_sent_home():
    """The issue's case: scale 0 (argmax), P(malignant) 0.61 spread over three classes, NV on top."""
    probs = np.array([[0.21, 0.39, 0.20, 0.20, 0.0, 0.0, 0.0]]) + 1e-9
    answers = run_answers(extras(), rcl.severity_matrix(ISIC), ISIC, np.log(probs))
    assert answers.decisions[0] == ISIC.index("NV") and answers.p_malignant[0] == pytest.approx(0.61)
    assert answers.codes[0] == REFER_UNCERTAIN
    assert "no extra re-weighting" in answers.decision  # scale 0 in plain words


def test_three_kinds_of_answer():
    logits = np.log(np.array([[0.90, 0.04, 0.02, 0.02, 0.01, 0.005, 0.005],   # MEL, p=0.94: decided
                              [0.01, 0.95, 0.01, 0.01, 0.01, 0.005, 0.005],   # NV, p=0.03: decided
                              [0.15, 0.70, 0.05, 0.05, 0.03, 0.01, 0.01],     # p=0.25 in the band
                              [0.01, 0.95, 0.01, 0.01, 0.01, 0.005, 0.005]]))  # unfamiliar
    answers = run_answers(extras(), rcl.severity_matrix(ISIC), ISIC, logits, unfamiliar=[0, 0, 0, 1])
    assert answers.codes.tolist() == [ISIC.index("MEL"), ISIC.index("NV"), REFER_UNCERTAIN, REFER_UNFAMILIAR]
    texts = [rcl.answers.answer_of(c, ISIC.classes, "r").text for c in answers.codes]
    assert texts == ["MEL", "NV", "refer: uncertain", "refer: unfamiliar image"]
    with pytest.raises(ValueError, match="exactly when it is a decision"):
        rcl.Answer("refer: uncertain", "MEL", "r")


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), low=st.floats(0, 1), width=st.floats(0, 1), no_band=st.booleans())
def test_no_benign_answer_above_the_band(seed, low, width, no_band):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(7, 0.3), size=50)
    decisions = rng.integers(0, 7, 50)
    band = (None, None) if no_band else (low, min(low + width, 1.0))
    p = probs[:, CRITICAL].sum(axis=1)
    codes = answer_codes(decisions, uncertain(p, ~CRITICAL[decisions], *band))
    answered_benign = (codes >= 0) & ~CRITICAL[np.maximum(codes, 0)]
    ceiling = BENIGN_CEILING if no_band else band[1]
    assert (p[answered_benign] <= ceiling).all()
    if not no_band:
        assert (codes[(p >= band[0]) & (p <= band[1])] == REFER_UNCERTAIN).all()


# --- figures with abstention --------------------------------------------------------------------

def test_abstention_report_by_hand():
    mel, nv = ISIC.index("MEL"), ISIC.index("NV")
    labels = [mel, mel, mel, mel, nv, nv, nv, nv]
    codes = [mel, nv, REFER_UNCERTAIN, REFER_UNFAMILIAR, nv, nv, REFER_UNCERTAIN, mel]
    report = rcl.abstention_report(labels, codes, ISIC, "argmax", n_resamples=200)
    assert report["coverage"]["value"] == pytest.approx(5 / 8)
    assert report["cer_answered"]["value"] == pytest.approx(1 / 2)  # answered malignant: one found, one missed
    assert report["cer_if_sent_home"]["value"] == pytest.approx(3 / 4)  # plus the two referred melanomas
    assert report["accuracy_answered"]["value"] == pytest.approx(3 / 5)
    assert (report["n_answered"], report["n_refer_uncertain"], report["n_refer_unfamiliar"],
            report["malignant_referred"]) == (5, 2, 1, 2)
    for name in ("coverage", "cer_if_sent_home"):
        assert report[name]["low"] <= report[name]["value"] <= report[name]["high"]
    with pytest.raises(ValueError, match="codes must be class indices"):
        rcl.abstention_report([0], [-5], ISIC, "argmax")


# --- triage of whole images with the demo model -----------------------------------------------------

@pytest.fixture(scope="module")
def demo_model(tmp_path_factory, shared_cache):
    """A model trained exactly by the Home page's demo button config."""
    from rcl.runs import load_model
    from rcl.train import run_training

    home = tmp_path_factory.mktemp("demo_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RCL_HOME", str(home))
        mp.setenv("RCL_CACHE", str(shared_cache))
        run_training(rcl.demo_config(), home / "demo")
    return load_model(home / "demo")


@pytest.mark.parametrize("path", ASSETS, ids=lambda p: p.stem)
def test_bundled_examples_are_familiar_to_the_demo_model(demo_model, path):
    result = rcl.triage_image(demo_model, path.read_bytes())
    assert not result.unfamiliar and result.answer.kind != "refer: unfamiliar image", result.answer.reason
    assert result.trusted


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_foreign_images_are_referred_with_no_class(demo_model, kind):
    result = rcl.triage_image(demo_model, FOREIGN[kind](np.random.default_rng(1)))
    assert result.unfamiliar and not result.trusted
    assert result.answer.text == "refer: unfamiliar image" and result.answer.label is None
    assert result.decision is None
    assert result.to_dict()["answer"]["referred"] and result.to_dict()["probabilities_trusted"] is False
