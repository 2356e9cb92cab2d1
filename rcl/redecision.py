"""A finished run re-decided under a severity matrix: what the Severity page shows, and
``rcl redecide`` prints: CER with the cases it rests on, F1, accuracy and the error tiers, beside
the run's own argmax figures, with the matrix's warnings and the rule that made the decision."""

from __future__ import annotations

from rcl.answers import default_matrix
from rcl.confusion import missed_malignant, tier_comparison
from rcl.decision import redecide
from rcl.runs import Run
from rcl.severity import SeverityMatrix, penalty_warnings
from rcl.text import decision_rule, matrix_caption, num, pct, points, rate_with_count, signed


def redecide_run(run: Run, matrix: SeverityMatrix, own_default: bool = False) -> dict:
    """The run's calibrated test probabilities decided by Bayes minimum risk under ``matrix``
    (``own_default``: under the run's own default decision instead, the one a cost-sensitive run
    is shown with so that its costs are not applied twice; ``matrix`` then only sets the warnings).

    Keys: ``run``, ``label``, ``n``, ``rule`` (words), ``matrix`` (caption), ``cer``, ``missed``,
    ``malignant``, ``f1_macro``, ``accuracy``; ``argmax`` (the same for the run's argmax decision);
    ``tiers`` (``tier_comparison`` rows: re-decided count beside argmax's), ``warnings`` and
    ``cost_sensitive`` (the loss already carries the costs: applying them again counts them twice).
    """
    if matrix.taxonomy.classes != run.taxonomy.classes:
        raise ValueError(f"the matrix is for {', '.join(matrix.taxonomy.classes)} but run {run.id} has "
                         f"{', '.join(run.taxonomy.classes)}: use a matrix for the run's classes")
    labels = run.predictions("test")["labels"]
    decision_matrix, rule = (default_matrix(run.metrics, run.matrix) if own_default
                             else (matrix, decision_rule("bayes")))
    result = redecide(run.calibrated_probs("test"), labels, run.taxonomy, decision_matrix)
    stored = run.metrics.get("test", {})
    missed, malignant = missed_malignant(result.confusion, run.taxonomy)
    argmax_missed = (missed_malignant(stored["confusion"], run.taxonomy)[0] if stored.get("confusion")
                     else None)
    return {
        "run": run.id, "label": run.label, "n": result.n, "rule": rule,
        "matrix": "the run's own, scaled on validation" if own_default else matrix_caption(matrix), "cer": result.cer, "missed": missed, "malignant": malignant,
        "f1_macro": result.f1_macro, "accuracy": result.accuracy,
        "argmax": {"rule": decision_rule("argmax"), "cer": stored.get("cer"), "missed": argmax_missed,
                   "f1_macro": stored.get("f1_macro"), "accuracy": stored.get("accuracy")},
        "tiers": tier_comparison(result.tiers, stored.get("tiers", {})),
        "warnings": penalty_warnings(matrix.values, matrix.taxonomy),
        "cost_sensitive": run.cost_sensitive,
    }


def delta(new: float | None, old: float | None) -> float | None:
    """``new - old``, or ``None`` when either is undefined."""
    return None if new is None or old is None else new - old


def redecision_text(summary: dict) -> str:
    """:func:`redecide_run` as plain lines for a terminal or a report."""
    a = summary["argmax"]
    lines = [
        f"{summary['label']} ({summary['run']}): {summary['n']} test images",
        f"decision: {summary['rule']}",
        f"matrix: {summary['matrix']}",
        f"CER       {rate_with_count(summary['cer'], summary['missed'], summary['malignant'], 'malignant cases missed')}"
        f"   argmax {pct(a['cer'])} ({points(delta(summary['cer'], a['cer']))})",
        f"F1-macro  {num(summary['f1_macro'])}   argmax {num(a['f1_macro'])} "
        f"({signed(delta(summary['f1_macro'], a['f1_macro']))})",
        f"accuracy  {pct(summary['accuracy'])}   argmax {pct(a['accuracy'])}",
        "error tiers (re-decided / argmax):",
        *(f"  {row['tier']}: {row['count']} / {row['reference']}" for row in summary["tiers"]),
    ]
    lines += [f"warning: {w}" for w in summary["warnings"]]
    if summary["cost_sensitive"]:
        lines.append("note: this run's loss already carries the costs; deciding under the full matrix again "
                     "counts them twice")
    return "\n".join(lines)


__all__ = ["delta", "redecide_run", "redecision_text"]
