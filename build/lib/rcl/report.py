"""Run summaries for tables and plots, the paper's published points, and the stakeholder run card.

Pure Python (no Streamlit): the app's pages call these, and so can scripts. ``run_rows`` reads only
``config.json`` and ``metrics.json`` of each run folder, so a data directory with a thousand runs is
summarised in well under a second; predictions are read only for one run at a time.
"""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rcl.loss_registry import loss_spec
from rcl.metrics import TIER_LABELS, TIERS, error_tiers, pareto_front, tier_matrix
from rcl.runs import Run, list_runs, loss_label, run_folders
from rcl.taxonomy import Taxonomy

# SPEC "Published results" (paper Tables III and V): test CER (fraction), F1-macro, accuracy.
_PUBLISHED = [
    # dataset, model, (focal cer %, f1, acc %), (rcl-proposed cer %, f1, acc %)
    ("Brain MRI", "ResNet-50", (0.00, 0.995, 99.5), (0.00, 0.993, 99.3)),
    ("Brain MRI", "ViT-B16", (0.20, 0.990, 99.0), (0.10, 0.985, 98.6)),
    ("BreaKHis", "ResNet-50", (2.95, 0.174, 53.8), (2.36, 0.278, 56.0)),
    ("BreaKHis", "ViT-B16", (0.89, 0.259, 54.8), (0.59, 0.101, 47.8)),
    ("SICAPv2", "ResNet-50", (9.07, 0.561, 63.6), (6.23, 0.599, 69.3)),
    ("SICAPv2", "ViT-B16", (10.69, 0.666, 71.1), (0.81, 0.436, 57.8)),
    ("ISIC 2018", "ResNet-50", (39.41, 0.692, 80.9), (18.24, 0.595, 76.1)),
    ("ISIC 2018", "ViT-B16", (43.32, 0.590, 76.3), (24.10, 0.541, 69.0)),
]
_ISIC_RESNET50_ALL = [  # method, CER %, F1
    ("CE", 39.09, 0.649), ("LS", 38.44, 0.669), ("WCE", 25.73, 0.633), ("RCL-Uniform", 32.57, 0.650),
    ("RCL-Sparse", 3.58, 0.455),
]


def _paper_results() -> list[dict]:
    rows = []
    for dataset, model, focal, proposed in _PUBLISHED:
        for method, (cer, f1, acc) in (("Focal", focal), ("RCL-Proposed", proposed)):
            rows.append({"dataset": dataset, "model": model, "method": method, "cer": cer / 100, "f1_macro": f1,
                         "accuracy": acc / 100})
    for method, cer, f1 in _ISIC_RESNET50_ALL:
        rows.append({"dataset": "ISIC 2018", "model": "ResNet-50", "method": method, "cer": cer / 100, "f1_macro": f1,
                     "accuracy": None})
    return rows


PAPER_RESULTS: list[dict] = _paper_results()
"""The paper's published test points (SPEC), one dict per (dataset, model, method); CER as a fraction."""


# --- run summaries ------------------------------------------------------------------------------


def ci_bounds(ci, metric: str) -> tuple[float | None, float | None]:
    """``(low, high)`` of ``metric`` from a ``bootstrap_ci`` result (``None`` where undefined)."""
    value = ci.get(metric) if isinstance(ci, dict) else None
    if not isinstance(value, dict):
        return None, None
    return value.get("low"), value.get("high")


def config_text(train: dict) -> str:
    """One line describing a training config, for hover labels."""
    return (f"{loss_label(train)} · {train.get('model', '?')} · {train.get('image_size', '?')} px · "
            f"{train.get('epochs', '?')} epochs · lr {train.get('lr', 0):g} · seed {train.get('seed', '?')}")


def run_row(run: Run) -> dict:
    """``Run.summary()`` plus a config line and the stored test CIs, when present."""
    return with_ci({**run.summary(), "config": config_text(run.train)}, run.metrics.get("test", {}).get("ci") or {})


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


def run_rows(root: str | Path | None = None, finished_only: bool = True) -> list[dict]:
    """``run_row`` for every readable run; damaged folders are skipped, never fatal."""
    rows = []
    for run in list_runs(root, finished_only=finished_only):
        try:
            rows.append(run_row(run))
        except (ValueError, KeyError, TypeError, OSError, json.JSONDecodeError):
            continue
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


# --- confusion and tiers ------------------------------------------------------------------------


