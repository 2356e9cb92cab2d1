"""Training losses behind one registry: ``make_loss(name, **params)``.

Every loss is an ``nn.Module`` called as ``loss(logits, targets)`` with logits ``(N, K)`` and
integer targets ``(N,)``, returning the batch mean. A loss whose registry entry
``takes_soft_targets`` also takes ``(N, K)`` target distributions (several annotators' vote
shares ``q``), with one rule for all of them: the cross-entropy becomes ``−Σ_k q_k log p_k`` and a
per-sample weight indexed by the class (a class weight, a severity row ``M[y]``) becomes its
expectation under ``q`` (``q · w``, ``q @ M``). A one-hot ``q`` gives the hard-label loss exactly.
Formulas: docs/FORMULAS.md; where the paper leaves a choice open, the class docstring says which
choice was made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rcl.loss_registry import LOSSES, LossSpec, canonical_loss, carries_costs, check_soft_targets, loss_spec
from rcl.severity import PROPOSED_ALPHA, PROPOSED_BETA, as_matrix, severity_matrix
from rcl.taxonomy import Taxonomy


def _check_inputs(logits: torch.Tensor, targets: torch.Tensor, num_classes: int | None = None,
                  soft_ok: bool = True) -> bool:
    """Validate a batch; return whether ``targets`` are soft (N, K) distributions."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {tuple(logits.shape)}")
    soft = targets.ndim == 2
    if soft and not soft_ok:
        raise ValueError("this loss takes class indices (N,), not soft targets (N, K): its registry entry "
                         "has takes_soft_targets=False")
    if soft and (targets.shape != logits.shape or not targets.is_floating_point()):
        raise ValueError(f"soft targets must be float (N, K) = {tuple(logits.shape)}, got {targets.dtype} "
                         f"{tuple(targets.shape)}")
    if not soft and (targets.ndim != 1 or targets.shape[0] != logits.shape[0]):
        raise ValueError(f"targets must be (N,) with N = {logits.shape[0]}, got shape {tuple(targets.shape)}")
    if logits.shape[0] == 0:
        raise ValueError("empty batch: logits and targets have no samples")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(f"logits have {logits.shape[1]} classes but the loss was built for {num_classes}")
    # A range check costs a host-device sync per step on a GPU, so it runs on CPU tensors only;
    # on a GPU, cross-entropy's own device-side assert still catches a bad label.
    if targets.device.type != "cpu":
        return soft
    if soft:
        if not torch.isfinite(targets).all() or (targets < 0).any() or \
                not torch.allclose(targets.sum(dim=1), torch.ones(len(targets), dtype=targets.dtype), atol=1e-4):
            raise ValueError("soft targets must be finite, non-negative and sum to 1 per sample")
    elif targets.min() < 0 or targets.max() >= logits.shape[1]:
        bad = targets[(targets < 0) | (targets >= logits.shape[1])][0].item()
        raise ValueError(f"target label {bad} is out of range for {logits.shape[1]} classes (0..{logits.shape[1] - 1})")
    return soft


def _soft_cross_entropy(log_p: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per sample ``−Σ_k q_k log p_k`` from log-probabilities and target distributions ``q``."""
    return -(targets.to(log_p.dtype) * log_p).sum(dim=1)


class CrossEntropy(nn.Module):
    """Plain cross-entropy, ``−log p_y``, batch mean."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if _check_inputs(logits, targets):
            return F.cross_entropy(logits.float(), targets.float())  # torch's probability-target form
        return F.cross_entropy(logits, targets)


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with class weights ``w_c ∝ 1/n_c`` normalised to average 1 over classes.

    Choice: the batch reduction is PyTorch's weighted mean ``Σ w_y·CE / Σ w_y`` (the usual WCE
    baseline); classes with zero training samples get the largest observed weight instead of ∞.
    Soft targets: ``w_y`` becomes the expected weight ``q · w`` and CE the soft one, same reduction
    (PyTorch's own probability-target form divides by N instead, which one-hot targets would not match).
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
        if _check_inputs(logits, targets, self.weight.numel()):
            weight = targets.float() @ self.weight
            ce = _soft_cross_entropy(F.log_softmax(logits.float(), dim=1), targets)
            return (weight * ce).sum() / weight.sum()
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
        _check_inputs(logits, targets, soft_ok=False)
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
        if _check_inputs(logits, targets):  # soft: against (1 − ε)·q + ε/K
            return F.cross_entropy(logits.float(), targets.float(), label_smoothing=self.epsilon)
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

    Soft targets ``q`` (several annotators): the weight is the *expected severity*
    ``Σ_a q_a M[a, ŷ] = (q @ M)[ŷ]`` and CE the soft one. Choice: the weight scales the whole
    sample, as in the paper, so the target stays the readers' distribution; the alternative
    ``Σ_a q_a M[a, ŷ]·(−log p_a)`` would also tilt the target towards the costly class and count
    the costs a second time at decision time.
    """

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if _check_inputs(logits, targets, self.matrix.shape[0]):
            ce = _soft_cross_entropy(F.log_softmax(logits.float(), dim=1), targets)
            with torch.no_grad():
                weight = (targets.float() @ self.matrix).gather(1, logits.argmax(dim=1, keepdim=True)).squeeze(1)
            return (weight * ce).mean()
        ce = F.cross_entropy(logits, targets, reduction="none")
        with torch.no_grad():
            weight = self.matrix[targets, logits.argmax(dim=1)]
        return (weight * ce).mean()


class ExpectedRiskLoss(_MatrixLoss):
    """Differentiable RCL (beyond the paper): ``(Σ_j p_j M[y, j]) · CE(p, y)``, batch mean.

    The hard gate ``M[y, argmax p]`` is replaced by its expectation under ``p``; where ``p`` is
    one-hot it equals RCL. Choice: the weight is *not* detached, so the gradient also moves
    probability mass away from the classes that are costly to confuse with ``y``. Soft targets:
    the row ``M[y]`` becomes the expected row ``q @ M`` and CE the soft one.
    """

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        soft = _check_inputs(logits, targets, self.matrix.shape[0])
        log_p = F.log_softmax(logits.float(), dim=1)
        if soft:
            ce, rows = _soft_cross_entropy(log_p, targets), targets.float() @ self.matrix
        else:
            ce, rows = -log_p.gather(1, targets[:, None]).squeeze(1), self.matrix[targets]
        weight = (log_p.exp() * rows).sum(dim=1)
        return (weight * ce).mean()


def make_loss(name: str, **params) -> nn.Module:
    """Build a registered loss: ``ce``, ``wce`` (class_counts), ``focal`` (gamma, alpha),
    ``label_smoothing`` (epsilon), ``rcl`` and ``expected_risk`` (taxonomy + alpha, beta, or matrix)."""
    spec = loss_spec(name)
    try:
        return globals()[spec.factory](**params)
    except TypeError as exc:
        raise ValueError(f"loss {name!r} got unexpected parameters {sorted(params)}: {exc}") from exc


__all__ = ["LOSSES", "LossSpec", "canonical_loss", "carries_costs", "check_soft_targets", "loss_spec", "make_loss",
           "CrossEntropy", "WeightedCrossEntropy", "FocalLoss", "LabelSmoothing", "RiskCalibratedLoss", "ExpectedRiskLoss"]
