"""The unfamiliar-image detector of a run, fitted from its stored penultimate features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rcl.ood import OOD_FILE, fit_mahalanobis


def fit_detector(run_dir: Path, features: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
    """Fit on train features, set the threshold on validation, save ``ood.npz``; the ``ood`` entry
    of ``metrics.json`` (share of val/test flagged), and which test cases it flags."""
    detector = fit_mahalanobis(features["train_features"].astype(np.float64), features["train_labels"])
    detector.calibrate(features["val_features"].astype(np.float64))
    detector.save(Path(run_dir) / OOD_FILE)
    test_flags = detector.flag(features["test_features"].astype(np.float64))
    return {"method": "mahalanobis", "threshold": detector.threshold, "flag_rate": detector.flag_rate,
            "val_flagged": float(detector.flag(features["val_features"].astype(np.float64)).mean()),
            "test_flagged": float(test_flags.mean())}, test_flags
