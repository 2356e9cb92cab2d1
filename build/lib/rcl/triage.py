"""Single-image triage: class probabilities, the malignant-superclass probability, the argmax class,
and the risk-calibrated (Bayes minimum-risk) decision with the expected cost of every option.

Research tool, not a diagnostic device. Inputs are untrusted uploads: size-limited, decoded
through the same ``load_rgb``/``preprocess`` path as training, and any failure is a plain
``ValueError``.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rcl.calibration import apply_temperature
from rcl.data import load_rgb, preprocess
from rcl.decision import decide, expected_costs, scaled_matrix
from rcl.runs import LoadedModel

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
UNFAMILIAR = "unfamiliar image: refer (unlike the model's training data)"
STACKING = ("this model was trained with a cost-sensitive loss: a Bayes decision under the full matrix "
            "applies the same costs twice (the model's own default uses a scale tuned on validation)")
DISCLAIMER = "Research tool, not a diagnostic device: never use it to make a clinical decision."


@dataclass
class TriageResult:
    probabilities: dict[str, float]
    argmax: str
    malignant_probability: float
    decision: str  # Bayes minimum-risk class under the matrix
    expected_costs: dict[str, float]
    matrix_source: str
    unfamiliar: bool = False  # out-of-distribution score above the run's validation threshold
    flags: list[str] = field(default_factory=list)  # e.g. "trained on synthetic images"

    def to_dict(self) -> dict:
        return asdict(self)


def read_image(image) -> object:
    """A PIL RGB image from a path, bytes or file-like upload, with a size limit."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"image {str(path)!r} does not exist")
        if path.stat().st_size > MAX_UPLOAD_BYTES:
            raise ValueError(f"image {path.name!r} is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
        return load_rgb(path)
    data = image if isinstance(image, bytes) else image.read()
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(f"the upload is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    if not data:
        raise ValueError("the upload is empty")
    return load_rgb(io.BytesIO(data))


@torch.no_grad()
def forward(loaded: LoadedModel, image) -> tuple[np.ndarray, np.ndarray]:
    """Logits (K,) and penultimate features (1, D) of one image, from one backbone pass through
    the training preprocessing."""
    tensor = preprocess(read_image(image), loaded.image_size)
    device = next(loaded.model.parameters()).device
    feature_map = loaded.model.forward_features(tensor.to(device))
    logits = loaded.model.forward_head(feature_map).float().cpu().numpy()[0]
    pooled = loaded.model.forward_head(feature_map, pre_logits=True).float().cpu().numpy()
    return logits, pooled


def default_decision_matrix(loaded: LoadedModel) -> tuple[np.ndarray, str]:
    """The run's own decision matrix: its training matrix, scaled by the factor tuned on validation
    when the run was trained with a cost-sensitive loss (so the costs are not applied twice)."""
    decision = loaded.card.get("extras", {}).get("decision", {})
    scale = float(decision.get("scale", 1.0))
    if scale == 1.0:
        return loaded.matrix, "the model's training matrix"
    return scaled_matrix(loaded.matrix, scale), f"the model's matrix at scale {scale:.3g}, tuned on validation"


def triage(loaded: LoadedModel, image, matrix=None) -> TriageResult:
    """Predict one image; ``matrix`` (default: the run's own decision matrix) drives the
    risk-calibrated decision, on temperature-calibrated probabilities when the run has them."""
    logits, features = forward(loaded, image)
    temperature = loaded.card.get("extras", {}).get("calibration", {}).get("temperature", 1.0)
    probs = apply_temperature(logits[None, :], temperature)[0]
    taxonomy = loaded.taxonomy
    flags = []
    if matrix is None:
        matrix, matrix_source = default_decision_matrix(loaded)
    else:
        matrix_source = "current matrix"
        if loaded.cost_sensitive:
            flags.append(STACKING)
    costs = expected_costs(probs[None, :], matrix)[0]
    decision = int(decide(probs[None, :], matrix)[0])
    unfamiliar = bool(loaded.ood is not None and loaded.ood.flag(features)[0])
    if unfamiliar:
        flags.append(UNFAMILIAR)
    if loaded.synthetic:
        flags.append("trained on synthetic images: meaningless on real patients")
    return TriageResult(
        probabilities={c: float(p) for c, p in zip(taxonomy.classes, probs)},
        argmax=taxonomy.classes[int(probs.argmax())],
        malignant_probability=float(probs[np.asarray(taxonomy.is_critical)].sum()),
        decision=taxonomy.classes[decision],
        expected_costs={c: float(v) for c, v in zip(taxonomy.classes, costs)},
        matrix_source=matrix_source,
        unfamiliar=unfamiliar,
        flags=flags,
    )


# --- Grad-CAM -------------------------------------------------------------------------------------

_CAM_LOCK = threading.Lock()  # hooks are registered on the shared (cached) model: one CAM at a time


def _vit_reshape(model) -> Callable | None:
    """Tokens (B, prefix + h·w, C) → (B, C, h, w) for a timm ViT, or None when ``model`` is not one."""
    patch_embed = getattr(model, "patch_embed", None)
    grid = getattr(patch_embed, "grid_size", None)
    if grid is None or not hasattr(model, "blocks"):
        return None
    prefix = int(getattr(model, "num_prefix_tokens", 1))

    def reshape(tensor: torch.Tensor) -> torch.Tensor:
        b, n, c = tensor.shape
        h, w = grid
        if n - prefix != h * w:  # dynamic image size: infer a square grid
            h = w = int(round((n - prefix) ** 0.5))
        return tensor[:, prefix:, :].reshape(b, h, w, c).permute(0, 3, 1, 2)

    return reshape


def cam_target_layer(model) -> tuple[torch.nn.Module, Callable | None]:
    """The layer Grad-CAM reads, and the reshape transform it needs (ViT tokens), chosen generically.

    ViT (timm): the last block's ``norm1`` with a token → grid reshape (pytorch-grad-cam's ViT
    recipe). The project's SmallCNN: ``features[-1]``. Other timm CNNs: the module named by the last
    ``feature_info`` entry (``layer4`` for ResNets). Anything else: the last ``Conv2d``.
    """
    reshape = _vit_reshape(model)
    if reshape is not None:
        return model.blocks[-1].norm1, reshape
    features = getattr(model, "features", None)
    if isinstance(features, torch.nn.Sequential) and len(features) and hasattr(model, "get_classifier"):
        return features[-1], None
    info = getattr(model, "feature_info", None)
    if info:
        try:
            last = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
            return model.get_submodule(last), None
        except (AttributeError, KeyError, IndexError, TypeError):
            pass
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise ValueError(f"no layer for Grad-CAM found in {type(model).__name__}")
    return convs[-1], None


def gradcam(loaded: LoadedModel, image, target: int | str | None = None) -> np.ndarray:
    """Grad-CAM heatmap of ``target`` (class index or name; default: the argmax class) over the image.

    Returns an (H, W, 3) uint8 RGB overlay at the model's input resolution: the image as the model
    sees it (resized square), with the class-activation map blended on top (jet colour map).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    picture = read_image(image)
    tensor = preprocess(picture, loaded.image_size)
    device = next(loaded.model.parameters()).device
    if isinstance(target, str):
        target = loaded.taxonomy.index(target)
    if target is not None and not 0 <= int(target) < loaded.taxonomy.num_classes:
        raise ValueError(f"target class {target} is out of range for {loaded.taxonomy.num_classes} classes")
    layer, reshape = cam_target_layer(loaded.model)
    targets = None if target is None else [ClassifierOutputTarget(int(target))]
    with _CAM_LOCK, torch.enable_grad(), GradCAM(model=loaded.model, target_layers=[layer],
                                                 reshape_transform=reshape) as cam:
        heat = cam(input_tensor=tensor.to(device), targets=targets)[0]
    size = loaded.image_size
    base = np.asarray(picture.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0)
    if heat.shape != (size, size):
        heat = np.asarray(Image.fromarray(heat).resize((size, size), Image.BILINEAR), dtype=np.float32)
    return show_cam_on_image(base, np.clip(heat, 0, 1), use_rgb=True, image_weight=0.55)


# --- referral ---------------------------------------------------------------------------------------

# Fallback when the model carries no fitted referral rule: refer to a clinician unless the model is
# at least 90% sure either way about malignancy, i.e. when P(malignant) is in [0.10, 0.90]. A fixed,
# uncalibrated band: a run's own rule (``rcl.decision.fit_referral`` on validation, stored as
# ``metrics.json["referral"]``) replaces it whenever present.
REFERRAL_BAND = (0.10, 0.90)


def referral(loaded: LoadedModel, result: TriageResult) -> dict:
    """Should this case go to a clinician? ``refer``, ``low``, ``high``, and ``rule`` in words."""
    from rcl.decision import ReferralRule, apply_referral

    if result.unfamiliar:  # no probability band is trustworthy on an input unlike the training data
        return {"refer": True, "low": None, "high": None,
                "rule": "unfamiliar image: its features are further from the training data than 95% of "
                        "validation images"}
    probs = np.asarray([result.probabilities[c] for c in loaded.taxonomy.classes], dtype=np.float64)
    stored = loaded.card.get("extras", {}).get("referral")
    if isinstance(stored, dict):
        try:
            rule = ReferralRule.from_dict(stored.get("rule", stored))
            if rule.classes == loaded.taxonomy.classes:
                _, referred = apply_referral(rule, probs[None, :])
                band = "no band (target met without referral)" if rule.low is None else \
                    f"P(malignant) in [{rule.low:.2f}, {rule.high:.2f}]"
                return {"refer": bool(referred[0]), "low": rule.low, "high": rule.high,
                        "rule": f"the run's fitted referral rule: {band}, target CER {rule.target_cer:.0%}"
                                + ("" if rule.met_target else " (target NOT met on validation)")}
        except ValueError:
            pass
    low, high = REFERRAL_BAND
    p = result.malignant_probability
    return {"refer": bool(low <= p <= high), "low": low, "high": high,
            "rule": f"default band: refer when P(malignant) is in [{low:.2f}, {high:.2f}] (no fitted rule stored)"}
