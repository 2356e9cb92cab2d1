""""This image is unfamiliar": an out-of-distribution score on penultimate features.

Method: class-conditional Mahalanobis distance with one shared, shrunk covariance (Lee et al.,
2018), fitted on the training split's features; the score of an input is its distance to the
nearest class mean. Why this rather than an energy or max-softmax score: those read the logits,
and cost-sensitive losses (RCL scales the loss by up to β) change logit magnitudes and
confidence, so a logit threshold would mean different things for different losses. Features are
shaped by every loss alike, and a distance in feature space also catches inputs that the head
maps confidently to some class (a model that "answers with confidence on contrast-boosted
images"). Ledoit-Wolf shrinkage keeps the covariance invertible on small training sets.

The threshold is the ``1 - flag_rate`` quantile of validation scores (about 5% of
in-distribution validation images flagged), stored with the run in ``ood.npz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf

OOD_FILE = "ood.npz"
DEFAULT_FLAG_RATE = 0.05


@dataclass
class MahalanobisDetector:
    means: np.ndarray  # (C, D) class means of the classes seen in training
    precision: np.ndarray  # (D, D) inverse of the shared covariance
    threshold: float = float("inf")
    flag_rate: float = DEFAULT_FLAG_RATE

    def score(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance to the nearest class mean; higher = more unfamiliar."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.means.shape[1]:
            raise ValueError(f"features must be (N, {self.means.shape[1]}), got shape {features.shape}")
        best = np.full(len(features), np.inf)
        for mean in self.means:  # one class at a time keeps memory at N × D
            centred = features - mean
            best = np.minimum(best, np.einsum("nd,de,ne->n", centred, self.precision, centred))
        return best

    def flag(self, features: np.ndarray) -> np.ndarray:
        return self.score(features) > self.threshold

    def calibrate(self, val_features: np.ndarray, flag_rate: float = DEFAULT_FLAG_RATE) -> MahalanobisDetector:
        """Set the threshold so that ``flag_rate`` of in-distribution validation images are flagged."""
        if not 0 < flag_rate < 1:
            raise ValueError(f"flag_rate must be in (0, 1), got {flag_rate}")
        scores = self.score(val_features)
        if scores.size == 0:
            raise ValueError("no validation features to calibrate the unfamiliar-image threshold on")
        self.threshold = float(np.quantile(scores, 1 - flag_rate))
        self.flag_rate = flag_rate
        return self

    def save(self, path: str | Path) -> None:
        np.savez(path, means=self.means, precision=self.precision, threshold=self.threshold, flag_rate=self.flag_rate)

    @classmethod
    def load(cls, path: str | Path) -> MahalanobisDetector:
        with np.load(path, allow_pickle=False) as data:
            return cls(data["means"], data["precision"], float(data["threshold"]), float(data["flag_rate"]))


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray) -> MahalanobisDetector:
    """Class means and a shared Ledoit-Wolf covariance of class-centred training features."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if len(features) != len(labels) or len(features) < 2:
        raise ValueError("need at least 2 training features with one label each to fit the OOD detector")
    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    centred = features - means[np.searchsorted(classes, labels)]
    precision = LedoitWolf().fit(centred).precision_
    return MahalanobisDetector(means, precision)
