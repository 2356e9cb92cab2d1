"""rcl: risk-calibrated medical image classification.

The public API lives here. Names that need torch are imported on first use, so that light
commands (``rcl jobs``, ``rcl runs``) and numpy-only callers start fast.
"""

from importlib import import_module

from rcl.metrics import Evaluation, evaluate, pareto_front
from rcl.severity import SeverityMatrix, severity_matrix
from rcl.taxonomy import PRESETS, Taxonomy, preset

__version__ = "0.1.0"

_LAZY = {
    "make_loss": "rcl.losses",
    "LOSSES": "rcl.losses",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rcl' has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "Evaluation",
    "SeverityMatrix",
    "Taxonomy",
    "evaluate",
    "pareto_front",
    "preset",
    "severity_matrix",
    *_LAZY,
]
