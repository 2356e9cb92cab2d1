"""Backbones behind one function, ``make_model(name, num_classes, ...)`` (timm style).

Any timm model name works (ResNet-50 and ViT-B/16, ``vit_base_patch16_224``, are the paper's),
plus two local CNNs: ``small_cnn`` (3 conv-BN-ReLU-pool blocks), fast enough for demos and tests,
and ``cnn4`` (4 blocks), the CPU default for real data at 40 px. The classification head is always sized to the taxonomy's K classes.

Weights: ``pretrained=True`` uses timm's normal hub loading (needs a network once); ``weights=FILE``
loads a local ``.safetensors`` or PyTorch checkpoint for offline machines, dropping a head whose
shape does not fit K. PyTorch files are read with ``weights_only=True``: never arbitrary pickles.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import timm
import torch
from torch import nn

from rcl.errors import UserError

PAPER_MODELS = ("resnet50", "vit_base_patch16_224")
CPU_MODELS = ("cnn4", "small_cnn", "resnet18", "mobilenetv3_small_100")


class SmallCNN(nn.Module):
    """``depth`` conv-BN-ReLU-maxpool blocks (``width`` channels, doubling per block) and a linear
    head; exposes ``forward_features`` for Grad-CAM and out-of-distribution scores like timm
    models do."""

    def __init__(self, num_classes: int, width: int = 32, depth: int = 3):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.MaxPool2d(2))

        widths = [3] + [width * 2**i for i in range(depth)]
        self.features = nn.Sequential(*(block(cin, cout) for cin, cout in zip(widths, widths[1:])))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(widths[-1], num_classes)
        self.num_features = widths[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = self.pool(features).flatten(1)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head


LOCAL_MODELS: dict[str, Callable[[int], nn.Module]] = {"small_cnn": SmallCNN,
                                                        "cnn4": partial(SmallCNN, depth=4)}


def check_model_name(name: str) -> None:
    """Raise ``ValueError`` with suggestions when ``name`` is neither local nor a timm model."""
    if name in LOCAL_MODELS or timm.is_model(name):
        return
    stem = name.split(".")[0].lower()
    close = timm.list_models(f"*{stem[:6]}*")[:8] if stem else []
    hint = f" Similar timm models: {', '.join(close)}." if close else ""
    raise ValueError(f"unknown model {name!r}: use {', '.join(CPU_MODELS + PAPER_MODELS)} or any timm model name.{hint}")


def _create_timm(name: str, num_classes: int, pretrained: bool, image_size: int | None) -> nn.Module:
    """Transformers have a fixed input size (position embeddings): build them for the run's image
    size (timm resamples pretrained position embeddings). CNNs take any size and no such argument."""
    if image_size is not None:
        try:
            return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, img_size=image_size)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise
    return timm.create_model(name, pretrained=pretrained, num_classes=num_classes)


def make_model(name: str, num_classes: int, pretrained: bool = False, weights: str | Path | None = None,
               image_size: int | None = None) -> nn.Module:
    """A backbone with a ``num_classes`` head for ``image_size`` inputs, optionally with pretrained
    or local weights."""
    check_model_name(name)
    if name in LOCAL_MODELS:
        if pretrained:
            raise ValueError(f"{name!r} has no pretrained weights; drop --pretrained or pass --weights FILE")
        model = LOCAL_MODELS[name](num_classes)
    else:
        try:
            model = _create_timm(name, num_classes, pretrained and weights is None, image_size)
        except Exception as exc:  # hub errors come in many types (OSError, HTTP, LocalEntryNotFound...)
            if not pretrained:
                raise
            raise RuntimeError(
                f"could not load pretrained weights for {name!r} ({type(exc).__name__}): this machine may be "
                "offline. Download them once elsewhere and pass --weights FILE, or train without --pretrained."
            ) from exc
    if weights is not None:
        load_weights(model, weights)
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a PyTorch checkpoint (``weights_only=True``).

    Accepts a bare state dict or the common wrappers (``state_dict``, ``model``). Anything else is
    a clear ``ValueError``: a file that is not a checkpoint must never reach ``pickle``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{str(path)!r} is not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{str(path)!r} does not hold model weights (expected a state dict of tensors)")
    return state


RESUME_KEYS = ("model", "optimizer", "scheduler", "epoch", "config")


def read_checkpoint(path: str | Path) -> dict:
    """The resume state in ``last.pt`` (``weights_only=True``), or a ``UserError`` saying the file
    is damaged (a kill mid-save, a truncated copy, a foreign file) and what to do about it."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch's own notes on a foreign pickle say nothing to a user
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch each fail their own way
        raise UserError(f"{path} is damaged ({type(exc).__name__}): delete it or pass --overwrite") from exc
    missing = [k for k in RESUME_KEYS if k not in state] if isinstance(state, dict) else list(RESUME_KEYS)
    if missing:
        raise UserError(f"{path} is damaged (no {', '.join(missing)}): delete it or pass --overwrite")
    return state


def load_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load local weights into ``model``; return the keys left at their initial values.

    Tensors whose shape differs from the model's (the classifier head of a model trained on other
    classes) are skipped, so the head is re-initialised for K classes. A file that shares no
    weight with the model is an error, not a silent no-op.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    state = {k.removeprefix("module."): v for k, v in state.items()}
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"{str(path)!r} shares no weights with model {type(model).__name__}: wrong architecture?")
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def channels_last(device: torch.device) -> bool:
    """Whether rcl keeps images and convolution weights channels-last (NHWC) on ``device``.

    cuDNN and oneDNN convolutions run faster on NHWC: on two CPU cores a ``cnn4`` training step
    at 32 px takes about 1.3 instead of 2.0 ms per image, inference half the time
    (benchmarks/results/cpu_recipe.md). Apple MPS keeps the default layout. Training, evaluation
    and triage place models and batches the same way (``place``, ``place_batch``), so a reloaded
    model reproduces the stored predictions exactly.
    """
    return device.type in ("cpu", "cuda")


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device`` in rcl's memory layout (``channels_last``); returns it."""
    model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last(device) else model


def place_batch(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A (B, C, H, W) batch on ``device`` in rcl's memory layout."""
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last(device) else images


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU for ``auto``; an explicit device must exist."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ValueError(f"unknown device {requested!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is available; use --device auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps was asked for but Apple MPS is not available; use --device auto or cpu")
    return device
