"""Checkpoint selection rules, applied to the per-epoch validation history.

Choosing the checkpoint by best validation F1 quietly undoes much of a safety loss's gain, so the
rule is a first-class choice stored with the run, and re-applicable to a finished run: the run
keeps every epoch's validation and test logits (``epochs.npz``), so a new rule needs no retraining.

Every rule returns the index of the chosen epoch row; ties go to the earliest epoch (the simpler
model, and deterministic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SELECTION_RULES = {
    "f1": "best validation F1-macro",
    "f1_cer_cap": "best validation F1-macro among epochs with validation CER <= cap",
    "cer_f1_floor": "lowest validation CER among epochs with validation F1-macro >= floor",
    "expected_cost": "lowest mean validation cost under the run's severity matrix",
    "last": "the last epoch",
}


def _cer(row: dict) -> float:
    value = row.get("val_cer")
    return math.inf if value is None else float(value)


def select_epoch(
    history: Sequence[dict], rule: str = "f1", cer_cap: float | None = None, f1_floor: float | None = None
) -> int:
    """Index into ``history`` (rows with ``val_cer``, ``val_f1_macro``, ``val_expected_cost``).

    When no epoch satisfies a constraint (CER cap, F1 floor), the rule falls back to the epoch
    closest to satisfying it: the lowest CER, or the best F1.
    """
    if not history:
        raise ValueError("no epochs to select from")
    if rule not in SELECTION_RULES:
        raise ValueError(f"unknown selection rule {rule!r}; choose one of: {', '.join(SELECTION_RULES)}")
    rows = list(enumerate(history))

    def best(candidates, key):
        return min(candidates, key=lambda item: (key(item[1]), item[0]))[0]

    def by_f1(row):
        return (-row["val_f1_macro"], _cer(row))

    def by_cer(row):
        return (_cer(row), -row["val_f1_macro"])

    if rule == "last":
        return len(history) - 1
    if rule == "f1":
        return best(rows, by_f1)
    if rule == "expected_cost":
        return best(rows, lambda row: (row["val_expected_cost"], -row["val_f1_macro"]))
    if rule == "f1_cer_cap":
        if cer_cap is None:
            raise ValueError("rule f1_cer_cap needs cer_cap")
        within = [(i, r) for i, r in rows if _cer(r) <= cer_cap]
        return best(within, by_f1) if within else best(rows, by_cer)
    if f1_floor is None:
        raise ValueError("rule cer_f1_floor needs f1_floor")
    above = [(i, r) for i, r in rows if r["val_f1_macro"] >= f1_floor]
    return best(above, by_cer) if above else best(rows, by_f1)