def confusion_view(confusion, taxonomy: Taxonomy, normalise: bool = False) -> dict:
    """What a tiered confusion plot needs: values (counts or row fractions), counts, tier per cell."""
    counts = np.asarray(confusion, dtype=np.int64)
    if counts.shape != (taxonomy.num_classes,) * 2:
        raise ValueError(f"confusion matrix has shape {counts.shape}, expected {taxonomy.num_classes} × "
                         f"{taxonomy.num_classes} for {', '.join(taxonomy.classes)}")
    values = counts.astype(np.float64)
    if normalise:
        totals = values.sum(axis=1, keepdims=True)
        values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    return {"values": values, "counts": counts, "tiers": tier_matrix(taxonomy), "classes": list(taxonomy.classes)}


def tier_totals(tiers: dict) -> list[dict]:
    """Tier counts in a fixed order with their display labels."""
    return [{"tier": TIER_LABELS[t], "key": t, "count": int(tiers.get(t, 0))} for t in TIERS]


def type2_samples(run: Run, split: str = "test", limit: int = 48) -> list[dict]:
    """The malignant samples the model called benign (argmax), with an image path when the file exists."""
    pred = run.predictions(split)
    labels = np.asarray(pred["labels"], dtype=np.int64)
    predicted = np.asarray(pred["probs"]).argmax(axis=1)
    ids = pred.get("ids")
    tiers = error_tiers(labels, predicted, run.taxonomy)
    root = run.config.get("dataset", {}).get("root")
    out = []
    for i in np.flatnonzero(tiers == 3)[:limit]:
        sample_id = str(ids[i]) if ids is not None else str(i)
        path = Path(root) / sample_id if root else None
        out.append({
            "id": sample_id,
            "true": run.taxonomy.classes[labels[i]],
            "predicted": run.taxonomy.classes[predicted[i]],
            "p_predicted": float(pred["probs"][i, predicted[i]]),
            "path": str(path) if path is not None and path.is_file() else None,
        })
    return out


# --- run card -----------------------------------------------------------------------------------


def _pct(value, digits: int = 1) -> str:
    return "n/a (no malignant sample)" if value is None else f"{100 * value:.{digits}f}%"


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _with_ci(value, low, high, pct: bool) -> str:
    text = _pct(value) if pct else _f(value)
    if low is not None and high is not None:
        text += f" (95% CI {_pct(low) if pct else _f(low)} – {_pct(high) if pct else _f(high)})"
    return text


def frontier_position(run: Run, runs: Iterable[Run] | None) -> str:
    """Where the run sits among ``runs`` of the same dataset on the (CER, F1) front, in words."""
    if runs is None:
        return "not compared (no other runs given)"
    me = run_row(run)
    rows = [run_row(r) for r in runs if r.finished and r.path != run.path]
    rows = [r for r in rows if r["dataset"] == me["dataset"]]
    if not rows:
        return "the only finished run on this dataset"
    everything = [me, *rows]
    flags = front_flags(everything)
    if me["cer"] is None:
        return "not placed: CER undefined (no malignant test sample)"
    if flags[0]:
        return f"on the Pareto front of {len(everything)} runs on {me['dataset']} (no run is both safer and more accurate)"
    better = [r["label"] for r in rows
              if r["cer"] is not None and r["cer"] <= me["cer"] and r["f1_macro"] >= me["f1_macro"]]
    return (f"dominated among {len(everything)} runs on {me['dataset']}: "
            f"{', '.join(better[:3])}{' …' if len(better) > 3 else ''} is both at least as safe and as accurate")


