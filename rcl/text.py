"""Words and numbers as a user reads them: the one source for formatting, the disclaimer, the
error-tier labels and the α/β label, shared by the CLI, the app, reports and benchmarks.

Pure Python; from the rest of ``rcl`` only a file name of :mod:`rcl.paths` (itself a leaf): any layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rcl.paths import RUN_WEIGHTS

MISSING = "n/a"
"""Shown where a number is undefined (e.g. CER when the split has no malignant case)."""

DISCLAIMER = "Research tool, not a diagnostic device: never use it to make a clinical decision."

TIER_LABELS = {
    "correct": "Correct",
    "visual_ambiguity": "Visual ambiguity (safe)",
    "type_1": "Type I (false alarm)",
    "type_2": "Type II (fatal miss)",
}
"""Display label of each error tier key of :data:`rcl.metrics.TIERS`."""

DECISION_RULES = {
    "argmax": "argmax decision (the model's most probable class)",
    "bayes": "Bayes minimum-risk decision under the severity matrix (the answer of lowest expected cost)",
    "default": "the run's default decision (Bayes minimum-risk, scale tuned on validation when the loss "
               "already carries the costs)",
}
"""How each decision rule is named next to a figure it produced."""


def pct(value: float | None, digits: int = 1) -> str:
    """A rate in [0, 1] as a percentage: ``0.1234`` → ``"12.3%"``; ``None`` → ``"n/a"``."""
    return MISSING if value is None else f"{100 * value:.{digits}f}%"


def num(value: float | None, digits: int = 3) -> str:
    """A plain number with fixed decimals: ``0.6`` → ``"0.600"``; ``None`` → ``"n/a"``."""
    return MISSING if value is None else f"{value:.{digits}f}"


def points(delta: float | None, digits: int = 1) -> str:
    """A change of a rate in percentage points, signed: ``-0.034`` → ``"-3.4 pts"``."""
    return MISSING if delta is None else f"{100 * delta:+.{digits}f} pts"


def signed(delta: float | None, digits: int = 3) -> str:
    """A change of a plain number, signed: ``0.0123`` → ``"+0.012"``."""
    return MISSING if delta is None else f"{delta:+.{digits}f}"


def count_of(part: int, whole: int) -> str:
    """``"22 of 44"``: how many cases a figure rests on."""
    return f"{int(part)} of {int(whole)}"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 run"``, ``"3 runs"``: a count with its noun in the right number."""
    return f"{int(n)} {word if int(n) == 1 else (many or word + 's')}"


def rate_with_count(value: float | None, part: int, whole: int, what: str) -> str:
    """A rate beside the cases it rests on: ``"50.0% (22 of 44 malignant cases missed)"``."""
    return f"{pct(value)} ({count_of(part, whole)} {what})"


def decision_rule(key: str) -> str:
    """The words for a decision rule key of :data:`DECISION_RULES` (a ``ValueError`` names the keys)."""
    if key not in DECISION_RULES:
        raise ValueError(f"decision rule must be one of {', '.join(DECISION_RULES)}, got {key!r}")
    return DECISION_RULES[key]


def initialisation(train: dict) -> str:
    """Where a run's weights started, in words, from its ``train`` config."""
    if train.get("weights"):
        weights = Path(train["weights"])
        if weights.name == RUN_WEIGHTS:  # a run folder's own weights: name the run (its card says how it began)
            return f"fine-tuned from run {weights.parent.name}"
        return "started from the weights file given"
    if train.get("pretrained"):
        return "started from ImageNet weights"
    return "trained from scratch, no ImageNet weights"


def ci_text(value: float | None, low: float | None, high: float | None,
            formatter: Callable[[float | None], str] = num) -> str:
    """``"12.3% (95% CI 8.0% – 17.1%)"``; the interval is left out when either bound is missing."""
    text = formatter(value)
    if low is not None and high is not None:
        text += f" (95% CI {formatter(low)} – {formatter(high)})"
    return text


def _short(value: float | None) -> str:
    return MISSING if value is None else f"{value:g}"


def penalties(alpha: float | None, beta: float | None) -> str:
    """The α/β label of the paper's matrix: ``"α=5 β=20"`` (α false alarm, β miss)."""
    return f"α={_short(alpha)} β={_short(beta)}"


def matrix_caption(matrix) -> str:
    """One line naming a :class:`rcl.SeverityMatrix`: its α/β when it is the paper's form, else "custom"."""
    if matrix.is_standard:
        return f"{penalties(matrix.alpha, matrix.beta)} (α false alarm, β miss) on {matrix.taxonomy.name}"
    return f"custom per-cell matrix on {matrix.taxonomy.name}"


__all__ = ["DECISION_RULES", "DISCLAIMER", "MISSING", "TIER_LABELS", "ci_text", "count_of", "decision_rule",
           "initialisation", "matrix_caption", "num", "pct", "penalties", "plural", "points", "rate_with_count",
           "signed"]
