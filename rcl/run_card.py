"""The stakeholder run card: a one-page Markdown summary of a finished run (data, matrix, loss,
test metrics with 95% intervals, tiered confusion, place on the frontier), and the same as HTML."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterable
from datetime import datetime, timezone

import numpy as np

from rcl.confusion import confusion_view, tier_totals
from rcl.listing import front_flags, run_ci, run_row, with_ci
from rcl.runs import Run, loss_label
from rcl.text import DISCLAIMER, ci_text, num, pct


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
             f"> {DISCLAIMER}", ""]
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
        f"- Loss: `{loss_label(t)}`",
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
        f"**{ci_text(row['cer'], row['cer_low'], row['cer_high'], pct)}**"
        + ("" if row["cer"] is not None else " (no malignant test case)"),
        f"- F1-macro: **{ci_text(row['f1_macro'], row['f1_low'], row['f1_high'], num)}**",
        f"- Accuracy: {pct(test.get('accuracy'))}",
        f"- Malignancy sensitivity: {pct(test.get('sensitivity'))}; specificity: {pct(test.get('specificity'))}",
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


__all__ = ["frontier_position", "run_card_html", "run_card_markdown"]
