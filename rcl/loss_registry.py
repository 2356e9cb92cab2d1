"""The loss registry: the only source of a loss's canonical name, its accepted spellings, whether
it takes the severity matrix, whether it carries the severity costs and whether it can train on
soft targets (several annotators' vote distribution).

Plain data, no torch: the config, the CLI's option list and run listings ask it without loading
the training stack. ``rcl.losses.make_loss`` builds the loss a spec names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LossSpec:
    """What the rest of the package may ask about a loss (timm-style registry entry).

    ``takes_matrix``: the factory needs the severity matrix; ``carries_costs``: training already
    applies the severity costs, so a Bayes decision under the full matrix would apply them twice;
    ``takes_soft_targets``: the loss also accepts (N, K) target distributions (docs/FORMULAS.md);
    ``summary``: what the loss does, in words for a clinician choosing one (the Train page).
    """

    name: str
    factory: str  # class name in rcl.losses (resolved there, so this module needs no torch)
    aliases: tuple[str, ...] = ()
    takes_matrix: bool = False
    carries_costs: bool = False
    takes_class_counts: bool = False
    summary: str = ""
    takes_soft_targets: bool = False


# Focal takes no soft targets: its modulating factor (1 − p_y)^γ is defined for one target class,
# and the soft generalisations disagree (an expectation over annotators, or |q − p|^γ); none is
# picked silently.
_SPECS = (
    LossSpec("ce", "CrossEntropy", aliases=("cross_entropy", "crossentropy"), takes_soft_targets=True,
             summary="Standard: every mistake counts the same (cross-entropy, the usual baseline)"),
    LossSpec("wce", "WeightedCrossEntropy", aliases=("weighted_ce", "weighted_cross_entropy"), takes_class_counts=True,
             takes_soft_targets=True, summary="Class-balanced: mistakes on rare diagnoses count more (weighted cross-entropy)"),
    LossSpec("focal", "FocalLoss", aliases=("focal_loss",),
             summary="Hard cases first: images the model already gets right count less (focal loss)"),
    LossSpec("label_smoothing", "LabelSmoothing", aliases=("labelsmoothing",), takes_soft_targets=True,
             summary="Less over-confident: the model is taught never to be fully sure (label smoothing)"),
    LossSpec("rcl", "RiskCalibratedLoss", aliases=("risk_calibrated", "risk_calibrated_loss"),
             takes_matrix=True, carries_costs=True, takes_soft_targets=True,
             summary="Risk-calibrated (recommended): each mistake weighs what the severity matrix says, "
                     "so a missed malignancy weighs most (RCL)"),
    LossSpec("expected_risk", "ExpectedRiskLoss", aliases=("expectedrisk", "expected_risk_loss"),
             takes_matrix=True, carries_costs=True, takes_soft_targets=True,
             summary="Risk-calibrated, smooth variant: weighs each answer by its expected cost under the "
                     "severity matrix (expected risk; beyond the paper)"),
)
LOSSES: dict[str, LossSpec] = {spec.name: spec for spec in _SPECS}
_SPELLINGS: dict[str, str] = {key: spec.name for spec in _SPECS for key in (spec.name, *spec.aliases)}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def loss_spec(name: str) -> LossSpec:
    """The registry entry for any accepted spelling (``expected-risk``, ``Expected_Risk``, ``RCL``...)."""
    if not isinstance(name, str) or _key(name) not in _SPELLINGS:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)} "
                         "(case, '-' and '_' do not matter)")
    return LOSSES[_SPELLINGS[_key(name)]]


def canonical_loss(name: str) -> str:
    """The registry's own name for any accepted spelling; ``ValueError`` naming the choices otherwise."""
    return loss_spec(name).name


def carries_costs(name: str) -> bool:
    """Whether training with this loss already applies the severity costs (any accepted spelling)."""
    return loss_spec(name).carries_costs


def check_soft_targets(name: str) -> None:
    """Refuse, naming the alternatives, a loss that cannot train on several annotators' votes."""
    spec = loss_spec(name)
    if not spec.takes_soft_targets:
        able = ", ".join(s.name for s in _SPECS if s.takes_soft_targets)
        raise ValueError(f"loss {spec.name!r} cannot train on soft targets (the data has several annotators' "
                         f"votes): choose one of {able}, or --targets majority to train on the majority label")
