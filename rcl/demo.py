"""The one-click demo of the app's Home page: a small CNN trained briefly with plain cross-entropy
on the bundled synthetic images, so every page has a run to show within about a minute on a CPU.

Every synthetic image is used and 30% go to test (about 900 images), so the test CER interval is
narrow enough to read the gap between the argmax and the risk-calibrated decision
(``benchmarks/demo_time.py`` measures it)."""

from __future__ import annotations

from rcl.config import TrainConfig
from rcl.data.layouts import SYNTHETIC


def demo_config() -> TrainConfig:
    """The demo's training config (checked: it is submitted as a background job as it is)."""
    return TrainConfig(data=SYNTHETIC, model="small_cnn", image_size=32, epochs=8, loss="ce", patience=None,
                       test_fraction=0.3, name="demo-ce-small_cnn")


__all__ = ["demo_config"]
