"""Run listing: one summary row per run folder for tables, plots and the Pareto page, with the
run's bootstrap intervals and its place on the (CER, F1) front.

Pure Python (no Streamlit). ``run_rows`` reads only ``config.json`` and ``metrics.json`` of each
run folder, so a data directory with a thousand runs is summarised in well under a second;
predictions are read only for one run at a time (``run_ci`` when no interval is stored).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rcl import paths
from rcl.config import as_recorded
from rcl.confusion import missed_malignant
from rcl.decision import frontier
from rcl.errors import explain
from rcl.fine_tune import start_text
from rcl.metrics import pareto_front
from rcl.runs import MODEL_CARD, DamagedRun, Run, list_runs, loss_label, run_folders


def ci_bounds(ci, metric: str) -> tuple[float | None, float | None]:
    """``(low, high)`` of ``metric`` from a ``bootstrap_ci`` result (``None`` where undefined)."""
    value = ci.get(metric) if isinstance(ci, dict) else None
    if not isinstance(value, dict):
        return None, None
    return value.get("low"), value.get("high")


def config_text(train: dict) -> str:
    """One line describing a training config, for hover labels."""
    return (f"{loss_label(train)} · {train.get('model', '?')} · {train.get('image_size', '?')} px · "
            f"{train.get('epochs', '?')} epochs · lr {train.get('lr', 0):g} · {as_recorded(train)['sampling']} "
            f"sampling · seed {train.get('seed', '?')} · {start_text(train)}")


def run_row(run: Run) -> dict:
    """``Run.summary()`` plus a config line, where the weights started (``start``), the number of
    malignant test cases (``malignant``, what CER rests on), the loss with its α/β (``loss_label``), the test split fingerprint when stored
    (``split``; else ``rcl.comparison.with_splits`` reads it from the test ids), the training label-noise
    rule (``label_noise``, e.g. ``"miss:0.1"``, else None) and the stored test CIs, when present."""
    test = run.metrics.get("test", {})
    malignant = missed_malignant(test["confusion"], run.taxonomy)[1] if test.get("confusion") else None
    return with_ci({**run.summary(), "config": config_text(run.train), "start": start_text(run.train),
                    "malignant": malignant, "split": test.get("split_fingerprint"),
                    "loss_label": loss_label(run.train), "label_noise": run.train.get("label_noise")},
                   test.get("ci") or {})


def folder_signature(root: str | Path | None = None) -> tuple:
    """A cheap fingerprint of the data directory (names and mtimes of config/metrics), for caches."""
    sig = []
    for folder in run_folders(root):
        stamps = []
        for name in ("config.json", "metrics.json"):
            try:
                stamps.append((folder / name).stat().st_mtime_ns)
            except OSError:
                stamps.append(0)
        sig.append((folder.name, *stamps))
    return tuple(sig)


def run_rows(root: str | Path | None = None, finished_only: bool = True, include_damaged: bool = False) -> list[dict]:
    """``run_row`` for every readable run. A damaged folder never hides the others: it is left
    out, or with ``include_damaged`` given as its ``DamagedRun.summary()`` (status "damaged", reason)."""
    rows = []
    for run in list_runs(root, finished_only=finished_only, include_damaged=include_damaged):
        if isinstance(run, DamagedRun):
            rows.append(run.summary())
            continue
        try:
            rows.append(run_row(run))
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            if include_damaged:
                rows.append(DamagedRun(run.path, explain(exc)).summary())
    return rows


def run_ci(run: Run, n_resamples: int = 1000) -> dict:
    """Bootstrap intervals of the run's test metrics: ``metrics.json["test"]["ci"]`` when stored,
    else computed from the stored test predictions (argmax decision) with ``bootstrap_ci``."""
    stored = run.metrics.get("test", {}).get("ci")
    if isinstance(stored, dict) and stored:
        return stored
    from rcl.uncertainty import bootstrap_ci

    pred = run.predictions("test")
    return bootstrap_ci(pred["labels"], np.asarray(pred["probs"]).argmax(axis=1), run.taxonomy, n_resamples)


def with_ci(row: dict, ci: dict) -> dict:
    """``row`` with its CI columns filled from a ``bootstrap_ci``-shaped dict."""
    cer_lo, cer_hi = ci_bounds(ci, "cer")
    f1_lo, f1_hi = ci_bounds(ci, "f1_macro")
    return {**row, "cer_low": cer_lo, "cer_high": cer_hi, "f1_low": f1_lo, "f1_high": f1_hi}


def front_flags(rows: Sequence[dict]) -> list[bool]:
    """Per row: is it on the (CER, F1) Pareto front of ``rows``?"""
    front = set(pareto_front([(r.get("cer"), r.get("f1_macro")) for r in rows]))
    return [i in front for i in range(len(rows))]



def decision_frontier(runs: Sequence[Run]) -> list[dict]:
    """:func:`rcl.frontier` of finished runs on their calibrated test predictions: each run under
    argmax and under every swept Bayes matrix, the Pareto set marked. Runs must share a taxonomy."""
    return frontier([{"run_id": run.id, "loss": run.train["loss"], "probs": run.calibrated_probs("test"),
                      "labels": run.predictions("test")["labels"], "taxonomy": run.taxonomy} for run in runs])


def abstention_rows(root: str | Path | None = None) -> list[dict]:
    """Per finished run with figures with abstention (``metrics.json["abstention"]``): its test
    coverage and CER on the answered cases, with their 95% intervals, the number of cases and the
    decision rule that produced the answers; for plotting answered-case CER against coverage."""
    rows = []
    for run in list_runs(root, finished_only=True):
        report = run.metrics.get("abstention")
        if not isinstance(report, dict) or "coverage" not in report:
            continue
        row = {"id": run.id, "label": run.summary()["label"], "n": report["n"], "decision": report["decision"]}
        for name in ("coverage", "cer_answered", "cer_if_sent_home"):
            row |= {name: report[name]["value"], f"{name}_low": report[name]["low"], f"{name}_high": report[name]["high"]}
        rows.append(row)
    return rows


def exported_models(root: str | Path | None = None) -> list[Path]:
    """Model folders promoted by ``rcl export`` (those holding a model card), sorted by name."""
    root = paths.models_dir() if root is None else Path(root)
    return [p for p in sorted(root.iterdir()) if (p / MODEL_CARD).is_file()]


__all__ = ["abstention_rows", "decision_frontier", "exported_models", "ci_bounds", "config_text", "folder_signature", "front_flags", "run_ci", "run_row", "run_rows", "with_ci"]
