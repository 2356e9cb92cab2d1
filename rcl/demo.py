"""The one-click demo of the app's Home page: a small CNN trained briefly with plain cross-entropy
on the bundled synthetic images, so every page has a run to show within about a minute on a CPU;
and the Triage page's bundled examples, drawn by the same generator at the same image size.

Every synthetic image is used and 30% go to test (about 900 images), so the test CER interval is
narrow enough to read the gap between the argmax and the risk-calibrated decision
(``benchmarks/demo_time.py`` measures it)."""

from __future__ import annotations

import numpy as np

from rcl.config import TrainConfig
from rcl.data.layouts import SYNTHETIC
from rcl.data.synthetic import CLASSES, IMAGE_SIZE, generate

EXAMPLE_SEED = 2024  # not the training seed: the examples are new draws, not training images
EXAMPLE_POOL = 700  # draws to choose the examples from (at least 15 of each class)


def demo_config() -> TrainConfig:
    """The demo's training config (checked: it is submitted as a background job as it is)."""
    return TrainConfig(data=SYNTHETIC, model="small_cnn", image_size=32, epochs=8, loss="ce", patience=None,
                       test_fraction=0.3, name="demo-ce-small_cnn")


def example_images(image_size: int | None = None, seed: int = EXAMPLE_SEED) -> dict[str, np.ndarray]:
    """One typical synthetic image per class, ``(S, S, 3)`` uint8, drawn like the bundled set (at
    its size, :data:`IMAGE_SIZE`), so a model resizes it exactly as it resized its training images.

    Typical: of :data:`EXAMPLE_POOL` fresh draws, the one of each class nearest its class's mean
    in an 8 × 8 colour thumbnail, so an example is neither a look-alike of another class nor an
    outlier of its own.
    """
    size = IMAGE_SIZE if image_size is None else image_size
    images, labels = generate(n=EXAMPLE_POOL, image_size=size, seed=seed)
    step = size // 8
    thumbs = images[:, : step * 8, : step * 8].reshape(len(images), 8, step, 8, step, 3).mean(axis=(2, 4))
    thumbs = thumbs.reshape(len(images), -1)
    examples = {}
    for k, name in enumerate(CLASSES):
        rows = np.flatnonzero(labels == k)
        distance = ((thumbs[rows] - thumbs[rows].mean(axis=0)) ** 2).sum(axis=1)
        examples[name] = images[rows[int(distance.argmin())]]
    return examples


__all__ = ["demo_config", "example_images"]
