"""Training losses behind one registry: ``make_loss(name, **params)``.

Every loss is an ``nn.Module`` called as ``loss(logits, targets)`` with logits ``(N, K)`` and
integer targets ``(N,)``, returning the batch mean. Formulas: docs/FORMULAS.md; where the paper
leaves a choice open, the class docstring says which choice was made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rcl.loss_registry import LOSSES, LossSpec, canonical_loss, carries_costs, loss_spec
from rcl.severity import PROPOSED_ALPHA, PROPOSED_BETA, as_matrix, severity_matrix
from rcl.taxonomy import Taxonomy


def _check_inputs(logits: torch.Tensor, targets: torch.Tensor, num_classes: int | None = None) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {tuple(logits.shape)}")
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"targets must be (N,) with N = {logits.shape[0]}, got shape {tuple(targets.shape)}")
    if logits.shape[0] == 0:
        raise ValueError("empty batch: logits and targets have no samples")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(f"logits have {logits.shape[1]} classes but the loss was built for {num_classes}")
    # A range check costs a host-device sync per step on a GPU, so it runs on CPU tensors only;
    # on a GPU, cross-entropy's own device-side assert still catches a bad label.
    if targets.device.type == "cpu" and (targets.min() < 0 or targets.max() >= logits.shape[1]):
        bad = targets[(targets < 0) | (targets >= logits.shape[1])][0].item()
        raise ValueError(f"target label {bad} is out of range for {logits.shape[1]} classes (0..{logits.shape[1] - 1})")


class CrossEntropy(nn.Module):
    """Plain cross-entropy, ``−log p_y``, batch mean."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_inputs(logits, targets)
        return F.cross_entropy(logits, targets)


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with class weights ``w_c ∝ 1/n_c`` normalised to average 1 over classes.

    Choice: the batch reduction is PyTorch's weighted mean ``Σ w_y·CE / Σ w_y`` (the usual WCE
    baseline); classes with zero training samples get the largest observed weight instead of ∞.
    """

    def __init__(self, class_counts: Sequence[int]):
        super().__init__()
        counts = np.asarray(class_counts, dtype=np.float64)
        if counts.ndim != 1 or counts.size < 2:
            raise ValueError(f"class_counts must list one count per class, got {class_counts!r}")
        if (counts < 0).any() or not np.isfinite(counts).all() or counts.sum() == 0:
            raise ValueError(f"class_counts must be non-negative with at least one sample, got {class_counts!r}")
        inverse = np.where(counts > 0, 1.0 / np.maximum(counts, 1e-12), 0.0)
        inverse[counts == 0] = inverse.max()
        self.register_buffer("weight", torch.tensor(inverse / inverse.mean(), dtype=torch.float32))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_inputs(logits, targets, self.weight.numel())
        return F.cross_entropy(logits, targets, weight=self.weight.to(logits.dtype))


class FocalLoss(nn.Module):
    """``FL = −α_f (1 − p_y)^γ log p_y``, batch mean; paper defaults γ = 2, α_f = 0.25.

    Choice: α_f is one scalar for every class (as the paper states it), not the per-class α of the
    detection paper.
    """

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25):
        super().__init__()
        if gamma < 0 or alpha <= 0:
            raise ValueError(f"focal loss needs gamma >= 0 and alpha > 0, got gamma={gamma}, alpha={alpha}")
        self.gamma, self.alpha = float(gamma), float(alpha)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_inputs(logits, targets)
        log_p_y = F.log_softmax(logits.float(), dim=1).gather(1, targets[:, None]).squeeze(1)
        p_y = log_p_y.exp()
        return (-self.alpha * (1 - p_y).pow(self.gamma) * log_p_y).mean()


class LabelSmoothing(nn.Module):
    """Cross-entropy against ``(1 − ε)·onehot + ε/K`` (ε = 0.1), batch mean."""

    def __init__(self, epsilon: float = 0.1):
        super().__init__()
        if not 0 <= epsilon < 1:
            raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = float(epsilon)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_inputs(logits, targets)
        return F.cross_entropy(logits, targets, label_smoothing=self.epsilon)


class _MatrixLoss(nn.Module):
    """Shared set-up for losses driven by a severity matrix."""

    def __init__(
        self,
        taxonomy: Taxonomy | None = None,
        alpha: float = PROPOSED_ALPHA,
        beta: float = PROPOSED_BETA,
        matrix=None,
    ):
        super().__init__()
        if matrix is not None:
            values = as_matrix(matrix, taxonomy)
        elif taxonomy is not None:
            values = severity_matrix(taxonomy, alpha, beta)
        else:
            raise ValueError(f"{type(self).__name__} needs a taxonomy (with alpha, beta) or an explicit matrix")
        self.register_buffer("matrix", torch.tensor(values, dtype=torch.float32))


class RiskCalibratedLoss(_MatrixLoss):
    """RCL (the paper's loss): ``M[y, ŷ] · CE(p, y)`` with ``ŷ = argmax p`` taken without gradient; batch mean.

    The weight is a per-sample constant, so on a sample currently predicted as ``ŷ`` the gradient
    is exactly ``M[y, ŷ]`` times cross-entropy's. Choice: ties in argmax go to the lowest index
    (``torch.argmax``).
    """

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_inputs(logits, targets, self.matrix.shape[0])
        ce = F.cross_entropy(logits, targets, reduction="none")
        with torch.no_grad():
            weight = self.matrix[targets, logits.argmax(dim=1)]
        return (weight * ce).mean()


class ExpectedRiskLoss(_MatrixLoss):
    """Differentiable RCL (beyond the paper): ``(Σ_j p_j M[y, j]) · CE(p, y)``, batch mean.

    The hard gate ``M[y, argmax p]`` is replaced by its expectation under ``p``; where ``p`` is
    one-hot it equals RCL. Choice: the weight is *not* detached, so the gradient also moves
    probability mass away from the classes that are costly to confuse with ``y``.
    """

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_inputs(logits, targets, self.matrix.shape[0])
        log_p = F.log_softmax(logits.float(), dim=1)
        ce = -log_p.gather(1, targets[:, None]).squeeze(1)
        weight = (log_p.exp() * self.matrix[targets]).sum(dim=1)
        return (weight * ce).mean()


def make_loss(name: str, **params) -> nn.Module:
    """Build a registered loss: ``ce``, ``wce`` (class_counts), ``focal`` (gamma, alpha),
    ``label_smoothing`` (epsilon), ``rcl`` and ``expected_risk`` (taxonomy + alpha, beta, or matrix)."""
    spec = loss_spec(name)
    try:
        return globals()[spec.factory](**params)
    except TypeError as exc:
        raise ValueError(f"loss {name!r} got unexpected parameters {sorted(params)}: {exc}") from exc


__all__ = ["LOSSES", "LossSpec", "canonical_loss", "carries_costs", "loss_spec", "make_loss",
           "CrossEntropy", "WeightedCrossEntropy", "FocalLoss", "LabelSmoothing", "RiskCalibratedLoss", "ExpectedRiskLoss"]
