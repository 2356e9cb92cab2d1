"""Grad-CAM and the referral flag of rcl.triage, for a CNN (SmallCNN, ResNet) and a ViT."""

from __future__ import annotations

import io

import numpy as np
import pytest
import timm
from PIL import Image

from rcl.decision import decide
from rcl.models import make_model
from rcl.runs import LoadedModel
from rcl.severity import severity_matrix
from rcl.taxonomy import preset


def lesion_bytes() -> bytes:
    """A synthetic lesion (passes the image gate, unlike noise)."""
    from rcl.data.synthetic import generate

    buffer = io.BytesIO()
    Image.fromarray(generate(n=7, image_size=48, seed=1)[0][0]).save(buffer, format="PNG")
    return buffer.getvalue()


def image_bytes(size: int = 48) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def loaded(model, image_size: int, card: dict | None = None) -> LoadedModel:
    taxonomy = preset("isic2018")
    return LoadedModel(model.eval(), taxonomy, severity_matrix(taxonomy), image_size, type(model).__name__,
                       None, card or {"dataset": {"synthetic": True}})


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_gradcam_cnn(name):
    from rcl.triage import cam_target_layer, gradcam

    model = make_model(name, 7)
    layer, reshape = cam_target_layer(model)
    assert reshape is None
    assert layer is (model.features[-1] if name == "small_cnn" else model.layer4)
    overlay = gradcam(loaded(model, 32), image_bytes(), target="MEL")
    assert overlay.shape == (32, 32, 3) and overlay.dtype == np.uint8
    assert overlay.std() > 0


def test_gradcam_vit():
    from rcl.triage import cam_target_layer, gradcam

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=7, img_size=32)
    layer, reshape = cam_target_layer(model)
    assert layer is model.blocks[-1].norm1 and reshape is not None
    overlay = gradcam(loaded(model, 32), image_bytes())
    assert overlay.shape == (32, 32, 3) and overlay.dtype == np.uint8


def test_gradcam_rejects_bad_target_and_bad_image():
    from rcl.triage import gradcam

    model = loaded(make_model("small_cnn", 7), 32)
    with pytest.raises(ValueError):
        gradcam(model, image_bytes(), target=99)
    with pytest.raises(ValueError):
        gradcam(model, b"not an image at all")


def test_triage_refers_with_the_fallback_band_or_the_stored_rule():
    from rcl.referral import fit_referral
    from rcl.triage import triage

    picture = lesion_bytes()
    model = loaded(make_model("small_cnn", 7), 32)
    result = triage(model, picture)
    assert "fixed band" in result.referral_rule and not result.unfamiliar  # no detector; the gate passes it
    probs = np.array([list(result.probabilities.values())])
    decision = decide(probs, model.matrix)[0]
    p = result.malignant_probability
    expected = 0.10 <= p <= 0.90 or (not model.taxonomy.is_critical[decision] and p > 0.90)
    assert (result.answer.kind == "refer: uncertain") == expected
    assert result.decision == (None if expected else model.taxonomy.classes[decision])

    taxonomy = preset("isic2018")
    rng = np.random.default_rng(0)
    labels = np.arange(210) % 7
    probs = rng.dirichlet(np.ones(7), size=210)
    probs[np.arange(210), labels] += 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    rule = fit_referral(probs, labels, taxonomy, target_cer=0.05)
    stored = loaded(make_model("small_cnn", 7), 32, {"dataset": {}, "extras": {"referral": {"rule": rule.to_dict()}}})
    assert "the run's referral rule, fitted on validation" in triage(stored, picture).referral_rule
