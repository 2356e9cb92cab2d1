"""rcl: risk-calibrated medical image classification.

The public API lives here. Names that need torch are imported on first use, so that light
commands (``rcl jobs``, ``rcl runs``) and numpy-only callers start fast.
"""

from importlib import import_module

from rcl.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
)
from rcl.decision import (
    ReferralRule,
    apply_referral,
    decide,
    expected_costs,
    fit_referral,
    frontier,
    redecide,
    referral_report,
    scaled_matrix,
    sweep,
    tune_decision_scale,
)
from rcl.metrics import Evaluation, evaluate, pareto_front
from rcl.severity import SeverityMatrix, severity_matrix
from rcl.taxonomy import PRESETS, Taxonomy, preset
from rcl.uncertainty import bootstrap_ci, paired_difference

__version__ = "0.1.0"

_LAZY = {
    "demo_config": "rcl.config",
    "make_loss": "rcl.losses",
    "LOSSES": "rcl.losses",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rcl' has no attribute {name!r}")


__all__ = [
    "Evaluation",
    "PRESETS",
    "ReferralRule",
    "SeverityMatrix",
    "Taxonomy",
    "apply_referral",
    "apply_temperature",
    "bootstrap_ci",
    "decide",
    "evaluate",
    "expected_calibration_error",
    "expected_costs",
    "fit_referral",
    "fit_temperature",
    "frontier",
    "paired_difference",
    "pareto_front",
    "preset",
    "redecide",
    "referral_report",
    "reliability_diagram",
    "scaled_matrix",
    "severity_matrix",
    "sweep",
    "tune_decision_scale",
    *_LAZY,
]
