"""Regenerate the bundled example images for the Triage page with rcl's own synthetic generator.

These are synthetic, not patient data: ``python assets/make_examples.py`` writes one 224 × 224 PNG
per class of the synthetic (ISIC-2018-like) taxonomy into this folder.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from rcl.data.synthetic import CLASSES, generate

HERE = Path(__file__).resolve().parent
SEED = 2024  # not the training seed: examples are new draws, not training images


def main() -> None:
    images, labels = generate(n=105, image_size=224, seed=SEED)
    for k, name in enumerate(CLASSES):
        index = int(np.flatnonzero(labels == k)[0])
        Image.fromarray(images[index]).save(HERE / f"synthetic_{name}.png", optimize=True)
        print(f"wrote synthetic_{name}.png")


if __name__ == "__main__":
    main()