def run_card_markdown(run: Run, runs: Iterable[Run] | None = None) -> str:
    """A one-page Markdown summary of a finished run for stakeholders."""
    if not run.finished:
        raise ValueError(f"run {run.id} is not finished: no metrics to report yet")
    t, m, taxonomy = run.train, run.metrics, run.taxonomy
    test = m.get("test", {})
    row = run_row(run)
    # No predictions stored: the card shows the metrics without intervals.
    with contextlib.suppress(ValueError, ImportError, OSError, KeyError):
        row = with_ci(row, run_ci(run))
    dataset = run.config.get("dataset", {})
    matrix = np.asarray(run.config["matrix"], dtype=float)
    lines = [f"# Run card: {run.label}", "",
             "> Research tool, not a diagnostic device: never use it to make a clinical decision.", ""]
    if row["synthetic"]:
        lines += ["> **Trained on SYNTHETIC images.** These numbers say nothing about real patients.", ""]
    lines += [
        "## Data", "",
        f"- Dataset: **{row['dataset']}** (layout {dataset.get('layout', 'n/a')})",
        f"- Split sizes: {', '.join(f'{k} {v}' for k, v in dataset.get('sizes', {}).items()) or 'n/a'}",
        f"- Classes: {', '.join(taxonomy.classes)}",
        f"- Malignant (critical): {', '.join(taxonomy.malignant)}; benign: {', '.join(taxonomy.benign)}",
        "",
        "## Training", "",
        f"- Model: `{t['model']}`, {t['image_size']} px, {m.get('epochs_run', '?')} of {t['epochs']} epochs "
        f"(selected epoch {m.get('selected_epoch', '?')}, rule `{t.get('select', 'f1')}`), seed {t['seed']}",
        f"- Loss: `{t['loss']}`" + (f" with α = {t['alpha']:g}, β = {t['beta']:g}"
                                     if loss_spec(t["loss"]).takes_matrix else ""),
        f"- Run id: `{run.id}`, created {run.config.get('created', 'n/a')}",
        "",
        "## Severity matrix M[true, predicted]", "",
        "| true \\ predicted | " + " | ".join(taxonomy.classes) + " |",
        "|---|" + "---|" * taxonomy.num_classes,
    ]
    for i, name in enumerate(taxonomy.classes):
        lines.append(f"| **{name}** | " + " | ".join(f"{v:g}" for v in matrix[i]) + " |")
    lines += [
        "", "## Test metrics", "",
        f"- Critical Error Rate (malignant called benign; lower is safer): "
        f"**{_with_ci(row['cer'], row['cer_low'], row['cer_high'], pct=True)}**",
        f"- F1-macro: **{_with_ci(row['f1_macro'], row['f1_low'], row['f1_high'], pct=False)}**",
        f"- Accuracy: {_pct(test.get('accuracy'))}",
        f"- Malignancy sensitivity: {_pct(test.get('sensitivity'))}; specificity: {_pct(test.get('specificity'))}",
        f"- Test images: {test.get('n', 'n/a')}",
        "", "## Error tiers (test)", "",
        "| tier | count |", "|---|---|",
    ]
    lines += [f"| {t_['tier']} | {t_['count']} |" for t_ in tier_totals(test.get("tiers", {}))]
    if test.get("confusion"):
        view = confusion_view(test["confusion"], taxonomy)
        marks = {0: "", 1: "", 2: " (I)", 3: " (**II**)"}
        lines += ["", "## Confusion matrix (test; (I) false alarm, (**II**) fatal miss)", "",
                  "| true \\ predicted | " + " | ".join(taxonomy.classes) + " |",
                  "|---|" + "---|" * taxonomy.num_classes]
        for i, name in enumerate(taxonomy.classes):
            cells = [f"{view['counts'][i, j]}{marks[int(view['tiers'][i, j])] if view['counts'][i, j] else ''}"
                     for j in range(taxonomy.num_classes)]
            lines.append(f"| **{name}** | " + " | ".join(cells) + " |")
    lines += ["", "## Position on the safety-accuracy frontier", "", f"- {frontier_position(run, runs)}", "",
              f"_Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by rcl._", ""]
    return "\n".join(lines)


def run_card_html(run: Run, runs: Iterable[Run] | None = None) -> str:
    """The same card as a self-contained HTML page (no external assets)."""
    markdown = run_card_markdown(run, runs)
    body = _markdown_to_html(markdown)
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>Run card: {html.escape(run.label)}</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:860px;margin:2em auto;line-height:1.45;color:#222}"
            "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
            "td:first-child,th:first-child{text-align:left}blockquote{border-left:4px solid #D55E00;"
            "margin:0;padding:4px 12px;background:#fff4ec}code{background:#f3f3f3;padding:0 3px}"
            f"</style></head><body>{body}</body></html>")


def _inline(text: str) -> str:
    import re

    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
    return re.sub(r"(?<![\w*])_(.+?)_(?![\w*])", r"<em>\1</em>", text)


def _markdown_to_html(markdown: str) -> str:
    """The small Markdown subset the run card uses: headings, lists, quotes, tables, paragraphs."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("> "):
            out.append(f"<blockquote>{_inline(line[2:])}</blockquote>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split(" | ")]
                if not all(set(c) <= set("-|") for c in cells):
                    tag = "th" if not rows else "td"
                    rows.append("<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in cells) + "</tr>")
                i += 1
            out.append("<table>" + "".join(rows) + "</table>")
            continue
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


__all__ = ["PAPER_RESULTS", "run_row", "run_ci", "with_ci", "run_rows", "folder_signature", "front_flags",
           "confusion_view", "tier_totals", "type2_samples", "frontier_position", "run_card_markdown",
           "run_card_html", "ci_bounds", "config_text"]

