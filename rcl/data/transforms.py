"""Tensors for the model, identical at training and inference time apart from augmentation.

Augmentation follows the paper (random rotation, flips: dermoscopy, histology and axial MRI have
no canonical orientation). It runs on a whole batch at once: the DataLoader asks for a batch
through ``__getitems__``, and one ``affine_grid``/``grid_sample`` applies a different rotation
and flip to every image. Per-sample ``torchvision.transforms.v2.RandomRotation`` costs a fixed
~150-250 µs per image on a small CPU, a sizeable fraction of a ``small_cnn`` step; batched, the
cost is a few µs per image, so training throughput stays that of the bare model step.

``AUGMENTATIONS`` names the training-time policies a config can choose (``augment``): the paper's
rotations and flips, optionally preceded by a colour jitter (brightness, contrast, saturation),
which suits dermoscopy, whose colour varies with camera, lighting and skin.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from rcl.data import IMAGENET_MEAN, IMAGENET_STD
from rcl.data.images import resize_rgb

MAX_ROTATION_DEGREES = 20.0
MAX_ZOOM = 0.25  # rotate_flip_zoom: magnified by up to 25%
COLOUR_JITTER = 0.2  # brightness, contrast and saturation each scaled by a factor in [0.8, 1.2]

# uint8 x → (x / 255 - mean) / std, as one multiply-add per channel.
_SCALE = torch.tensor([1 / (255 * s) for s in IMAGENET_STD]).view(1, 3, 1, 1)
_SHIFT = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).view(1, 3, 1, 1)


def normalize(batch_uint8_or_float: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) pixel values in 0..255 → ImageNet-normalised float32."""
    return batch_uint8_or_float.float().mul(_SCALE).add_(_SHIFT)


def random_rotate_flip(batch: torch.Tensor, max_degrees: float = MAX_ROTATION_DEGREES,
                       generator: torch.Generator | None = None, max_zoom: float = 0.0) -> torch.Tensor:
    """Each image of a float (B, C, H, W) batch rotated by its own angle in ±``max_degrees`` and
    flipped horizontally and vertically with probability 1/2 each (bilinear, zero fill, as
    torchvision's RandomRotation); with ``max_zoom`` > 0 also magnified by a factor up to
    1 + ``max_zoom`` about the centre (lesions differ in size and framing)."""
    n = batch.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_degrees)
    flip_x = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    flip_y = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    if max_zoom > 0:  # sampling a smaller region of the input magnifies it
        shrink = 1 / (1 + torch.rand(n, generator=generator) * max_zoom)
        flip_x, flip_y = flip_x * shrink, flip_y * shrink
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros(n)
    theta = torch.stack([torch.stack([cos * flip_x, -sin * flip_y, zero], 1),
                         torch.stack([sin * flip_x, cos * flip_y, zero], 1)], 1)
    grid = F.affine_grid(theta.to(batch.dtype), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_colour_jitter(batch: torch.Tensor, strength: float = COLOUR_JITTER,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image of a float (B, 3, H, W) batch in 0..255 with its own brightness, contrast and
    saturation factor, each uniform in [1 − ``strength``, 1 + ``strength``]; clipped to 0..255."""

    def factor() -> torch.Tensor:
        return 1 + (torch.rand(batch.shape[0], 1, 1, 1, generator=generator) * 2 - 1) * strength

    out = batch * factor()
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * factor() + mean
    grey = out.mean(dim=1, keepdim=True)
    out = (out - grey) * factor() + grey
    return out.clamp_(0, 255)


def _rotate_flip_colour(batch: torch.Tensor) -> torch.Tensor:
    return random_rotate_flip(random_colour_jitter(batch))


def _rotate_flip_zoom(batch: torch.Tensor) -> torch.Tensor:
    return random_rotate_flip(batch, max_zoom=MAX_ZOOM)


AUGMENTATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": lambda batch: batch,
    "rotate_flip": random_rotate_flip,
    "rotate_flip_colour": _rotate_flip_colour,
    "rotate_flip_zoom": _rotate_flip_zoom,
}


def check_augment(name: str) -> None:
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augment {name!r}; choose one of: {', '.join(AUGMENTATIONS)}")


class ImageArrayDataset(Dataset):
    """(normalised float CHW tensor, label) pairs from a uint8 (N, H, W, 3) array or memmap; a
    label is a class index, or a (K,) target distribution when ``labels`` is (N, K) (soft targets).

    ``indices`` selects the rows of this split without copying the array (a memmap stays a
    memmap). With ``train=True`` every batch goes through the ``augment`` policy (AUGMENTATIONS).
    """

    def __init__(self, images: np.ndarray, labels, train: bool, indices=None, augment: str = "rotate_flip"):
        check_augment(augment)
        self.augment = AUGMENTATIONS[augment]
        self.images = images
        labels = np.asarray(labels)
        self.labels = torch.as_tensor(labels, dtype=torch.float32 if labels.ndim == 2 else torch.int64)
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.train = train
        if len(self.labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.indices)

    def batch(self, positions) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels for positions ``0..len-1`` of this dataset, as stacked tensors."""
        rows = self.indices[np.asarray(positions, dtype=np.int64)]
        pixels = torch.from_numpy(np.ascontiguousarray(self.images[rows])).permute(0, 3, 1, 2)
        images = pixels.float()
        if self.train:
            images = self.augment(images)
        return normalize(images), self.labels[rows]

    def __getitems__(self, positions) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # DataLoader's batched fetch: augment the batch at once, hand default_collate the pairs.
        images, labels = self.batch(positions)
        return list(zip(images, labels))

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.batch([position])
        return images[0], labels[0]


def preprocess(image, image_size: int) -> torch.Tensor:
    """A PIL image (from ``load_rgb``) → (1, 3, S, S) normalised tensor, exactly as in training."""
    pixels = torch.from_numpy(np.array(resize_rgb(image, image_size))).permute(2, 0, 1).unsqueeze(0)  # writable copy
    return normalize(pixels)
