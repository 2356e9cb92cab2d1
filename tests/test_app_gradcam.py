"""Grad-CAM and the referral flag of rcl.triage, for a CNN (SmallCNN, ResNet) and a ViT."""

from __future__ import annotations

import io

import numpy as np
import pytest
import timm
from PIL import Image

from rcl.models import make_model
from rcl.runs import LoadedModel
from rcl.severity import severity_matrix
from rcl.taxonomy import preset


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


def test_referral_default_band_and_stored_rule():
    from rcl.referral import fit_referral
    from rcl.triage import REFERRAL_BAND, referral, triage

    model = loaded(make_model("small_cnn", 7), 32)
    result = triage(model, image_bytes())
    flag = referral(model, result)
    low, high = REFERRAL_BAND
    assert flag["refer"] == (low <= result.malignant_probability <= high)
    assert "default band" in flag["rule"]

    taxonomy = preset("isic2018")
    rng = np.random.default_rng(0)
    labels = np.arange(210) % 7
    probs = rng.dirichlet(np.ones(7), size=210)
    probs[np.arange(210), labels] += 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    rule = fit_referral(probs, labels, taxonomy, target_cer=0.05)
    stored = loaded(make_model("small_cnn", 7), 32, {"dataset": {}, "extras": {"referral": rule.to_dict()}})
    flag = referral(stored, result)
    assert "fitted referral rule" in flag["rule"]
    assert isinstance(flag["refer"], bool)
