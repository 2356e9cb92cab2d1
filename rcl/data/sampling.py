"""How a training epoch draws its images: a plain shuffle, or classes re-weighted by their size.

``SAMPLING`` maps each policy to its words for a run card.

Numpy only (the config imports ``SAMPLING`` without torch); ``rcl.engine.make_loader`` turns the
weights into a ``WeightedRandomSampler``.
"""

from __future__ import annotations

import numpy as np

# shuffle: every training image once per epoch. sqrt_balanced: a class is drawn in proportion to
# the square root of its size. On HAM10000 (nevi 67%, dermatofibroma 1%) the rare classes are then
# seen about 4× as often as in a shuffle while the common ones still dominate: a middle road
# between the data's prior (which a shuffle teaches) and full balance (which over-fits the few
# rare images).
SAMPLING = {"shuffle": "each training image once per epoch",
            "sqrt_balanced": "rare diagnoses drawn more often (each class in proportion to the square root of "
                             "its size)"}


def sample_weights(labels: np.ndarray, sampling: str) -> np.ndarray | None:
    """Per-sample drawing weights (unnormalised) of a ``sampling`` policy, or None for a shuffle."""
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of: {', '.join(SAMPLING)}; got {sampling!r}")
    if sampling == "shuffle":
        return None
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    return 1.0 / np.sqrt(counts[labels])
