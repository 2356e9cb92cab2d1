"""The stakeholder run card: one page on a finished run for people who will not open the app.

A headline box (CER with the cases it rests on and its 95% interval, F1-macro, how many cases the
referral rule decides), the error tiers and the run's place among comparable runs (same dataset,
same test split) as charts, the default risk-calibrated decision with the matrix it used, and the
training recipe with the matrix its loss used (none for a loss that takes no matrix). Every figure
names its decision rule and its number of cases. As Markdown (charts as tables) and as one
self-contained HTML page that prints on A4 (``@media print``).
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterable
from datetime import datetime, timezone

import numpy as np

from rcl.card_charts import frontier_svg, tier_bars_svg
from rcl.comparison import comparable, with_splits
from rcl.confusion import confusion_view, missed_malignant, tier_totals
from rcl.data.sampling import SAMPLING
from rcl.decision_scale import scaled_matrix
from rcl.fine_tune import start_text
from rcl.listing import run_ci, run_row, with_ci
from rcl.loss_registry import loss_spec
from rcl.runs import Run, loss_label
from rcl.selection import SELECTION_RULES
from rcl.severity import cost_matrix
from rcl.text import (
    DISCLAIMER,
    ci_text,
    count_of,
    decision_rule,
    num,
    pct,
    plural,
    rate_with_count,
)


def comparable_rows(run: Run, runs: Iterable[Run] | None) -> list[dict]:
    """The run and the finished ``runs`` tested on the same images (same dataset and test split
    fingerprint), each a ``run_row`` with ``on_front``; only the run itself when none compares."""
    me = with_splits([run_row(run)])[0]
    others = [] if runs is None or me["split"] is None else [r for r in runs if r.finished and r.path != run.path]
    rows = [me, *with_splits([run_row(r) for r in others])]
    return comparable(rows, {"dataset": str(me["dataset"]), "split": me["split"]})


def frontier_position(run: Run, runs: Iterable[Run] | None) -> str:
    """Where the run sits among the runs tested on the same images, in words."""
    if runs is None:
        return "not compared (no other runs given)"
    rows = comparable_rows(run, runs)
    me = next((r for r in rows if r["id"] == run.id), None)
    if me is None:
        return "not compared: the run stored no test sample ids"
    if len(rows) == 1:
        return "the only finished run tested on these images"
    if me["cer"] is None:
        return "not placed: CER undefined (no malignant test case)"
    if me["on_front"]:
        return (f"on the Pareto front of {plural(len(rows), 'run')} tested on the same {me['n_test']} images "
                "(no other run is both safer and more accurate)")
    better = [r["label"] for r in rows if r["id"] != run.id and r["cer"] is not None
              and r["cer"] <= me["cer"] and r["f1_macro"] >= me["f1_macro"]]
    return (f"dominated among {plural(len(rows), 'run')} tested on the same {me['n_test']} images: "
            f"{', '.join(better[:3])}{' …' if len(better) > 3 else ''} is both at least as safe and as accurate")


def _matrix_table(values, classes) -> list[str]:
    values = np.asarray(values, dtype=float)
    lines = ["| true \\ predicted | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    return lines + [f"| **{name}** | " + " | ".join(f"{v:g}" for v in values[i]) + " |" for i, name in enumerate(classes)]


def _headline(run: Run, row: dict) -> list[str]:
    test, taxonomy = run.metrics.get("test", {}), run.taxonomy
    lines = ["## Headline", "", f"Test split, {decision_rule('argmax')}.", ""]
    if test.get("confusion") and row["cer"] is not None:
        missed, malignant = missed_malignant(test["confusion"], taxonomy)
        lines.append(f"- **Critical Error Rate** (malignant called benign; lower is safer): "
                     f"**{ci_text(row['cer'], row['cer_low'], row['cer_high'], pct)}**: "
                     f"{count_of(missed, malignant)} malignant cases missed")
    else:
        lines.append("- **Critical Error Rate**: not defined (no malignant test case)")
    lines += [f"- **F1-macro** (balance over all {taxonomy.num_classes} classes; higher is better): "
              f"**{ci_text(row['f1_macro'], row['f1_low'], row['f1_high'], num)}**"]
    referral = run.metrics.get("referral", {}).get("test")
    if referral:
        lines.append(f"- **Coverage**: {rate_with_count(referral['coverage'], referral['n_accepted'], referral['n'], 'cases decided automatically')}; "
                     f"{plural(referral['n_referred'], 'case')} referred to a clinician; CER on the decided "
                     f"cases {pct(referral['cer_accepted'])}")
    else:
        lines.append("- **Coverage**: no referral rule (the validation split could not support one): every "
                     "case is decided automatically")
    lines += [f"- {plural(test.get('n', 0), 'test image')} · accuracy {pct(test.get('accuracy'))} · malignancy "
              f"sensitivity {pct(test.get('sensitivity'))}, specificity {pct(test.get('specificity'))}", ""]
    return lines


def _decision(run: Run) -> list[str]:
    decision = run.metrics.get("decision", {})
    if not decision.get("test"):
        return []
    result, scale = decision["test"], float(decision.get("scale", 1.0))
    missed, malignant = missed_malignant(result["confusion"], run.taxonomy)
    how = ("the matrix as trained" if scale == 1.0 else
           f"the matrix's extra costs scaled by {scale:g}, tuned on validation, because the loss already carries them")
    lines = ["## Risk-calibrated decision", "", f"The run's default decision: {decision_rule('bayes')}.", "",
             f"- Decides with {how}; the same {plural(result['n'], 'test image')}",
             f"- CER {rate_with_count(result['cer'], missed, malignant, 'malignant cases missed')} · F1-macro "
             f"{num(result['f1_macro'])} · accuracy {pct(result['accuracy'])}", "",
             "**Decision matrix** (the cost of each answer used by this decision; a correct answer costs 0):", ""]
    return lines + _matrix_table(cost_matrix(scaled_matrix(run.matrix.values, scale)), run.taxonomy.classes) + [""]


def _training(run: Run) -> list[str]:
    t, m = run.train, run.metrics
    rule = SELECTION_RULES.get(t.get("select", "f1"), t.get("select", "f1"))
    lines = ["## Training", "",
             f"- Model `{t['model']}`, {t['image_size']} px images, {start_text(t)}",
             f"- {m.get('epochs_run', '?')} of {plural(t['epochs'], 'epoch')}; the weights kept are those of epoch "
             f"{m.get('selected_epoch', '?')}, chosen by {rule}; seed {t['seed']}",
             f"- Loss: `{loss_label(t)}`; {SAMPLING.get(t.get('sampling', 'shuffle'), t.get('sampling'))}",
             f"- Run id `{run.id}`, created {run.config.get('created', 'n/a')}", ""]
    if loss_spec(t["loss"]).takes_matrix:
        lines += ["**Training matrix** (how much the loss penalised each mistake while learning):", ""]
        lines += _matrix_table(run.matrix.values, run.taxonomy.classes) + [""]
    else:
        lines += [f"The `{t['loss']}` loss uses no severity matrix: every mistake weighed the same in training.", ""]
    return lines


def _data(run: Run, row: dict) -> list[str]:
    dataset, taxonomy = run.config.get("dataset", {}), run.taxonomy
    sizes = ", ".join(f"{k} {v}" for k, v in dataset.get("sizes", {}).items())
    return ["## Data", "",
            f"- Dataset: **{row['dataset']}**{' (synthetic images)' if row['synthetic'] else ''}",
            f"- Images per split: {sizes or 'not recorded'}",
            f"- Classes: {', '.join(taxonomy.classes)}",
            f"- Malignant (critical): {', '.join(taxonomy.malignant)}; benign: {', '.join(taxonomy.benign)}", ""]


def _confusion(run: Run) -> list[str]:
    test, taxonomy = run.metrics.get("test", {}), run.taxonomy
    if not test.get("confusion"):
        return []
    view = confusion_view(test["confusion"], taxonomy)
    marks = {0: "", 1: "", 2: " (I)", 3: " (**II**)"}
    lines = ["## Confusion matrix", "",
             f"Test split, {decision_rule('argmax')}. Counts; (I) false alarm, (**II**) fatal miss; n = the true "
             "class's test images.", "",
             "| true \\ predicted | n | " + " | ".join(taxonomy.classes) + " |",
             "|---|---|" + "---|" * taxonomy.num_classes]
    for i, name in enumerate(taxonomy.classes):
        cells = [f"{view['counts'][i, j]}{marks[int(view['tiers'][i, j])] if view['counts'][i, j] else ''}"
                 for j in range(taxonomy.num_classes)]
        lines.append(f"| **{name}** | {int(view['counts'][i].sum())} | " + " | ".join(cells) + " |")
    return lines + [""]


def card_sections(run: Run, runs: Iterable[Run] | None = None) -> list[dict]:
    """The card as sections: ``md`` (Markdown), ``svg`` (a chart for HTML, or ``None``), ``box``
    (drawn as the headline box in HTML) and ``chart_replaces_table`` (HTML shows the chart instead
    of the section's Markdown table)."""
    if not run.finished:
        raise ValueError(f"run {run.id} is not finished: no metrics to report yet")
    test = run.metrics.get("test", {})
    row = run_row(run)
    with contextlib.suppress(ValueError, ImportError, OSError, KeyError):  # no predictions: no intervals
        row = with_ci(row, run_ci(run))
    top = [f"# Run card: {run.label}", "", f"> {DISCLAIMER}", ""]
    if row["synthetic"]:
        top += ["> **Trained and tested on synthetic images**: these numbers say nothing about real patients.", ""]
    tiers = tier_totals(test.get("tiers", {}))
    tier_caption = f"Error tiers: {plural(test.get('n', 0), 'test image')}, {decision_rule('argmax').split(' (')[0]}"
    tier_md = ["## Error tiers", "", f"{tier_caption}.", "", "| tier | count |", "|---|---|",
               *(f"| {t['tier']} | {t['count']} |" for t in tiers), ""]
    rows = comparable_rows(run, runs) if runs is not None else []
    position = ["## Place among comparable runs", "", "Runs on the same dataset and the same test images, each at "
                "its argmax decision.", "",
                f"- {frontier_position(run, runs)}", ""]
    frontier_chart = None
    if len(rows) > 1:
        position += ["| run | CER | F1-macro | on the front |", "|---|---|---|---|",
                     *(f"| {r['label']}{' (this run)' if r['id'] == run.id else ''} | {pct(r['cer'])} | "
                       f"{num(r['f1_macro'])} | {'yes' if r['on_front'] else 'no'} |" for r in rows), ""]
        frontier_chart = frontier_svg(rows, run.id, f"Safety against accuracy: {plural(len(rows), 'run')} on "
                                                    f"the same {row['n_test']} test images")
    stamp = [f"_Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by rcl._", ""]
    return [{"md": "\n".join(top), "svg": None, "box": False},
            {"md": "\n".join(_headline(run, row)), "svg": None, "box": True},
            {"md": "\n".join(tier_md), "svg": tier_bars_svg(tiers, tier_caption), "box": False,
             "chart_replaces_table": True},
            {"md": "\n".join(position), "svg": frontier_chart, "box": False},
            {"md": "\n".join(_decision(run)), "svg": None, "box": False},
            {"md": "\n".join(_confusion(run)), "svg": None, "box": False},
            {"md": "\n".join(_training(run)), "svg": None, "box": False},
            {"md": "\n".join(_data(run, row) + stamp), "svg": None, "box": False}]


def sections_markdown(sections: list[dict]) -> str:
    """``card_sections`` as one Markdown text (the charts as their tables)."""
    return "\n".join(s["md"] for s in sections if s["md"])


def beside_chart(section: dict) -> str:
    """A section's Markdown to show next to its chart: without the table the chart replaces."""
    if not section.get("chart_replaces_table"):
        return section["md"]
    return "\n".join(line for line in section["md"].splitlines() if not line.startswith("|"))


def sections_html(sections: list[dict], title: str) -> str:
    """``card_sections`` as one self-contained HTML page (inline SVG charts, print CSS)."""
    parts = []
    for section in sections:
        if section["md"]:
            body = _markdown_to_html(beside_chart(section)) + (section["svg"] or "")
            parts.append(f"<section{' class=headline' if section['box'] else ''}>{body}</section>")
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>Run card: {html.escape(title)}</title><style>{PRINT_CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>")


def run_card_markdown(run: Run, runs: Iterable[Run] | None = None) -> str:
    """The card as Markdown (the charts as their tables)."""
    return sections_markdown(card_sections(run, runs))


PRINT_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:880px;margin:2em auto;line-height:1.45;color:#222}"
    "table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}blockquote{border-left:4px solid #D55E00;margin:.5em 0;"
    "padding:4px 12px;background:#fff4ec}code{background:#f3f3f3;padding:0 3px}"
    ".headline{border:2px solid #0072B2;border-radius:6px;padding:2px 16px;background:#f2f8fc}"
    "section{margin:1em 0}svg{display:block;margin:.6em 0;max-width:100%;height:auto}"
    "@page{size:A4;margin:14mm}"
    "@media print{body{max-width:none;margin:0;font-size:10.5pt}section,table,svg{break-inside:avoid}"
    ".headline{-webkit-print-color-adjust:exact;print-color-adjust:exact}}"
)


def run_card_html(run: Run, runs: Iterable[Run] | None = None) -> str:
    """The same card as one self-contained HTML page (no external asset; prints on A4)."""
    return sections_html(card_sections(run, runs), run.label)


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


__all__ = ["PRINT_CSS", "beside_chart", "card_sections", "comparable_rows", "frontier_position", "run_card_html", "run_card_markdown",
           "sections_html", "sections_markdown"]
