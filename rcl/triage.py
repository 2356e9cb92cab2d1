"""Single-image triage: one answer (a class decision, "refer: uncertain" or "refer: unfamiliar
image", see ``rcl.answers``), with the class probabilities, P(malignant superclass), the argmax
class and the expected cost of every option under the decision rule.

Research tool, not a diagnostic device. Inputs are untrusted uploads: size-limited, decoded
through the same ``load_rgb``/``preprocess`` path as training, and any failure is a plain
``ValueError``.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rcl.answers import REFER_UNCERTAIN, REFER_UNFAMILIAR, Answer, answer_of, run_answers, uncertain_reason
from rcl.calibration import softmax
from rcl.data import load_rgb, preprocess
from rcl.decision import expected_costs
from rcl.models import place_batch
from rcl.ood import image_gate
from rcl.posthoc.guarantee import GuaranteedRule, apply_guarantee, load_guarantee
from rcl.runs import LoadedModel

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
STACKING = ("this model was trained with a cost-sensitive loss: a Bayes decision under the full matrix "
            "applies the same costs twice (the model's own default uses a scale tuned on validation)")
SYNTHETIC_FLAG = "trained on synthetic images: meaningless on real patients"


@dataclass
class TriageResult:
    """One image's triage. ``answer`` is what to show as the answer; on a referral ``decision`` is
    None and the probabilities are for inspection only (``trusted`` False on an unfamiliar image)."""

    answer: Answer
    probabilities: dict[str, float]
    argmax: str
    malignant_probability: float
    decision: str | None  # the decision rule's class; None when the answer is a referral
    decision_rule: str  # which rule decided, in words (rcl.answers)
    referral_rule: str  # which referral rule applied, in words
    expected_costs: dict[str, float]
    unfamiliar: bool = False
    flags: list[str] = field(default_factory=list)  # e.g. "trained on synthetic images"
    guarantee: str | None = None  # the guaranteed rule's statement, when that rule decided

    @property
    def trusted(self) -> bool:
        return not self.unfamiliar

    def to_dict(self) -> dict:
        return {"answer": self.answer.to_dict(), "probabilities": self.probabilities,
                "probabilities_trusted": self.trusted, "argmax": self.argmax,
                "malignant_probability": self.malignant_probability, "decision": self.decision,
                "decision_rule": self.decision_rule, "referral_rule": self.referral_rule,
                "expected_costs": self.expected_costs, "unfamiliar": self.unfamiliar, "flags": self.flags,
                "guarantee": self.guarantee}


def read_image(image) -> object:
    """A PIL RGB image from a path, bytes or file-like upload, through the data layer's one reader
    (``load_rgb``: pixel budget, folders and devices named), with a file-size limit."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.exists():
            raise ValueError(f"image {str(path)!r} does not exist")
        if path.is_file() and path.stat().st_size > MAX_UPLOAD_BYTES:
            raise ValueError(f"image {path.name!r} is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
        return load_rgb(path)
    data = image if isinstance(image, bytes) else image.read()
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(f"the upload is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    if not data:
        raise ValueError("the upload is empty")
    return load_rgb(io.BytesIO(data))


@torch.no_grad()
def forward(loaded: LoadedModel, picture) -> tuple[np.ndarray, np.ndarray]:
    """Logits (K,) and penultimate features (1, D) of one PIL image, from one backbone pass
    through the training preprocessing."""
    tensor = preprocess(picture, loaded.image_size)
    device = next(loaded.model.parameters()).device
    feature_map = loaded.model.forward_features(place_batch(tensor, device))
    logits = loaded.model.forward_head(feature_map).float().cpu().numpy()[0]
    pooled = loaded.model.forward_head(feature_map, pre_logits=True).float().cpu().numpy()
    return logits, pooled


def unfamiliar_reason(loaded: LoadedModel, picture, features: np.ndarray) -> str | None:
    """Why the image is unfamiliar (the image gate, then the run's detector), or None."""
    gate = image_gate(picture)
    if gate is not None:
        return f"{gate}: not a picture of anything the model can read"
    if loaded.ood is not None and loaded.ood.flag(features)[0]:
        return (f"its features are further from the training images than those of "
                f"{1 - loaded.ood.flag_rate:.0%} of validation images")
    return None


def triage(loaded: LoadedModel, image, matrix=None, guarantee: GuaranteedRule | None = None) -> TriageResult:
    """Answer one image with the run's default decision and referral rule (``matrix``: decide
    under this user matrix instead), on temperature-calibrated probabilities.

    ``guarantee`` (a rule from ``rcl guarantee``): decide by its threshold on P(malignant) instead,
    read from the softmax the rule was calibrated on; its referral band is the referral. An
    unfamiliar image is referred whatever the rule: it is outside every guarantee.
    """
    picture = read_image(image)
    logits, features = forward(loaded, picture)
    unfamiliar = unfamiliar_reason(loaded, picture, features)
    extras = loaded.card.get("extras", {})
    answers = run_answers(extras, loaded.matrix, loaded.taxonomy, logits[None, :],
                          unfamiliar=[unfamiliar is not None], user_matrix=matrix)
    flags = [STACKING] if matrix is not None and loaded.cost_sensitive else []
    if loaded.synthetic:
        flags.append(SYNTHETIC_FLAG)
    code, classes = int(answers.codes[0]), loaded.taxonomy.classes
    p_malignant = float(answers.p_malignant[0])
    decision_rule, referral_rule = answers.decision, answers.referral
    reason = {REFER_UNFAMILIAR: unfamiliar,
              REFER_UNCERTAIN: uncertain_reason(p_malignant, answers.low, answers.high)}.get(code, decision_rule)
    if guarantee is not None:
        code, reason, p_malignant, decision_rule, referral_rule = _guaranteed_answer(
            guarantee, logits, classes, unfamiliar)
    costs = expected_costs(answers.probs, answers.decision_matrix)[0]
    probs = answers.probs[0]
    return TriageResult(
        answer=answer_of(code, classes, reason),
        probabilities={c: float(p) for c, p in zip(classes, probs)},
        argmax=classes[int(probs.argmax())],
        malignant_probability=p_malignant,
        decision=classes[code] if code >= 0 else None,
        decision_rule=decision_rule,
        referral_rule=referral_rule,
        expected_costs={c: float(v) for c, v in zip(classes, costs)},
        unfamiliar=unfamiliar is not None,
        flags=flags,
        guarantee=guarantee.sentence() if guarantee is not None else None,
    )


def _guaranteed_answer(rule: GuaranteedRule, logits: np.ndarray, classes, unfamiliar: str | None):
    """(code, reason, P(malignant), decision rule, referral rule) of one image under a guaranteed rule."""
    if list(rule.classes) != list(classes):
        raise ValueError(f"the guaranteed rule is for classes {', '.join(rule.classes)}, the model has "
                         f"{', '.join(classes)}: run `rcl guarantee` on this run again")
    probs = softmax(logits[None, :])
    decisions, referred = apply_guarantee(rule, probs)
    p_malignant = float(probs[0, np.asarray(rule.critical, dtype=bool)].sum())
    decision_rule = f"the guaranteed threshold: malignant when P(malignant) ≥ {rule.threshold:.3f}"
    referral_rule = (f"the guaranteed rule's band: refer when {rule.refer_low:.3f} ≤ P(malignant) < "
                     f"{rule.threshold:.3f}" if rule.refer_low is not None else "no referral band")
    if unfamiliar is not None:
        return REFER_UNFAMILIAR, f"{unfamiliar} (outside the guarantee)", p_malignant, decision_rule, referral_rule
    if referred[0]:
        return REFER_UNCERTAIN, f"P(malignant) {p_malignant:.2f} is inside the guaranteed rule's referral band", \
            p_malignant, decision_rule, referral_rule
    return int(decisions[0]), decision_rule, p_malignant, decision_rule, referral_rule


def stored_guarantee(loaded: LoadedModel) -> GuaranteedRule | None:
    """The guaranteed rule stored beside the run or exported model (``rcl guarantee``), or None."""
    return load_guarantee(loaded.source)


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
        heat = cam(input_tensor=place_batch(tensor, device), targets=targets)[0]
    size = loaded.image_size
    base = np.asarray(picture.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0)
    if heat.shape != (size, size):
        heat = np.asarray(Image.fromarray(heat).resize((size, size), Image.BILINEAR), dtype=np.float32)
    return show_cam_on_image(base, np.clip(heat, 0, 1), use_rgb=True, image_weight=0.55)
